package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"otrbnc/keystore"
	"otrbnc/proxy"
	"otrbnc/proxy/config"
)

// systemdConfig is where the systemd unit in deploy/ reads its
// configuration; error messages mention it.
const systemdConfig = "/etc/otrbnc/config.toml"

// defaultConfigPath returns the per-user configuration path.
func defaultConfigPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the configuration directory (set HOME or XDG_CONFIG_HOME, or give -config PATH): %w", err)
	}
	return filepath.Join(dir, "otrbnc", "config.toml"), nil
}

// configFlag defines the -config flag shared by most subcommands.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "configuration `file` (default $XDG_CONFIG_HOME/otrbnc/config.toml, or ~/.config/otrbnc/config.toml)")
}

// passphraseFlag defines -passphrase-file, which overrides the
// configuration's passphrase_file (useful outside systemd, where
// ${CREDENTIALS_DIRECTORY} is not set).
func passphraseFlag(fs *flag.FlagSet) *string {
	return fs.String("passphrase-file", "", "`file` holding the keystore passphrase (overrides passphrase_file in the configuration)")
}

// loadedConfig is a configuration and where it came from.
type loadedConfig struct {
	path string
	cfg  *config.Config
}

// stateDir returns the state directory: state_dir, or "state" next to the
// configuration file.
func (lc *loadedConfig) stateDir() string {
	if lc.cfg.StateDir != "" {
		return lc.cfg.StateDir
	}
	return filepath.Join(filepath.Dir(lc.path), "state")
}

// loadConfig reads the configuration at path, or at the default path when
// path is empty.
func loadConfig(path string) (*loadedConfig, error) {
	if path == "" {
		p, err := defaultConfigPath()
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			again, _ := runAgain()
			return nil, fmt.Errorf("no configuration at %s: run %q once to create one, or give -config PATH (the systemd service uses -config %s)", p, again, systemdConfig)
		}
		path = p
	}
	cfg, err := config.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return &loadedConfig{path: path, cfg: cfg}, nil
}

// errNoCredentials reports a passphrase_file that refers to systemd's
// credentials directory outside systemd.
var errNoCredentials = errors.New("CREDENTIALS_DIRECTORY is not set")

// passphrasePath resolves the passphrase file: the override if given,
// else passphrase_file with environment variables expanded, relative to
// the configuration file. "" means no passphrase.
func (lc *loadedConfig) passphrasePath(override string) (string, error) {
	if override != "" {
		return override, nil
	}
	raw := lc.cfg.PassphraseFile
	if raw == "" {
		return "", nil
	}
	var missing []string
	p := os.Expand(raw, func(v string) string {
		val := os.Getenv(v)
		if val == "" {
			missing = append(missing, v)
		}
		return val
	})
	if len(missing) > 0 {
		err := fmt.Errorf("passphrase_file %q uses $%s, which is not set", raw, strings.Join(missing, ", $"))
		if missing[0] == "CREDENTIALS_DIRECTORY" {
			err = fmt.Errorf("%w (%w: systemd sets it for the service from LoadCredential=); outside the service, give the file with -passphrase-file, for example -passphrase-file /etc/otrbnc/passphrase", err, errNoCredentials)
		} else {
			err = fmt.Errorf("%w; set it, or give the file with -passphrase-file", err)
		}
		return "", err
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(lc.path), p)
	}
	return p, nil
}

// passphrase reads the keystore passphrase; nil means none is configured.
func (lc *loadedConfig) passphrase(override string) ([]byte, error) {
	p, err := lc.passphrasePath(override)
	if err != nil || p == "" {
		return nil, err
	}
	pw, err := keystore.ReadPassphraseFile(p)
	if err != nil {
		return nil, fmt.Errorf("%w (check passphrase_file in %s)", err, lc.path)
	}
	return pw, nil
}

// openStore opens the keystore of lc, turning the keystore's errors into
// instructions. running tells what the lock means to the caller: true for
// "otrbnc run", where a lock means a second instance. logger receives the
// keystore's background events; nil means slog's default logger.
func (lc *loadedConfig) openStore(passphraseOverride string, running bool, logger *slog.Logger) (*keystore.Store, error) {
	pass, err := lc.passphrase(passphraseOverride)
	if err != nil {
		return nil, err
	}
	dir := lc.stateDir()
	store, err := keystore.Open(dir, keystore.Options{Passphrase: pass, Logger: logger})
	switch {
	case err == nil:
		return store, nil
	case errors.Is(err, keystore.ErrLocked) && running:
		return nil, lockedError(fmt.Sprintf("another otrbnc is already running with the state directory %s; stop it first, or give this one its own state_dir", dir))
	case errors.Is(err, keystore.ErrLocked):
		return nil, lockedError(fmt.Sprintf("the state directory %s is in use: otrbnc is running. Stop it first (Ctrl-C, or: systemctl stop otrbnc), run this command again, then start otrbnc again. While it runs, the same can be done from your IRC client: /msg *otr help", dir))
	case errors.Is(err, keystore.ErrPassphraseRequired):
		return nil, fmt.Errorf("the keystore in %s is encrypted with a passphrase: set passphrase_file in %s to the file that holds it (or give -passphrase-file FILE)\n(%w)", dir, lc.path, err)
	case errors.Is(err, keystore.ErrWrongPassphrase):
		return nil, fmt.Errorf("the passphrase does not open the keystore in %s: check the passphrase file (one trailing line break is ignored, other spaces are not); the keystore files were not changed\n(%w)", dir, err)
	case errors.Is(err, keystore.ErrCorrupt), errors.Is(err, keystore.ErrForeignFile), errors.Is(err, keystore.ErrUnsupportedVersion):
		return nil, err // it names the file and says what to do
	}
	return nil, fmt.Errorf("opening the state directory %s: %w", dir, err)
}

// lockedError is openStore's error when the state directory is locked; it
// matches keystore.ErrLocked with errors.Is.
type lockedError string

func (e lockedError) Error() string        { return string(e) }
func (e lockedError) Is(target error) bool { return target == keystore.ErrLocked }

// closeStore closes the keystore and, when running as root on a state
// directory that belongs to another user (the systemd service's), gives
// that user back the files root created or replaced, so that the service
// can still read them.
func closeStore(store *keystore.Store, dir string) error {
	err := store.Close()
	if cerr := restoreOwner(dir); err == nil {
		err = cerr
	}
	return err
}

func restoreOwner(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("giving %s back to its owner: %w", dir, err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		info, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if s, ok := info.Sys().(*syscall.Stat_t); ok && s.Uid == 0 {
			if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
				return fmt.Errorf("giving %s back to uid %d: %w", p, st.Uid, err)
			}
		}
	}
	return nil
}

// openNetwork loads the configuration at configPath, picks the network
// called account (see network) and opens the keystore; the caller closes
// it with closeStore(store, lc.stateDir()). With existing, a state
// directory that does not exist yet is an error instead of being created.
func openNetwork(configPath, account, passOverride string, existing bool) (*loadedConfig, *config.NetworkConfig, *keystore.Store, error) {
	lc, err := loadConfig(configPath)
	if err != nil {
		return nil, nil, nil, err
	}
	nc, err := lc.network(account)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := os.Stat(lc.stateDir()); existing && errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, fmt.Errorf("no OTR account for %s yet: %s does not exist; otrbnc creates it when it first runs", nc.Name, lc.stateDir())
	}
	store, err := lc.openStore(passOverride, false, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	return lc, nc, store, nil
}

// networkNames lists the configured networks.
func (lc *loadedConfig) networkNames() []string {
	var names []string
	for _, n := range lc.cfg.Network {
		names = append(names, n.Name)
	}
	return names
}

// network picks the configured network called name (case-insensitive), or
// the only one when name is empty.
func (lc *loadedConfig) network(name string) (*config.NetworkConfig, error) {
	nets := lc.cfg.Network
	if name == "" {
		if len(nets) == 1 {
			return &nets[0], nil
		}
		return nil, fmt.Errorf("%s configures several networks (%s): choose one with -account NAME", lc.path, strings.Join(lc.networkNames(), ", "))
	}
	for i := range nets {
		if strings.EqualFold(nets[i].Name, name) {
			return &nets[i], nil
		}
	}
	return nil, fmt.Errorf("no network named %q in %s (networks: %s); the OTR account of a network has the network's name", name, lc.path, strings.Join(lc.networkNames(), ", "))
}

// foldNick case-folds a nick the way the proxy does for the CASEMAPPING
// token cm, so that imported fingerprints match the names the proxy looks
// up.
func foldNick(cm, nick string) string { return proxy.FoldNick(cm, nick) }
