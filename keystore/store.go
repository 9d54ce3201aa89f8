package keystore

import (
	"cmp"
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"otrbnc/keystore/atomicfile"
	"otrbnc/otrcore"
)

var (
	// ErrLocked means another process has the state directory open.
	ErrLocked = errors.New("keystore: state directory is in use by another process")
	// ErrClosed means the Store was closed.
	ErrClosed = errors.New("keystore: store is closed")
	// ErrInvalidAccountName means an account name cannot be used; see
	// [Store.Account].
	ErrInvalidAccountName = errors.New("keystore: invalid account name")
	// ErrTooManyTrusted means a fingerprint cannot be trusted because the
	// account holds [Options.MaxFingerprints] fingerprints and all of them
	// are trusted.
	ErrTooManyTrusted = errors.New("keystore: the account holds the most fingerprints it may")
)

// Default limits; see [Options].
const (
	// DefaultMaxFingerprints is the default of [Options.MaxFingerprints].
	DefaultMaxFingerprints = 4096
	// DefaultMaxFingerprintsPerNick is the default of
	// [Options.MaxFingerprintsPerNick].
	DefaultMaxFingerprintsPerNick = 16
	// DefaultMaxNicksPerFingerprint is the default of
	// [Options.MaxNicksPerFingerprint].
	DefaultMaxNicksPerFingerprint = 8
)

// defaultWriteInterval is the shortest time between two background writes
// of an account.
const defaultWriteInterval = 2 * time.Second

// Options configure a [Store].
type Options struct {
	// Passphrase, if not empty, seals every account file with a key
	// derived from it (see the package documentation for the threat
	// model). Files written without a passphrase are sealed when the
	// store is opened with one. A sealed store cannot be opened without
	// it. The slice is copied.
	Passphrase []byte

	// Any peer can show otrbnc a new key at no cost to themselves, so
	// what an account remembers about peers is bounded. When a limit is
	// reached, the untrusted fingerprint least recently seen makes room;
	// trusted fingerprints are never evicted (see
	// [Account.SeenFingerprint]). Zero means the default. Open refuses
	// limits with which an account file could outgrow what Open reads.

	// MaxFingerprints bounds the fingerprints an account remembers,
	// trusted or not. The default, 4096, is far more than anyone
	// verifies, and keeps every account file under a few tens of MiB.
	MaxFingerprints int
	// MaxFingerprintsPerNick bounds the fingerprints remembered under one
	// nick. The default, 16, covers a person's devices and reinstalls;
	// it stops one nick from pushing out everybody else's keys.
	MaxFingerprintsPerNick int
	// MaxNicksPerFingerprint bounds the nicks remembered for one
	// fingerprint. The default, 8, covers the usual nick, nick_ and
	// away nicks; over it the least recently seen nick is forgotten (the
	// fingerprint and its trust stay).
	MaxNicksPerFingerprint int

	// Logger receives what happens in the background: failed writes of
	// fingerprint sightings (which are retried) and their recovery, and
	// fingerprints evicted from files of earlier versions when they are
	// loaded. Nil means [slog.Default].
	Logger *slog.Logger

	// writeInterval overrides defaultWriteInterval (tests).
	writeInterval time.Duration
	// kdf overrides the Argon2id parameters for newly sealed files (tests).
	kdf kdfParams
	// newKey overrides key generation (tests).
	newKey func() (*dsa.PrivateKey, error)
}

// limits returns the limits opts sets, with defaults filled in, or an error
// if they are invalid or would let an account file outgrow maxStateFile.
func (opts *Options) limits() (limits, error) {
	lim := limits{
		fingerprints: cmp.Or(opts.MaxFingerprints, DefaultMaxFingerprints),
		perNick:      cmp.Or(opts.MaxFingerprintsPerNick, DefaultMaxFingerprintsPerNick),
		nicksPerFP:   cmp.Or(opts.MaxNicksPerFingerprint, DefaultMaxNicksPerFingerprint),
	}
	if lim.fingerprints < 1 || lim.perNick < 1 || lim.nicksPerFP < 1 {
		return limits{}, errors.New("keystore: fingerprint limits must be positive")
	}
	if size := maxFileSize(lim); size > maxStateFile {
		return limits{}, fmt.Errorf("keystore: with at most %d fingerprints of %d nicks each, an account file could reach %d bytes, more than the %d bytes otrbnc reads; lower the limits",
			lim.fingerprints, lim.nicksPerFP, size, maxStateFile)
	}
	return lim, nil
}

// A Store is an open state directory. It holds every account's state in
// memory; see [Account] for when changes reach the disk.
type Store struct {
	dir           string
	passphrase    []byte
	kdf           kdfParams
	newKey        func() (*dsa.PrivateKey, error)
	limits        limits
	logger        *slog.Logger
	writeInterval time.Duration

	mu       sync.Mutex
	lock     io.Closer // nil once closed
	accounts map[string]*Account
}

// accountName is the form of account names: they become file names.
var accountName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Open opens the state directory dir, creating it if needed, and loads every
// account in it. dir and the files in it are restricted to their owner (mode
// 0700 and 0600) if they were not; note that systemd creates a
// StateDirectory with mode 0755 unless the unit sets StateDirectoryMode=0700.
// Only one process at a time can have a directory open; another gets
// [ErrLocked].
//
// Open fails, and leaves every account file's content untouched, if any
// account file cannot be read: see [ErrCorrupt], [ErrForeignFile],
// [ErrUnsupportedVersion], [ErrPassphraseRequired] and [ErrWrongPassphrase].
// The error names the file. Otherwise, with opts.Passphrase set, account
// files written without a passphrase are sealed before Open returns.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("keystore: empty state directory path")
	}
	lim, err := opts.limits()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: creating state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("keystore: state directory %s is not a directory", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("keystore: restricting state directory to its owner: %w", err)
		}
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	s := &Store{
		dir:           dir,
		passphrase:    slices.Clone(opts.Passphrase),
		kdf:           opts.kdf,
		newKey:        opts.newKey,
		limits:        lim,
		logger:        opts.Logger,
		writeInterval: cmp.Or(opts.writeInterval, defaultWriteInterval),
		lock:          lock,
		accounts:      make(map[string]*Account),
	}
	if s.kdf == (kdfParams{}) {
		s.kdf = defaultKDF
	}
	if s.newKey == nil {
		s.newKey = generateKey
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if err := s.load(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := s.sealPlaintext(); err != nil {
		lock.Close()
		return nil, err
	}
	for _, a := range s.accounts {
		pending := a.changes != a.saved // limits applied on load
		a.startWriter()
		if pending {
			a.wakeWriter()
		}
		a.mu.Lock()
		if a.st.key == nil {
			a.startKeygenLocked()
		}
		a.mu.Unlock()
	}
	return s, nil
}

// load removes leftover temporary files and reads every account file.
func (s *Store) load() error {
	// A write interrupted by a crash leaves a temporary file; the account
	// file itself is intact.
	isAccountFile := func(name string) bool { return strings.HasPrefix(name, filePrefix) }
	if err := atomicfile.RemoveStale(s.dir, isAccountFile); err != nil {
		return err
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("keystore: reading state directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		acct, ok := strings.CutPrefix(name, filePrefix)
		if !ok {
			continue
		}
		acct, ok = strings.CutSuffix(acct, fileSuffix)
		if !ok || !accountName.MatchString(acct) {
			continue
		}
		if err := s.loadAccount(acct); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) loadAccount(name string) error {
	path := filepath.Join(s.dir, accountFile(name))
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return unusable(path, name, fmt.Errorf("%w: not a regular file", ErrForeignFile))
	}
	data, err := readStateFile(path)
	if err != nil {
		return unusable(path, name, err)
	}
	st, sl, err := decodeState(name, data, s.passphrase)
	if err != nil {
		return unusable(path, name, err)
	}
	if fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("keystore: restricting %s to its owner: %w", path, err)
		}
	}
	a := s.newAccount(name, st)
	a.sealer = sl
	if fps, sightings := st.enforce(s.limits); fps+sightings > 0 {
		// An earlier version recorded fingerprints without limit. The
		// file is rewritten in the background, once Open has read every
		// file.
		a.changes++
		s.logger.Warn("keystore: account file holds more than the limits allow; the least recently seen untrusted fingerprints are dropped",
			"file", path, "fingerprints_dropped", fps, "sightings_dropped", sightings)
	}
	s.accounts[name] = a
	return nil
}

// unusable explains why the account file at path, of account name, cannot
// be used, and what the user can do about it.
func unusable(path, name string, err error) error {
	dir := filepath.Dir(path)
	fresh := fmt.Sprintf("move it out of %s: account %q then starts afresh with a new key (your contacts see a new fingerprint and must verify it again) and without the fingerprints and trust the file recorded", dir, name)
	var out string
	switch {
	case errors.Is(err, ErrPassphraseRequired), errors.Is(err, ErrWrongPassphrase):
		return fmt.Errorf("%w (file %s left untouched)", err, path)
	case errors.Is(err, ErrUnsupportedVersion):
		out = "use the newer otrbnc that wrote it, restore an older copy from a backup, or " + fresh
	case errors.Is(err, ErrForeignFile):
		out = fresh
	case errors.Is(err, ErrCorrupt):
		out = "restore it from a backup, or " + fresh
	default:
		return fmt.Errorf("%w (file %s)", err, path)
	}
	return fmt.Errorf("%w\nfile: %s (left untouched)\nTo start otrbnc, %s.", err, path, out)
}

// sealPlaintext seals the account files written before a passphrase was
// configured. It runs only once every file has been read successfully.
func (s *Store) sealPlaintext() error {
	if len(s.passphrase) == 0 {
		return nil
	}
	for _, a := range s.accounts {
		if a.sealer != nil {
			continue
		}
		sl, err := newSealer(s.passphrase, s.kdf)
		if err != nil {
			return err
		}
		a.sealer = sl
		if err := a.write(a.st, false); err != nil {
			return err
		}
		a.saved = a.changes
	}
	return nil
}

func (s *Store) newAccount(name string, st *state) *Account {
	return &Account{
		store: s, name: name, file: accountFile(name), tag: st.tag, st: st,
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
	}
}

// Account returns the account called name, creating it if it does not
// exist. A new account gets a fresh instance tag at once and a private key
// generated in the background.
//
// Account names are used in file names: they are 1 to 64 ASCII letters,
// digits, '.', '_' or '-', not starting with '.', '_' or '-'.
func (s *Store) Account(name string) (*Account, error) {
	if !accountName.MatchString(name) {
		return nil, fmt.Errorf("%w %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalidAccountName, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return nil, ErrClosed
	}
	if a := s.accounts[name]; a != nil {
		return a, nil
	}
	tag, err := newInstanceTag()
	if err != nil {
		return nil, err
	}
	st := newState(tag, nil, make(map[otrcore.Fingerprint]*record))
	a := s.newAccount(name, st)
	if len(s.passphrase) > 0 {
		if a.sealer, err = newSealer(s.passphrase, s.kdf); err != nil {
			return nil, err
		}
	}
	if err := a.write(st, true); err != nil {
		return nil, err
	}
	s.accounts[name] = a
	a.startWriter()
	a.mu.Lock()
	a.startKeygenLocked()
	a.mu.Unlock()
	return a, nil
}

// Accounts returns the names of all accounts, sorted.
func (s *Store) Accounts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.accounts))
	for n := range s.accounts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Close writes every change not yet on disk, waits for writes in progress
// and releases the state directory. Later changes fail with [ErrClosed];
// queries keep answering from memory. A key generation still running is
// abandoned. An error means some fingerprint sightings could not be saved
// (the files hold the state of their last successful write).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return nil
	}
	var errs []error
	for _, a := range s.accounts {
		if err := a.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("keystore: releasing state directory: %w", err))
	}
	s.lock = nil
	return errors.Join(errs...)
}

// newInstanceTag returns a random instance tag of at least 0x100.
func newInstanceTag() (uint32, error) {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("keystore: generating instance tag: %w", err)
		}
		if t := binary.BigEndian.Uint32(b[:]); t >= minInstanceTag {
			return t, nil
		}
	}
}

// ReadPassphraseFile reads a passphrase from the file at path, such as a
// systemd credential ($CREDENTIALS_DIRECTORY/NAME with LoadCredential=). One
// trailing line break is removed. An empty passphrase is an error.
func ReadPassphraseFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: reading passphrase: %w", err)
	}
	defer f.Close()
	const max = 64 << 10
	p, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("keystore: reading passphrase file %s: %w", path, err)
	}
	if len(p) > max {
		return nil, fmt.Errorf("keystore: passphrase file %s is larger than %d bytes", path, max)
	}
	p = p[:len(p)-len(trailingNewline(p))]
	if len(p) == 0 {
		return nil, fmt.Errorf("keystore: passphrase file %s is empty", path)
	}
	return p, nil
}

func trailingNewline(p []byte) []byte {
	for _, nl := range []string{"\r\n", "\n"} {
		if len(p) >= len(nl) && string(p[len(p)-len(nl):]) == nl {
			return p[len(p)-len(nl):]
		}
	}
	return nil
}
