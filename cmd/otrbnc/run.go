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
	"regexp"
	"strings"
	"syscall"

	"otrbnc/proxy"
	"otrbnc/proxy/config"
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
			again, hint := runAgain()
			return firstRun(p, again, hint, sio.out)
		}
		configPath = p
	}
	lc, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	var level slog.LevelVar
	l, _ := config.ParseLogLevel(lc.cfg.LogLevel)
	level.Set(l)
	logger := slog.New(slog.NewTextHandler(sio.err, &slog.HandlerOptions{Level: &level}))
	tuneRuntime(len(lc.cfg.Network), logger)
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
		Version:       versionString(),
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
	cfg, err := config.LoadConfig(path)
	if err != nil {
		logger.Error("reload failed; the running configuration stays in effect", "err", err)
		return
	}
	restart, err := srv.Reload(cfg)
	if err != nil {
		logger.Error("reload incomplete", "err", err)
	}
	if l, err := config.ParseLogLevel(cfg.LogLevel); err == nil {
		level.Set(l)
		logger.Debug("debug logging is on")
	}
	for _, k := range restart {
		logger.Warn("changed setting needs a restart to take effect", "setting", k)
	}
	logger.Info("configuration reloaded", "needs_restart", len(restart))
}

// firstRun writes a default configuration with a new password. again is
// the command that runs otrbnc again (see selfCommand), hint an optional
// note on it.
func firstRun(path, again, hint string, stdout io.Writer) error {
	pw, err := config.GeneratePassword()
	if err != nil {
		return err
	}
	hash, err := config.HashPassword(pw)
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
	if _, err := io.WriteString(f, config.DefaultConfigText(hash, stateDir)); err != nil {
		f.Close()
		return fmt.Errorf("writing the default configuration: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the default configuration: %w", err)
	}
	if hint != "" {
		hint = "\n     " + strings.ReplaceAll(hint, "\n", "\n     ")
	}
	fmt.Fprintf(stdout, `otrbnc: wrote a default configuration to %s

Your client password (shown only this once; only its hash is stored):

    %s

Next steps:
  1. Edit the [[network]] section (address, nick, channels, policy);
     check your edit with: %s check-config
  2. Run otrbnc again: %s%s
  3. Point your IRC client at 127.0.0.1 port 6667, no TLS, with the
     password above as the server password (or SASL PLAIN). Use the
     network's name as your username to choose a network.
  4. In your client: /msg *otr help
`, path, pw, again, again, hint)
	return nil
}

// goInstallHint says where "go install" puts otrbnc and how to find it
// there.
const goInstallHint = `(or install it: "go install ./cmd/otrbnc" puts otrbnc in
$(go env GOPATH)/bin, usually ~/go/bin, or in $GOBIN if set; add
export PATH="$PATH:$(go env GOPATH)/bin" to ~/.profile to type just otrbnc)`

// hexDashD matches the directory the Go build cache keeps a "go run"
// executable in: a hash followed by "-d".
var hexDashD = regexp.MustCompile(`^[0-9a-f]{32,}-d$`)

// selfCommand returns the command that starts this otrbnc again the way
// the user started it, given os.Args[0], the working directory and the
// environment (getenv), and a hint when plain "otrbnc" would not be found.
func selfCommand(argv0, cwd string, getenv func(string) string) (cmd, hint string) {
	dir := filepath.Dir(argv0)
	goBuild := false
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		goBuild = goBuild || strings.HasPrefix(filepath.Base(d), "go-build")
	}
	if (filepath.Base(dir) == "exe" && goBuild) || hexDashD.MatchString(filepath.Base(dir)) {
		// "go run" builds into a temporary directory or the build cache.
		pkg := "./cmd/otrbnc"
		if _, err := os.Stat(filepath.Join(cwd, "cmd", "otrbnc")); err != nil &&
			filepath.Base(cwd) == "otrbnc" && filepath.Base(filepath.Dir(cwd)) == "cmd" {
			pkg = "."
		}
		return "go run " + pkg, goInstallHint
	}
	if !strings.ContainsRune(argv0, filepath.Separator) {
		return argv0, "" // found in PATH
	}
	abs := argv0
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(cwd, abs)
	}
	dir = filepath.Clean(filepath.Dir(abs))
	for _, p := range filepath.SplitList(getenv("PATH")) {
		if p != "" && filepath.Clean(p) == dir {
			return filepath.Base(argv0), ""
		}
	}
	goBins := []string{getenv("GOBIN")}
	if gp := getenv("GOPATH"); gp != "" {
		for _, p := range filepath.SplitList(gp) {
			goBins = append(goBins, filepath.Join(p, "bin"))
		}
	} else if home := getenv("HOME"); home != "" {
		goBins = append(goBins, filepath.Join(home, "go", "bin"))
	}
	for _, b := range goBins {
		if b != "" && filepath.Clean(b) == dir {
			return argv0, fmt.Sprintf(`(%s is not in your PATH; add
export PATH="$PATH:%s" to ~/.profile to type just otrbnc)`, dir, dir)
		}
	}
	return argv0, ""
}

// runAgain is selfCommand for this process.
func runAgain() (cmd, hint string) {
	cwd, _ := os.Getwd()
	return selfCommand(os.Args[0], cwd, os.Getenv)
}
