// Command otrbnc is an IRC bouncer that wraps private messages in
// Off-the-Record encryption.
//
// Usage:
//
//	otrbnc [run] [-config PATH]   run the bouncer (the default subcommand)
//	otrbnc hash-password          read a password, print its bcrypt hash
//	otrbnc help                   list subcommands
//
// Without -config, otrbnc uses $XDG_CONFIG_HOME/otrbnc/config.toml (or
// ~/.config/otrbnc/config.toml). If that file does not exist, the first run
// writes a commented default configuration with a fresh client password,
// prints the password once, explains how to connect and exits.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"otrbnc/keystore"
	"otrbnc/proxy"
)

// subcommand is one row of the command table; later subcommands
// (import-libotr, check-config, …) are new rows.
type subcommand struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func subcommands() []subcommand {
	return []subcommand{
		{name: "run", usage: "run [-config PATH]  run the bouncer (default)", run: cmdRun},
		{name: "hash-password", usage: "hash-password  read a password on stdin, print its bcrypt hash", run: cmdHashPassword},
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
	name := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		fmt.Fprintln(stdout, "usage: otrbnc <subcommand> [flags]")
		for _, c := range subcommands() {
			fmt.Fprintln(stdout, "  otrbnc "+c.usage)
		}
		return nil
	}
	for _, c := range subcommands() {
		if c.name == name {
			return c.run(ctx, args, stdin, stdout, stderr)
		}
	}
	return fmt.Errorf("unknown subcommand %q (try: otrbnc help)", name)
}

// defaultConfigPath returns the per-user configuration path.
func defaultConfigPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the configuration directory: %w", err)
	}
	return filepath.Join(dir, "otrbnc", "config.toml"), nil
}

func cmdRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (default: the per-user one, created on first run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	path := *configPath
	if path == "" {
		p, err := defaultConfigPath()
		if err != nil {
			return err
		}
		path = p
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return firstRun(path, stdout)
		}
	}
	cfg, err := proxy.LoadConfig(path)
	if err != nil {
		return err
	}
	level, _ := proxy.ParseLogLevel(cfg.LogLevel)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(filepath.Dir(path), "state")
	}
	store, err := keystore.Open(stateDir, keystore.Options{})
	if err != nil {
		return fmt.Errorf("opening the state directory: %w", err)
	}
	defer store.Close()
	srv, err := proxy.NewServer(cfg, proxy.Options{
		Logger:        logger,
		Identities:    proxy.KeystoreIdentities{Store: store},
		AuthFailDelay: proxy.DefaultAuthFailDelay,
	})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	return srv.Serve(ctx)
}

// firstRun writes a default configuration with a new password.
func firstRun(path string, stdout io.Writer) error {
	pw, err := proxy.GeneratePassword()
	if err != nil {
		return err
	}
	hash, err := proxy.HashPassword(pw)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	stateDir := filepath.Join(filepath.Dir(path), "state")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing the default configuration: %w", err)
	}
	if _, err := io.WriteString(f, proxy.DefaultConfigText(hash, stateDir)); err != nil {
		f.Close()
		return fmt.Errorf("writing the default configuration: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the default configuration: %w", err)
	}
	fmt.Fprintf(stdout, `otrbnc: wrote a default configuration to %s

Your client password (shown only this once; only its hash is stored):

    %s

Next steps:
  1. Edit the [[network]] section (address, nick, channels, policy).
  2. Run otrbnc again: otrbnc -config %s
  3. Point your IRC client at 127.0.0.1 port 6667, no TLS, with the
     password above as the server password (or SASL PLAIN). Use the
     network's name as your username to choose a network.
  4. In your client: /msg *otr help
`, path, pw, path)
	return nil
}

func cmdHashPassword(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fmt.Fprint(stderr, "password: ")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return fmt.Errorf("reading the password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return errors.New("empty password")
	}
	h, err := proxy.HashPassword(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}
