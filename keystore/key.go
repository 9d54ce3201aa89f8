package keystore

import (
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
)

// ErrInvalidKey is wrapped by errors reporting a DSA key that is not a
// valid OTR key: 1024-bit prime p, 160-bit prime q dividing p-1, generator g
// of the order-q subgroup, 0 < x < q and y = g^x mod p.
var ErrInvalidKey = errors.New("keystore: invalid OTR DSA key")

// generateKey creates a fresh 1024/160-bit DSA key, the only size OTR v2/v3
// clients accept. It takes from tens of milliseconds to seconds.
func generateKey() (*dsa.PrivateKey, error) {
	k := new(dsa.PrivateKey)
	if err := dsa.GenerateParameters(&k.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		return nil, fmt.Errorf("keystore: generating DSA parameters: %w", err)
	}
	if err := dsa.GenerateKey(k, rand.Reader); err != nil {
		return nil, fmt.Errorf("keystore: generating DSA key: %w", err)
	}
	return k, nil
}

// validateKey checks that k is a well-formed OTR DSA key.
func validateKey(k *dsa.PrivateKey) error {
	if k == nil || k.P == nil || k.Q == nil || k.G == nil || k.Y == nil || k.X == nil {
		return fmt.Errorf("%w: missing component", ErrInvalidKey)
	}
	p, q, g, y, x := k.P, k.Q, k.G, k.Y, k.X
	one := big.NewInt(1)
	switch {
	case p.Sign() <= 0 || p.BitLen() != 1024:
		return fmt.Errorf("%w: p has %d bits, want 1024", ErrInvalidKey, p.BitLen())
	case q.Sign() <= 0 || q.BitLen() != 160:
		return fmt.Errorf("%w: q has %d bits, want 160", ErrInvalidKey, q.BitLen())
	case g.Cmp(one) <= 0 || g.Cmp(p) >= 0:
		return fmt.Errorf("%w: g is not in (1, p)", ErrInvalidKey)
	case y.Cmp(one) <= 0 || y.Cmp(p) >= 0:
		return fmt.Errorf("%w: y is not in (1, p)", ErrInvalidKey)
	case x.Sign() <= 0 || x.Cmp(q) >= 0:
		return fmt.Errorf("%w: x is not in (0, q)", ErrInvalidKey)
	}
	pm1 := new(big.Int).Sub(p, one)
	if new(big.Int).Mod(pm1, q).Sign() != 0 {
		return fmt.Errorf("%w: q does not divide p-1", ErrInvalidKey)
	}
	if new(big.Int).Exp(g, q, p).Cmp(one) != 0 {
		return fmt.Errorf("%w: g does not have order q", ErrInvalidKey)
	}
	if new(big.Int).Exp(g, x, p).Cmp(y) != 0 {
		return fmt.Errorf("%w: y != g^x mod p", ErrInvalidKey)
	}
	if !q.ProbablyPrime(20) {
		return fmt.Errorf("%w: q is not prime", ErrInvalidKey)
	}
	if !p.ProbablyPrime(10) {
		return fmt.Errorf("%w: p is not prime", ErrInvalidKey)
	}
	return nil
}

// cloneKey returns a deep copy of k, so callers cannot alter stored keys.
func cloneKey(k *dsa.PrivateKey) *dsa.PrivateKey {
	c := func(n *big.Int) *big.Int { return new(big.Int).Set(n) }
	return &dsa.PrivateKey{
		PublicKey: dsa.PublicKey{
			Parameters: dsa.Parameters{P: c(k.P), Q: c(k.Q), G: c(k.G)},
			Y:          c(k.Y),
		},
		X: c(k.X),
	}
}

// keysEqual reports whether a and b are the same key.
func keysEqual(a, b *dsa.PrivateKey) bool {
	return a.P.Cmp(b.P) == 0 && a.Q.Cmp(b.Q) == 0 && a.G.Cmp(b.G) == 0 &&
		a.Y.Cmp(b.Y) == 0 && a.X.Cmp(b.X) == 0
}
