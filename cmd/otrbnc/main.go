// Command otrbnc is an IRC bouncer that wraps private messages in
// Off-the-Record encryption.
//
// Usage:
//
//	otrbnc [run] [-config PATH]          run the bouncer (the default subcommand)
//	otrbnc check-config [-config PATH]   check a configuration without running it
//	otrbnc fingerprints [-account NET]   list our and our peers' OTR fingerprints
//	otrbnc trust [-account NET] FP       mark a peer's fingerprint as verified
//	otrbnc import-libotr -key F -fingerprints F [-account NET] [-from NAME]
//	otrbnc export-libotr -key F -fingerprints F [-account NET]
//	otrbnc hash-password                 read a password, print its bcrypt hash
//	otrbnc version                       print the version (also: otrbnc --version)
//	otrbnc help [SUBCOMMAND]             list subcommands, or explain one
//
// Every subcommand takes -h for its usage and examples.
//
// Without -config, otrbnc uses $XDG_CONFIG_HOME/otrbnc/config.toml (or
// ~/.config/otrbnc/config.toml). If that file does not exist, "otrbnc run"
// writes a commented default configuration with a fresh client password,
// prints the password once, explains how to connect and exits.
//
// The running bouncer holds a lock on its state directory; the subcommands
// that read or change keys and trust (fingerprints, trust, import-libotr,
// export-libotr) need it too, so they ask to stop otrbnc first. While it
// runs, the same can be done from an IRC client with /msg *otr.
//
// SIGHUP makes a running otrbnc re-read its configuration and apply what
// can change without a restart (client password, log level, OTR policies,
// plaintext marker, fragment size); it logs the changed settings that need
// a restart.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// stdio is where a subcommand reads and writes.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// runFunc runs a subcommand with its positional arguments, once its flags
// are parsed.
type runFunc func(ctx context.Context, sio stdio, args []string) error

// subcommand is one row of the command table.
type subcommand struct {
	name     string
	synopsis string // flags and arguments, after "otrbnc NAME"
	summary  string // one line for the list
	// help is the long description with examples, printed by -h.
	help string
	// setup defines the subcommand's flags in fs and returns the function
	// that runs it with their values.
	setup func(fs *flag.FlagSet) runFunc
}

// subcommands is the command table, in the order "otrbnc help" lists it.
func subcommands() []subcommand {
	return []subcommand{
		runCommand,
		checkConfigCommand,
		fingerprintsCommand,
		trustCommand,
		importLibotrCommand,
		exportLibotrCommand,
		hashPasswordCommand,
		versionCommand,
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "otrbnc:", err)
		}
		os.Exit(1)
	}
}

// dispatch picks the subcommand; flags without one mean "run".
func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	sio := stdio{in: stdin, out: stdout, err: stderr}
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		printOverview(stdout)
		return nil
	}
	if len(args) == 1 && (args[0] == "-version" || args[0] == "--version") {
		args = []string{"version"}
	}
	name := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	switch name {
	case "help":
		if len(args) > 0 {
			c := lookupSubcommand(args[0])
			if c == nil {
				return fmt.Errorf("unknown subcommand %q (try: otrbnc help)", args[0])
			}
			printHelp(stdout, c)
			return nil
		}
		printOverview(stdout)
		return nil
	}
	c := lookupSubcommand(name)
	if c == nil {
		return fmt.Errorf("unknown subcommand %q (try: otrbnc help)", name)
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := c.setup(fs)
	rest, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout, c)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%v (see: otrbnc %s -h)", err, c.name)
	}
	return run(ctx, sio, rest)
}

func lookupSubcommand(name string) *subcommand {
	for _, c := range subcommands() {
		if c.name == name {
			return &c
		}
	}
	return nil
}

func printOverview(w io.Writer) {
	fmt.Fprint(w, `otrbnc is an IRC bouncer that adds Off-the-Record (OTR) encryption to the
private messages of any IRC client.

usage: otrbnc [SUBCOMMAND] [flags]

subcommands:
`)
	for _, c := range subcommands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Without a subcommand, otrbnc runs the bouncer. "otrbnc SUBCOMMAND -h" (or
"otrbnc help SUBCOMMAND") shows a subcommand's flags and examples.
Documentation: README.md and docs/ in the source tree.
`)
}

// printHelp prints a subcommand's usage, description and flags.
func printHelp(w io.Writer, c *subcommand) {
	fmt.Fprintf(w, "%s\n\n%s\n", strings.TrimSpace("usage: otrbnc "+c.name+" "+c.synopsis), strings.TrimSpace(c.help))
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.setup(fs)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// parseInterleaved parses flags that may come before, between or after
// positional arguments ("--" ends the flags); it returns the positional
// arguments in order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if len(left) == 0 {
			return rest, nil
		}
		if consumed := len(args) - len(left); consumed > 0 && args[consumed-1] == "--" {
			return append(rest, left...), nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}
