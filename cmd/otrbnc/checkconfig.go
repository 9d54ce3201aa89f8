package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"otrbnc/keystore"
	"otrbnc/proxy/config"
)

var checkConfigCommand = subcommand{
	name:     "check-config",
	synopsis: "[-config FILE] [-passphrase-file FILE]",
	summary:  "check a configuration (and the files it names) without running",
	help: `
Reads the configuration as "otrbnc run" would and checks what can be
checked without connecting anywhere: TOML syntax and unknown keys (with
their line), every value, the TLS certificate and key files of listeners
and networks, the passphrase file, and the state directory: if it exists
and otrbnc is not running, the keystore is opened with the passphrase, which
proves the passphrase right and every account file readable. (Opening it
has the same effect as starting otrbnc: account files written before a
passphrase was configured get sealed.)

It prints what it checked, warnings about risky settings, and exits with
status 1 if anything would keep otrbnc from starting. Run it before
"systemctl reload otrbnc" or a restart.

Examples:
  otrbnc check-config
  otrbnc check-config -config /etc/otrbnc/config.toml
  sudo otrbnc check-config -config /etc/otrbnc/config.toml -passphrase-file /etc/otrbnc/passphrase
`,
	setup: func(fs *flag.FlagSet) runFunc {
		configPath := configFlag(fs)
		pass := passphraseFlag(fs)
		return func(ctx context.Context, sio stdio, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q (see: otrbnc check-config -h)", args)
			}
			return checkConfig(sio.out, *configPath, *pass)
		}
	},
}

// checkConfig prints what it checks and returns an error if anything
// would keep otrbnc from starting.
func checkConfig(w io.Writer, configPath, passOverride string) error {
	lc, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	cfg := lc.cfg
	var problems int
	ok := func(format string, a ...any) { fmt.Fprintf(w, "ok       "+format+"\n", a...) }
	warn := func(format string, a ...any) { fmt.Fprintf(w, "warning  "+format+"\n", a...) }
	fail := func(format string, a ...any) {
		problems++
		fmt.Fprintf(w, "ERROR    "+format+"\n", a...)
	}
	ok("%s: syntax and values", lc.path)

	for _, l := range cfg.Listen {
		host, _, _ := net.SplitHostPort(l.Address)
		if l.TLSCert != "" {
			if _, err := tls.LoadX509KeyPair(l.TLSCert, l.TLSKey); err != nil {
				fail("listen %s: TLS certificate: %v", l.Address, err)
			} else {
				ok("listen %s: TLS with %s", l.Address, l.TLSCert)
			}
			continue
		}
		ip := net.ParseIP(host)
		if host == "localhost" || (ip != nil && ip.IsLoopback()) {
			ok("listen %s: plaintext on loopback", l.Address)
		} else {
			warn("listen %s: plaintext on a non-loopback address: your private messages cross the network in clear between your client and otrbnc; add tls_cert and tls_key", l.Address)
		}
	}
	for _, n := range cfg.Network {
		useTLS, host, port, _ := config.ParseServerAddress(n.Address)
		switch {
		case !useTLS:
			warn("network %s: %s:%s without TLS (irc+insecure): anyone on the path sees your IRC traffic, including who you talk to", n.Name, host, port)
		case n.TLSInsecureSkipVerify && n.TLSFingerprint == "":
			warn("network %s: tls_insecure_skip_verify accepts any certificate: pin it with tls_fingerprint instead", n.Name)
		default:
			ok("network %s: %s:%s with TLS", n.Name, host, port)
		}
		if n.TLSClientCert != "" {
			if _, err := tls.LoadX509KeyPair(n.TLSClientCert, n.TLSClientKey); err != nil {
				fail("network %s: client certificate: %v", n.Name, err)
			} else {
				ok("network %s: client certificate %s", n.Name, n.TLSClientCert)
			}
		}
		if strings.EqualFold(n.Policy, "never") {
			warn("network %s: policy never: private messages are never encrypted", n.Name)
		}
	}

	passPath, err := lc.passphrasePath(passOverride)
	passKnown := true
	switch {
	case errors.Is(err, errNoCredentials):
		passKnown = false
		warn("passphrase: %v", err)
	case err != nil:
		passKnown = false
		fail("passphrase: %v", err)
	case passPath == "":
		warn("no passphrase_file: the keys in the state directory are not encrypted at rest (see docs/security.md)")
	default:
		if _, err := keystore.ReadPassphraseFile(passPath); err != nil {
			passKnown = false
			fail("passphrase: %v", err)
		} else {
			ok("passphrase file %s", passPath)
		}
	}

	dir := lc.stateDir()
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, os.ErrNotExist):
		ok("state directory %s will be created on the first run", dir)
	case err != nil:
		fail("state directory: %v", err)
	case !fi.IsDir():
		fail("state directory %s is not a directory", dir)
	case !passKnown:
		warn("state directory %s: not opened, the passphrase is not available", dir)
	default:
		store, err := lc.openStore(passOverride, false, nil)
		switch {
		case err == nil:
			accts := store.Accounts()
			if err := closeStore(store, dir); err != nil {
				fail("state directory: %v", err)
			} else {
				if len(accts) == 0 {
					ok("state directory %s: keystore opens (no accounts yet)", dir)
				} else {
					ok("state directory %s: keystore opens (accounts: %s)", dir, strings.Join(accts, ", "))
				}
			}
			for _, n := range cfg.Network {
				found := false
				for _, a := range accts {
					found = found || a == n.Name
				}
				if !found {
					ok("network %s: a new OTR key will be generated on the first run", n.Name)
				}
			}
		case errors.Is(err, keystore.ErrLocked):
			ok("state directory %s: in use by the running otrbnc (not opened)", dir)
		default:
			fail("%v", err)
		}
	}
	if problems > 0 {
		return fmt.Errorf("%d problem(s) in %s; fix them before starting otrbnc", problems, lc.path)
	}
	fmt.Fprintln(w, "configuration OK")
	return nil
}
