package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"otrbnc/proxy"
)

var runCommand = subcommand{
	name:     "run",
	synopsis: "[-config FILE]",
	summary:  "run the bouncer (the default)",
	help: `
Runs the bouncer in the foreground until SIGINT (Ctrl-C) or SIGTERM, then
ends the OTR sessions cleanly and exits. Logs go to standard error; they
never contain the text of private messages.

The first time, without -config and without a configuration at the default
path, it writes a commented configuration there with a new client password,
prints the password once and exits: edit the [[network]] section, then run
it again.

SIGHUP re-reads the configuration and applies, without dropping any
connection: password_hash, log_level, and each network's policy, peers,
plaintext_marker and fragment_size. Other changes (listeners, state_dir,
passphrase_file, networks added or removed, addresses, nicks, TLS, SASL,
channels, pacing) are logged as needing a restart.

Examples:
  otrbnc                                    # first run: writes ~/.config/otrbnc/config.toml
  otrbnc                                    # then: runs with it
  otrbnc run -config /etc/otrbnc/config.toml
  kill -HUP $(pidof otrbnc)                 # reload (systemctl reload otrbnc)
`,
	setup: func(fs *flag.FlagSet) runFunc {
		configPath := configFlag(fs)
		return func(ctx context.Context, sio stdio, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q (see: otrbnc run -h)", args)
			}
			return runBouncer(ctx, sio, *configPath, hupSignals)
		}
	},
}

// hupSignals delivers SIGHUP until stop is called; tests replace it.
var hupSignals = func() (c <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// runBouncer runs otrbnc until ctx ends, reloading on each signal from
// hups.
func runBouncer(ctx context.Context, sio stdio, configPath string, hups func() (<-chan os.Signal, func())) error {
	if configPath == "" {
		p, err := defaultConfigPath()
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return firstRun(p, sio.out)
		}
		configPath = p
	}
	lc, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	var level slog.LevelVar
	l, _ := proxy.ParseLogLevel(lc.cfg.LogLevel)
	level.Set(l)
	logger := slog.New(slog.NewTextHandler(sio.err, &slog.HandlerOptions{Level: &level}))
	store, err := lc.openStore("", true, logger)
	if err != nil {
		return err
	}
	defer func() {
		// Close writes the fingerprint sightings not yet on disk.
		if err := store.Close(); err != nil {
			logger.Error("closing the keystore", "err", err)
		}
	}()
	srv, err := proxy.NewServer(lc.cfg, proxy.Options{
		Logger:        logger,
		Identities:    proxy.KeystoreIdentities{Store: store},
		AuthFailDelay: proxy.DefaultAuthFailDelay,
		StateDir:      lc.stateDir(),
	})
	if err != nil {
		return err
	}
	hup, stopHup := hups()
	defer stopHup()
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("%w (is another program using the port? change address in the [[listen]] section of %s)", err, lc.path)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	for {
		select {
		case err := <-served:
			return err
		case <-hup:
			reload(lc.path, srv, &level, logger)
		}
	}
}

// reload re-reads the configuration and applies what can change while
// running; on error the running configuration stays.
func reload(path string, srv *proxy.Server, level *slog.LevelVar, logger *slog.Logger) {
	logger.Info("SIGHUP: reloading the configuration", "path", path)
	cfg, err := proxy.LoadConfig(path)
	if err != nil {
		logger.Error("reload failed; the running configuration stays in effect", "err", err)
		return
	}
	restart, err := srv.Reload(cfg)
	if err != nil {
		logger.Error("reload incomplete", "err", err)
	}
	if l, err := proxy.ParseLogLevel(cfg.LogLevel); err == nil {
		level.Set(l)
		logger.Debug("debug logging is on")
	}
	for _, k := range restart {
		logger.Warn("changed setting needs a restart to take effect", "setting", k)
	}
	logger.Info("configuration reloaded", "needs_restart", len(restart))
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
