package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"otrbnc/keystore"
	"otrbnc/otrcore"
)

// Identities supplies the OTR identity of each network: the long-term key,
// the instance tag and the trust book. The proxy calls it from network
// goroutines, so implementations must be safe for concurrent use.
type Identities interface {
	// Identity returns the identity of the named network, waiting for key
	// generation if needed.
	Identity(ctx context.Context, network string) (*Identity, error)
}

// Identity is one network's OTR identity.
type Identity struct {
	Key         *otrcore.PrivateKey
	InstanceTag uint32
	Trust       TrustBook
}

// TrustBook remembers peers' fingerprints and the user's trust in them.
// Peer names are nicks case-folded with the network's case mapping. Trust
// belongs to a fingerprint, whichever nick presents it. *keystore.Account
// implements it; see the keystore package for the semantics of each
// method.
type TrustBook interface {
	otrcore.TrustStore
	// SeenFingerprint records that peer presented fp and reports what was
	// known before (other keys of the nick, other nicks of the key).
	SeenFingerprint(peer string, fp otrcore.Fingerprint, now time.Time) (keystore.SeenResult, error)
	// SetTrust sets how fp was verified (TrustNone: not verified).
	SetTrust(fp otrcore.Fingerprint, level keystore.TrustLevel, now time.Time) error
	// Lookup returns what is known about fp.
	Lookup(fp otrcore.Fingerprint) (keystore.FingerprintInfo, bool)
	// Forget removes every record of fp.
	Forget(fp otrcore.Fingerprint) error
	// Fingerprints returns every known fingerprint.
	Fingerprints() []keystore.FingerprintInfo
}

// KeyReplacer is implemented by Identities that can replace a network's
// long-term key (the *otr genkey command). ReplaceKey generates and stores
// a new key and returns it; it may take a while and must honour ctx.
type KeyReplacer interface {
	ReplaceKey(ctx context.Context, network string) (*otrcore.PrivateKey, error)
}

// MemoryIdentities keeps identities in memory only: keys are generated on
// first use and forgotten on exit. Meant for tests and benchmarks.
type MemoryIdentities struct {
	// GenerateKey, when set, replaces key generation (tests).
	GenerateKey func() (*otrcore.PrivateKey, error)

	mu  sync.Mutex
	ids map[string]*Identity
}

// NewMemoryIdentities returns an empty MemoryIdentities.
func NewMemoryIdentities() *MemoryIdentities {
	return &MemoryIdentities{ids: map[string]*Identity{}}
}

// SetKey presets the key of a network (tests reuse one key to save time).
func (m *MemoryIdentities) SetKey(network string, key *otrcore.PrivateKey, tag uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids[network] = &Identity{Key: key, InstanceTag: tag, Trust: NewMemoryTrust()}
}

func (m *MemoryIdentities) generate() (*otrcore.PrivateKey, error) {
	if m.GenerateKey != nil {
		return m.GenerateKey()
	}
	key, err := otrcore.GeneratePrivateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating OTR key: %w", err)
	}
	return key, nil
}

// Identity returns the network's identity, generating it on first use.
func (m *MemoryIdentities) Identity(ctx context.Context, network string) (*Identity, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id := m.ids[network]; id != nil {
		return id, nil
	}
	key, err := m.generate()
	if err != nil {
		return nil, err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("generating instance tag: %w", err)
	}
	tag := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if tag < 0x100 {
		tag += 0x100
	}
	id := &Identity{Key: key, InstanceTag: tag, Trust: NewMemoryTrust()}
	m.ids[network] = id
	return id, nil
}

// ReplaceKey implements KeyReplacer.
func (m *MemoryIdentities) ReplaceKey(ctx context.Context, network string) (*otrcore.PrivateKey, error) {
	key, err := m.generate()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if id := m.ids[network]; id != nil {
		// Identities already handed out are never modified.
		m.ids[network] = &Identity{Key: key, InstanceTag: id.InstanceTag, Trust: id.Trust}
	}
	return key, nil
}

// MemoryTrust is a TrustBook kept in memory (tests).
type MemoryTrust struct {
	mu  sync.Mutex
	fps map[otrcore.Fingerprint]*keystore.FingerprintInfo
}

// NewMemoryTrust returns an empty MemoryTrust.
func NewMemoryTrust() *MemoryTrust {
	return &MemoryTrust{fps: map[otrcore.Fingerprint]*keystore.FingerprintInfo{}}
}

// IsTrusted implements otrcore.TrustStore.
func (t *MemoryTrust) IsTrusted(peer string, fp [20]byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.fps[fp]
	return r != nil && r.Trust != keystore.TrustNone
}

// KnownFingerprints implements otrcore.TrustStore.
func (t *MemoryTrust) KnownFingerprints(peer string) [][20]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	type first struct {
		fp [20]byte
		at time.Time
	}
	var list []first
	for fp, r := range t.fps {
		for _, s := range r.Seen {
			if s.Nick == peer {
				list = append(list, first{fp, s.FirstSeen})
			}
		}
	}
	slices.SortFunc(list, func(a, b first) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return bytes.Compare(a.fp[:], b.fp[:])
	})
	out := make([][20]byte, len(list))
	for i, f := range list {
		out[i] = f.fp
	}
	return out
}

// SeenFingerprint implements TrustBook.
func (t *MemoryTrust) SeenFingerprint(peer string, fp otrcore.Fingerprint, now time.Time) (keystore.SeenResult, error) {
	if peer == "" {
		return keystore.SeenResult{}, errors.New("empty peer name")
	}
	others := t.KnownFingerprints(peer)
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.fps[fp]
	res := keystore.SeenResult{NewFingerprint: r == nil, NewForPeer: true}
	if r == nil {
		r = &keystore.FingerprintInfo{Fingerprint: fp}
		t.fps[fp] = r
	}
	res.Trust = r.Trust
	for _, o := range others {
		if o != fp {
			res.OtherFingerprints = append(res.OtherFingerprints, o)
		}
	}
	found := false
	for i := range r.Seen {
		if r.Seen[i].Nick == peer {
			res.NewForPeer = false
			r.Seen[i].LastSeen = now
			found = true
		} else {
			res.OtherNicks = append(res.OtherNicks, r.Seen[i].Nick)
		}
	}
	if !found {
		r.Seen = append(r.Seen, keystore.Sighting{Nick: peer, FirstSeen: now, LastSeen: now})
	}
	if !res.NewForPeer {
		res.OtherFingerprints = nil
	}
	slices.Sort(res.OtherNicks)
	return res, nil
}

// SetTrust implements TrustBook.
func (t *MemoryTrust) SetTrust(fp otrcore.Fingerprint, level keystore.TrustLevel, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.fps[fp]
	if r == nil {
		r = &keystore.FingerprintInfo{Fingerprint: fp}
		t.fps[fp] = r
	}
	r.Trust = level
	r.VerifiedAt = time.Time{}
	if level != keystore.TrustNone {
		r.VerifiedAt = now
	}
	return nil
}

// Lookup implements TrustBook.
func (t *MemoryTrust) Lookup(fp otrcore.Fingerprint) (keystore.FingerprintInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.fps[fp]
	if r == nil {
		return keystore.FingerprintInfo{}, false
	}
	c := *r
	c.Seen = slices.Clone(r.Seen)
	return c, true
}

// Forget implements TrustBook.
func (t *MemoryTrust) Forget(fp otrcore.Fingerprint) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fps[fp] == nil {
		return fmt.Errorf("%w %s", keystore.ErrUnknownFingerprint, fp)
	}
	delete(t.fps, fp)
	return nil
}

// Fingerprints implements TrustBook.
func (t *MemoryTrust) Fingerprints() []keystore.FingerprintInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]keystore.FingerprintInfo, 0, len(t.fps))
	for _, r := range t.fps {
		c := *r
		c.Seen = slices.Clone(r.Seen)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b keystore.FingerprintInfo) int {
		return bytes.Compare(a.Fingerprint[:], b.Fingerprint[:])
	})
	return out
}

// KeystoreIdentities serves identities from a keystore.Store: one keystore
// account per network, named after the network.
type KeystoreIdentities struct {
	Store *keystore.Store
}

// Identity loads (or creates) the network's keystore account.
func (k KeystoreIdentities) Identity(ctx context.Context, network string) (*Identity, error) {
	acct, err := k.Store.Account(network)
	if err != nil {
		return nil, fmt.Errorf("opening OTR account %s: %w", network, err)
	}
	key, err := keystoreKey(ctx, acct)
	if err != nil {
		return nil, err
	}
	return &Identity{Key: key, InstanceTag: acct.InstanceTag(), Trust: acct}, nil
}

func keystoreKey(ctx context.Context, acct *keystore.Account) (*otrcore.PrivateKey, error) {
	dk, err := acct.PrivateKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading OTR key of %s: %w", acct.Name(), err)
	}
	key, err := otrcore.NewPrivateKey(dk)
	if err != nil {
		return nil, fmt.Errorf("using OTR key of %s: %w", acct.Name(), err)
	}
	return key, nil
}

// ReplaceKey implements KeyReplacer: the keystore generates and stores a
// new key for the network's account.
func (k KeystoreIdentities) ReplaceKey(ctx context.Context, network string) (*otrcore.PrivateKey, error) {
	acct, err := k.Store.Account(network)
	if err != nil {
		return nil, fmt.Errorf("opening OTR account %s: %w", network, err)
	}
	if _, err := acct.ReplaceKey(ctx, nil); err != nil {
		return nil, fmt.Errorf("replacing OTR key of %s: %w", network, err)
	}
	return keystoreKey(ctx, acct)
}

var (
	_ TrustBook   = (*keystore.Account)(nil)
	_ TrustBook   = (*MemoryTrust)(nil)
	_ KeyReplacer = KeystoreIdentities{}
	_ KeyReplacer = (*MemoryIdentities)(nil)
)
