package proxy

import (
	"context"
	"fmt"
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
	_ KeyReplacer = KeystoreIdentities{}
)
