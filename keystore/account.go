package keystore

import (
	"context"
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"otrbnc/keystore/atomicfile"
	"otrbnc/otrcore"
)

var (
	// ErrUnknownFingerprint means the account has no record of a
	// fingerprint.
	ErrUnknownFingerprint = errors.New("keystore: unknown fingerprint")
	// ErrNoLibotrAccount means libotr files hold neither a key nor a
	// fingerprint for the requested libotr account.
	ErrNoLibotrAccount = errors.New("keystore: no such account in the libotr files")
)

// An Account is one IRC network identity: a long-term DSA key, an instance
// tag, and the fingerprints of the peers seen on that network. Its methods
// are safe for concurrent use.
//
// An Account satisfies the interface otrcore uses to ask about trust:
//
//	IsTrusted(peer string, fp [20]byte) bool
//	KnownFingerprints(peer string) [][20]byte
type Account struct {
	store *Store
	name  string
	file  string
	tag   uint32

	// writeMu serializes changes and guards sealer. It is held
	// while a change is written to disk; mu is not, so queries never wait
	// for the disk.
	writeMu sync.Mutex
	closed  atomic.Bool // set with writeMu held
	sealer  *sealer

	mu  sync.RWMutex
	st  *state  // replaced, never modified, once published
	gen *keygen // key generation in progress, if any
}

// keygen is one background key generation.
type keygen struct {
	done chan struct{}
	err  error // set before done is closed
}

// Name returns the account's name.
func (a *Account) Name() string { return a.name }

// InstanceTag returns the account's OTR v3 instance tag, at least 0x100.
// It never changes.
func (a *Account) InstanceTag() uint32 { return a.tag }

func (a *Account) state() *state {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.st
}

// write stores st on disk. The caller holds writeMu, or a is not yet
// visible to other goroutines.
func (a *Account) write(st *state, create bool) error {
	data, err := encodeState(a.name, st, a.sealer)
	if err != nil {
		return err
	}
	path := filepath.Join(a.store.dir, a.file)
	if create {
		return atomicfile.Create(path, data)
	}
	return atomicfile.Write(path, data)
}

// errUnchanged, returned by an update function, skips the write.
var errUnchanged = errors.New("unchanged")

// update applies fn to a copy of the state, writes the result to disk and
// only then publishes it.
func (a *Account) update(fn func(st *state) error) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if a.closed.Load() {
		return ErrClosed
	}
	next := a.state().clone()
	if err := fn(next); err == errUnchanged {
		return nil
	} else if err != nil {
		return err
	}
	if err := a.write(next, false); err != nil {
		return err
	}
	a.mu.Lock()
	a.st = next
	a.mu.Unlock()
	return nil
}

// startKeygenLocked starts generating a key in the background. a.mu is held.
func (a *Account) startKeygenLocked() {
	g := &keygen{done: make(chan struct{})}
	a.gen = g
	go func() {
		key, err := a.store.newKey()
		if err == nil {
			err = validateKey(key)
		}
		if err == nil {
			err = a.update(func(st *state) error {
				if st.key != nil { // ReplaceKey or an import won
					return errUnchanged
				}
				st.key = key
				return nil
			})
		}
		a.mu.Lock()
		g.err = err
		a.gen = nil
		a.mu.Unlock()
		close(g.done)
	}()
}

// PrivateKey returns the account's long-term DSA key, waiting until it has
// been generated and stored if a background generation is in progress. If an
// earlier generation failed, PrivateKey starts another. The result is a copy.
func (a *Account) PrivateKey(ctx context.Context) (*dsa.PrivateKey, error) {
	for {
		a.mu.Lock()
		if k := a.st.key; k != nil {
			a.mu.Unlock()
			return cloneKey(k), nil
		}
		if a.gen == nil {
			if a.closed.Load() {
				a.mu.Unlock()
				return nil, ErrClosed
			}
			a.startKeygenLocked()
		}
		g := a.gen
		a.mu.Unlock()
		select {
		case <-g.done:
			if g.err != nil {
				return nil, fmt.Errorf("keystore: account %s: %w", a.name, g.err)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Fingerprint returns the fingerprint of the account's own key, waiting for
// the key like [Account.PrivateKey].
func (a *Account) Fingerprint(ctx context.Context) (otrcore.Fingerprint, error) {
	k, err := a.PrivateKey(ctx)
	if err != nil {
		return otrcore.Fingerprint{}, err
	}
	return otrcore.FingerprintOf(&k.PublicKey), nil
}

// ReplaceKey replaces the account's long-term key with key, or with a newly
// generated key if key is nil, and returns the new key's fingerprint. A key
// is validated first (1024-bit p, 160-bit q, y = g^x mod p); generation can
// be cancelled through ctx. Peers will see a new fingerprint and must verify
// it again.
func (a *Account) ReplaceKey(ctx context.Context, key *dsa.PrivateKey) (otrcore.Fingerprint, error) {
	if key == nil {
		type result struct {
			k   *dsa.PrivateKey
			err error
		}
		ch := make(chan result, 1)
		go func() {
			k, err := a.store.newKey()
			ch <- result{k, err}
		}()
		select {
		case r := <-ch:
			if r.err != nil {
				return otrcore.Fingerprint{}, r.err
			}
			key = r.k
		case <-ctx.Done():
			return otrcore.Fingerprint{}, ctx.Err()
		}
	} else {
		key = cloneKey(key)
	}
	if err := validateKey(key); err != nil {
		return otrcore.Fingerprint{}, err
	}
	err := a.update(func(st *state) error {
		st.key = key
		return nil
	})
	if err != nil {
		return otrcore.Fingerprint{}, err
	}
	return otrcore.FingerprintOf(&key.PublicKey), nil
}

// IsTrusted reports whether fp has been verified, manually or by SMP. Trust
// belongs to the fingerprint, so the answer does not depend on peer; use
// [Account.SeenFingerprint] to learn whether peer has used fp before.
func (a *Account) IsTrusted(peer string, fp [20]byte) bool {
	r := a.state().fps[fp]
	return r != nil && r.trust != TrustNone
}

// KnownFingerprints returns every fingerprint seen under peer, whatever its
// trust, ordered by first sighting.
func (a *Account) KnownFingerprints(peer string) [][20]byte {
	fps := a.state().peerFingerprints(peer)
	out := make([][20]byte, len(fps))
	for i, fp := range fps {
		out[i] = fp
	}
	return out
}

// normTime strips the monotonic clock reading and location from t, so that
// values compare the same before and after a round trip through the disk. A
// zero t means now.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.Round(0).UTC()
}

// SeenFingerprint records that peer presented fp at time now (zero means
// the current time) and reports what was known before: whether fp or the
// pairing is new, which other fingerprints peer used before and which other
// nicks fp appeared under. The record is on disk when it returns.
func (a *Account) SeenFingerprint(peer string, fp otrcore.Fingerprint, now time.Time) (SeenResult, error) {
	if peer == "" {
		return SeenResult{}, errors.New("keystore: empty peer name")
	}
	now = normTime(now)
	var res SeenResult
	err := a.update(func(st *state) error {
		res = st.seen(peer, fp, now)
		return nil
	})
	if err != nil {
		return SeenResult{}, err
	}
	return res, nil
}

// SetTrust sets the trust of fp, recording now (zero means the current time)
// as the verification time. fp need not have been seen yet: a fingerprint
// obtained out of band can be trusted before the peer first uses it.
// Setting TrustNone keeps the fingerprint's sightings.
func (a *Account) SetTrust(fp otrcore.Fingerprint, level TrustLevel, now time.Time) error {
	if level > TrustSMP {
		return fmt.Errorf("keystore: invalid trust level %d", level)
	}
	now = normTime(now)
	return a.update(func(st *state) error {
		st.setTrust(fp, level, now)
		return nil
	})
}

// Lookup returns what the account knows about fp.
func (a *Account) Lookup(fp otrcore.Fingerprint) (FingerprintInfo, bool) {
	r := a.state().fps[fp]
	if r == nil {
		return FingerprintInfo{}, false
	}
	return r.info(fp), true
}

// Forget removes every record of fp: its sightings and its trust. It returns
// an error wrapping [ErrUnknownFingerprint] if there is none.
func (a *Account) Forget(fp otrcore.Fingerprint) error {
	return a.update(func(st *state) error {
		if st.fps[fp] == nil {
			return fmt.Errorf("%w %s", ErrUnknownFingerprint, fp)
		}
		delete(st.fps, fp)
		return nil
	})
}

// Fingerprints returns every fingerprint the account knows, sorted by
// value.
func (a *Account) Fingerprints() []FingerprintInfo {
	st := a.state()
	var out []FingerprintInfo
	for _, fp := range st.sortedFingerprints() {
		out = append(out, st.fps[fp].info(fp))
	}
	return out
}

// Peers returns every nick any fingerprint has been seen under, sorted.
func (a *Account) Peers() []string {
	var nicks []string
	for _, r := range a.state().fps {
		for _, s := range r.seen {
			nicks = append(nicks, s.Nick)
		}
	}
	slices.Sort(nicks)
	return slices.Compact(nicks)
}

// ImportResult summarizes [Account.ImportLibotr].
type ImportResult struct {
	// KeyImported reports that the account's key was replaced by the
	// libotr account's key.
	KeyImported bool
	// Sightings is the number of (peer, fingerprint) lines imported.
	Sightings int
	// Trusted is the number of imported fingerprints that libotr marked
	// as trusted.
	Trusted int
}

// ImportLibotr imports the libotr account from into a: its private key, if l
// has one (replacing a's key), and every fingerprint line of that account.
// Peer names are used as they are; case-fold l.Fingerprints[i].Peer first if
// the proxy compares folded nicks. The instance tag is never imported.
//
// Imported sightings are dated now (libotr records no times). A non-empty
// libotr trust makes the fingerprint trusted: "smp" as [TrustSMP], anything
// else as [TrustManual], verified at now. Import never lowers trust that
// a already has. Everything is written in one atomic update.
func (a *Account) ImportLibotr(l *Libotr, from LibotrAccount, now time.Time) (ImportResult, error) {
	now = normTime(now)
	var (
		res   ImportResult
		key   *dsa.PrivateKey
		lines []LibotrFingerprint
	)
	for _, k := range l.Keys {
		if k.Account == from {
			if err := validateKey(k.Key); err != nil {
				return res, fmt.Errorf("keystore: libotr account %v: %w", from, err)
			}
			key = cloneKey(k.Key)
		}
	}
	for _, f := range l.Fingerprints {
		if f.Account == from {
			if f.Peer == "" {
				return res, fmt.Errorf("keystore: libotr account %v: empty peer name", from)
			}
			lines = append(lines, f)
		}
	}
	if key == nil && len(lines) == 0 {
		return res, fmt.Errorf("%w: %v", ErrNoLibotrAccount, from)
	}
	// A fingerprint may be on several lines (several peers); SMP on any
	// line wins over other trust strings.
	imported := make(map[otrcore.Fingerprint]TrustLevel)
	for _, f := range lines {
		switch {
		case f.Trust == "smp":
			imported[f.Fingerprint] = TrustSMP
		case f.Trust != "" && imported[f.Fingerprint] == TrustNone:
			imported[f.Fingerprint] = TrustManual
		}
	}
	err := a.update(func(st *state) error {
		res = ImportResult{KeyImported: key != nil, Sightings: len(lines)}
		if key != nil {
			st.key = key
		}
		for _, f := range lines {
			st.seen(f.Peer, f.Fingerprint, now)
		}
		for fp, level := range imported {
			if level == TrustNone {
				continue
			}
			res.Trusted++
			if st.fps[fp].trust == TrustNone {
				st.setTrust(fp, level, now)
			}
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, err
	}
	return res, nil
}

// ExportLibotr returns the account's key and fingerprints as libotr account
// as, waiting for the key like [Account.PrivateKey]. Every (nick,
// fingerprint) sighting becomes a fingerprint line; trust is written as
// "smp" or "verified". Fingerprints trusted but never seen have no nick and
// are left out. Instance tags are not exported.
func (a *Account) ExportLibotr(ctx context.Context, as LibotrAccount) (*Libotr, error) {
	key, err := a.PrivateKey(ctx)
	if err != nil {
		return nil, err
	}
	l := &Libotr{Keys: []LibotrKey{{Account: as, Key: key}}}
	st := a.state()
	for _, fp := range st.sortedFingerprints() {
		r := st.fps[fp]
		trust := ""
		switch r.trust {
		case TrustManual:
			trust = "verified"
		case TrustSMP:
			trust = "smp"
		}
		for _, s := range r.seen {
			l.Fingerprints = append(l.Fingerprints, LibotrFingerprint{Peer: s.Nick, Account: as, Fingerprint: fp, Trust: trust})
		}
	}
	return l, nil
}
