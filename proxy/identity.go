package proxy

import (
	"context"
	"crypto/rand"
	"fmt"
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
// Peer names are nicks case-folded with the network's case mapping.
type TrustBook interface {
	otrcore.TrustStore
	// Seen records that peer presented fp.
	Seen(peer string, fp [20]byte, now time.Time) error
	// SetTrusted sets whether fp is verified; smp tells how it was.
	SetTrusted(fp [20]byte, trusted, smp bool, now time.Time) error
}

// MemoryIdentities keeps identities in memory only: keys are generated on
// first use and forgotten on exit. Meant for tests and benchmarks.
type MemoryIdentities struct {
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
	m.ids[network] = &Identity{Key: key, InstanceTag: tag, Trust: newMemoryTrust()}
}

// Identity returns the network's identity, generating it on first use.
func (m *MemoryIdentities) Identity(ctx context.Context, network string) (*Identity, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id := m.ids[network]; id != nil {
		return id, nil
	}
	key, err := otrcore.GeneratePrivateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating OTR key: %w", err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("generating instance tag: %w", err)
	}
	tag := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if tag < 0x100 {
		tag += 0x100
	}
	id := &Identity{Key: key, InstanceTag: tag, Trust: newMemoryTrust()}
	m.ids[network] = id
	return id, nil
}

// memoryTrust is an in-memory TrustBook.
type memoryTrust struct {
	mu      sync.Mutex
	trusted map[[20]byte]bool
	known   map[string][][20]byte
}

func newMemoryTrust() *memoryTrust {
	return &memoryTrust{trusted: map[[20]byte]bool{}, known: map[string][][20]byte{}}
}

// IsTrusted implements otrcore.TrustStore.
func (t *memoryTrust) IsTrusted(peer string, fp [20]byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.trusted[fp]
}

// KnownFingerprints implements otrcore.TrustStore.
func (t *memoryTrust) KnownFingerprints(peer string) [][20]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([][20]byte(nil), t.known[peer]...)
}

// Seen implements TrustBook.
func (t *memoryTrust) Seen(peer string, fp [20]byte, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.known[peer] {
		if k == fp {
			return nil
		}
	}
	t.known[peer] = append(t.known[peer], fp)
	return nil
}

// SetTrusted implements TrustBook.
func (t *memoryTrust) SetTrusted(fp [20]byte, trusted, smp bool, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trusted[fp] = trusted
	return nil
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
	dk, err := acct.PrivateKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading OTR key of %s: %w", network, err)
	}
	key, err := otrcore.NewPrivateKey(dk)
	if err != nil {
		return nil, fmt.Errorf("using OTR key of %s: %w", network, err)
	}
	return &Identity{Key: key, InstanceTag: acct.InstanceTag(), Trust: keystoreTrust{acct}}, nil
}

// keystoreTrust adapts a keystore.Account to TrustBook.
type keystoreTrust struct{ a *keystore.Account }

// IsTrusted implements otrcore.TrustStore.
func (t keystoreTrust) IsTrusted(peer string, fp [20]byte) bool { return t.a.IsTrusted(peer, fp) }

// KnownFingerprints implements otrcore.TrustStore.
func (t keystoreTrust) KnownFingerprints(peer string) [][20]byte {
	return t.a.KnownFingerprints(peer)
}

// Seen implements TrustBook.
func (t keystoreTrust) Seen(peer string, fp [20]byte, now time.Time) error {
	_, err := t.a.SeenFingerprint(peer, fp, now)
	if err != nil {
		return fmt.Errorf("recording fingerprint: %w", err)
	}
	return nil
}

// SetTrusted implements TrustBook.
func (t keystoreTrust) SetTrusted(fp [20]byte, trusted, smp bool, now time.Time) error {
	level := keystore.TrustNone
	switch {
	case trusted && smp:
		level = keystore.TrustSMP
	case trusted:
		level = keystore.TrustManual
	}
	if err := t.a.SetTrust(fp, level, now); err != nil {
		return fmt.Errorf("setting trust: %w", err)
	}
	return nil
}
