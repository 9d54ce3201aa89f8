package keystore

import (
	"context"
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
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
//
// Changes reach the disk in two ways. Sightings ([Account.SeenFingerprint])
// change memory at once and are written by a background writer, at most one
// write at a time and spaced out (see [Options]); trust changes, Forget,
// ReplaceKey, imports and key generation are written before they return.
// Every write is the whole state, atomically, so the file always holds
// a state the account was in.
type Account struct {
	store *Store
	name  string
	file  string
	tag   uint32

	// writeMu serializes writes to disk and guards sealer. mu is never
	// held during a write, so neither queries nor sightings wait for the
	// disk.
	writeMu sync.Mutex
	sealer  *sealer

	mu      sync.RWMutex
	st      *state  // its maps change under mu, its records never change
	gen     *keygen // key generation in progress, if any
	closed  bool
	changes uint64 // changes made to st since the account was loaded
	saved   uint64 // the value of changes that the file holds

	wake chan struct{} // buffered: there are changes to write
	stop chan struct{} // closed to stop the writer
	done chan struct{} // closed when the writer has stopped; nil if not started
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

// write stores st on disk. The caller holds writeMu, or a is not yet
// visible to other goroutines.
func (a *Account) write(st *state, create bool) error {
	start := time.Now()
	data, err := encodeState(a.name, st, a.sealer)
	if err != nil {
		return err
	}
	path := filepath.Join(a.store.dir, a.file)
	if create {
		err = atomicfile.Create(path, data)
	} else {
		err = atomicfile.Write(path, data)
	}
	if err == nil {
		a.store.logger.Debug("keystore: account saved", "account", a.name, "bytes", len(data), "fingerprints", len(st.fps), "took", time.Since(start))
	}
	return err
}

// errUnchanged, returned by an update function, skips the write.
var errUnchanged = errors.New("unchanged")

// update makes a change that must be on disk before it is visible: it
// applies op to a copy of the state, writes the copy, and only then
// publishes the change. Sightings recorded while the copy is written are
// kept: op then runs a second time, on the current state. op must
// therefore depend only on its arguments and on what sightings cannot
// change (the key, and which fingerprints are trusted).
func (a *Account) update(op func(st *state) error) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return ErrClosed
	}
	next, n := a.st.clone(), a.changes
	a.mu.RUnlock()
	if err := op(next); err == errUnchanged {
		return nil
	} else if err != nil {
		return err
	}
	if err := a.write(next, false); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.changes == n {
		// Nothing happened meanwhile: the file holds exactly next.
		a.st = next
		a.changes++
		a.saved = a.changes
		return nil
	}
	// Sightings were recorded meanwhile. The file holds op's change but
	// not them: apply op to the current state too (it cannot fail there,
	// as sightings change neither the key nor the trusted fingerprints)
	// and leave the rest to the background writer.
	op(a.st)
	a.changes++
	a.saved = n
	a.wakeWriter()
	return nil
}

// wakeWriter tells the background writer that there are changes to write.
func (a *Account) wakeWriter() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// flushLocked writes the changes not yet on disk, if any. The caller holds
// writeMu.
func (a *Account) flushLocked() error {
	a.mu.RLock()
	if a.saved == a.changes {
		a.mu.RUnlock()
		return nil
	}
	snap, n := a.st.snapshot(), a.changes
	a.mu.RUnlock()
	if err := a.write(snap, false); err != nil {
		return fmt.Errorf("keystore: saving account %s: %w", a.name, err)
	}
	a.mu.Lock()
	a.saved = n
	a.mu.Unlock()
	return nil
}

// Flush writes the sightings recorded since the last write and returns once
// they are on disk, or with the error of the write. The background writer
// and [Store.Close] write them anyway; Flush is for callers that need them
// on disk at a given moment. After Close it returns [ErrClosed].
func (a *Account) Flush() error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	a.mu.RLock()
	closed := a.closed
	a.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return a.flushLocked()
}

// startWriter starts the background writer.
func (a *Account) startWriter() {
	a.done = make(chan struct{})
	go a.writeLoop()
}

// writeLoop is the background writer: it writes the account's pending
// changes, one write at a time, at most once per write interval and at
// most a tenth of the time, so that a flood of sightings costs the disk a
// bounded share. A failed write is logged and retried with growing delays;
// it is also returned by the next Flush or Close if it still fails then.
func (a *Account) writeLoop() {
	defer close(a.done)
	var (
		next    time.Time // earliest start of the next write
		retry   <-chan time.Time
		backoff time.Duration
		failing bool
	)
	interval := a.store.writeInterval
	for {
		select {
		case <-a.stop:
			return
		case <-a.wake:
		case <-retry:
		}
		retry = nil
		if wait := time.Until(next); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-a.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		start := time.Now()
		a.writeMu.Lock()
		err := a.flushLocked()
		a.writeMu.Unlock()
		took := time.Since(start)
		next = start.Add(max(interval, 10*took))
		switch {
		case err != nil:
			backoff = min(max(2*backoff, interval), maxRetryDelay)
			retry = time.After(backoff)
			a.store.logger.Error("keystore: recent fingerprint sightings are not saved yet; retrying",
				"account", a.name, "err", err, "retry_in", backoff)
			failing = true
		case failing:
			a.store.logger.Info("keystore: fingerprint sightings saved again", "account", a.name)
			failing, backoff = false, 0
		}
	}
}

// maxRetryDelay bounds the delay between retries of a failed background
// write.
const maxRetryDelay = time.Minute

// close stops the writer, marks the account closed and writes what is
// pending. The caller holds the store's lock on the directory.
func (a *Account) close() error {
	if a.done != nil {
		close(a.stop)
		<-a.done
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	return a.flushLocked()
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
			if a.closed {
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
	a.mu.RLock()
	defer a.mu.RUnlock()
	r := a.st.fps[fp]
	return r != nil && r.trust != TrustNone
}

// KnownFingerprints returns every fingerprint seen under peer, whatever its
// trust, ordered by first sighting.
func (a *Account) KnownFingerprints(peer string) [][20]byte {
	a.mu.RLock()
	fps := a.st.peerFingerprints(peer)
	a.mu.RUnlock()
	out := make([][20]byte, len(fps))
	for i, fp := range fps {
		out[i] = fp
	}
	return out
}

// normTime strips the monotonic clock reading and location from t, so that
// values compare the same before and after a round trip through the disk. A
// zero t means now. Times outside years 1 to 9999 cannot be stored.
func normTime(t time.Time) (time.Time, error) {
	if t.IsZero() {
		t = time.Now()
	}
	t = t.Round(0).UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("keystore: time %v is outside years 1 to 9999", t)
	}
	return t, nil
}

// SeenFingerprint records that peer presented fp at time now (zero means
// the current time) and reports what was known before: whether fp or the
// pairing is new, which other fingerprints peer used before and which other
// nicks fp appeared under.
//
// It changes memory only and returns at once; the background writer puts
// the sighting on disk within the write interval (see [Options]), and
// [Account.Flush] and [Store.Close] wait for it. A crash before then loses
// the sighting, never anything written before, and never trust.
//
// Peer names are 1 to [MaxPeerName] bytes of UTF-8. The limits in
// [Options] bound what is kept: making room evicts the least recently seen
// untrusted fingerprints, never trusted ones. When only trusted ones could
// make room, the result is reported but not stored and
// [SeenResult.NotRecorded] is set. It fails only for an invalid peer name
// or time, or once the store is closed.
func (a *Account) SeenFingerprint(peer string, fp otrcore.Fingerprint, now time.Time) (SeenResult, error) {
	if err := checkPeer(peer); err != nil {
		return SeenResult{}, err
	}
	now, err := normTime(now)
	if err != nil {
		return SeenResult{}, err
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return SeenResult{}, ErrClosed
	}
	res, changed := a.st.seen(peer, fp, now, a.store.limits)
	if changed {
		a.changes++
	}
	a.mu.Unlock()
	if changed {
		a.wakeWriter()
	}
	return res, nil
}

// SetTrust sets the trust of fp, recording now (zero means the current time)
// as the verification time, and returns once the change is on disk. fp
// need not have been seen yet: a fingerprint obtained out of band can be
// trusted before the peer first uses it; if the account is full, the least
// recently seen untrusted fingerprint makes room, and if all are trusted
// SetTrust fails with [ErrTooManyTrusted]. Setting TrustNone keeps the
// fingerprint's sightings.
func (a *Account) SetTrust(fp otrcore.Fingerprint, level TrustLevel, now time.Time) error {
	if level > TrustSMP {
		return fmt.Errorf("keystore: invalid trust level %d", level)
	}
	now, err := normTime(now)
	if err != nil {
		return err
	}
	lim := a.store.limits
	return a.update(func(st *state) error {
		return st.setTrust(fp, level, now, lim)
	})
}

// Lookup returns what the account knows about fp.
func (a *Account) Lookup(fp otrcore.Fingerprint) (FingerprintInfo, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	r := a.st.fps[fp]
	if r == nil {
		return FingerprintInfo{}, false
	}
	return r.info(fp), true
}

// Forget removes every record of fp, its sightings and its trust, and
// returns once that is on disk. It returns an error wrapping
// [ErrUnknownFingerprint] if there is none.
func (a *Account) Forget(fp otrcore.Fingerprint) error {
	if _, ok := a.Lookup(fp); !ok {
		return fmt.Errorf("%w %s", ErrUnknownFingerprint, fp)
	}
	return a.update(func(st *state) error {
		// A sighting may have evicted fp meanwhile: it is gone either way.
		st.forget(fp)
		return nil
	})
}

// Fingerprints returns every fingerprint the account knows, sorted by
// value.
func (a *Account) Fingerprints() []FingerprintInfo {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []FingerprintInfo
	for _, fp := range a.st.sortedFingerprints() {
		out = append(out, a.st.fps[fp].info(fp))
	}
	return out
}

// Peers returns every nick any fingerprint has been seen under, sorted.
func (a *Account) Peers() []string {
	a.mu.RLock()
	nicks := slices.Collect(maps.Keys(a.st.nicks))
	a.mu.RUnlock()
	slices.Sort(nicks)
	return nicks
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
	// Dropped is the number of (peer, fingerprint) lines that the limits
	// in [Options] left out: the untrusted fingerprints least recently
	// seen (imported lines count as seen at the time of the import).
	Dropped int
}

// ImportLibotr imports the libotr account from into a: its private key, if l
// has one (replacing a's key), and every fingerprint line of that account.
// Peer names are used as they are; case-fold l.Fingerprints[i].Peer first if
// the proxy compares folded nicks. The instance tag is never imported.
//
// Imported sightings are dated now (libotr records no times). A non-empty
// libotr trust makes the fingerprint trusted: "smp" as [TrustSMP], anything
// else as [TrustManual], verified at now. Import never lowers trust that
// a already has. Everything is written in one atomic update, before
// ImportLibotr returns.
//
// Trusted fingerprints are imported first, so the limits in [Options] only
// ever drop untrusted ones; it fails with [ErrTooManyTrusted] if the
// trusted ones alone do not fit.
func (a *Account) ImportLibotr(l *Libotr, from LibotrAccount, now time.Time) (ImportResult, error) {
	now, err := normTime(now)
	if err != nil {
		return ImportResult{}, err
	}
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
			if err := checkPeer(f.Peer); err != nil {
				return res, fmt.Errorf("keystore: libotr account %v: %w", from, err)
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
	lim := a.store.limits
	err = a.update(func(st *state) error {
		res = ImportResult{KeyImported: key != nil, Sightings: len(lines)}
		if key != nil {
			st.key = key
		}
		for fp, level := range imported {
			res.Trusted++
			if r := st.fps[fp]; r == nil || r.trust == TrustNone {
				if err := st.setTrust(fp, level, now, lim); err != nil {
					return err
				}
			}
		}
		for _, f := range lines {
			st.seen(f.Peer, f.Fingerprint, now, lim)
		}
		for _, f := range lines {
			if r := st.fps[f.Fingerprint]; r == nil || r.sightingIndex(f.Peer) < 0 {
				res.Dropped++
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
	a.mu.RLock()
	defer a.mu.RUnlock()
	st := a.st
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
