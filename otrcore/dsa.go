package otrcore

import (
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA long-term keys.
	"crypto/sha1"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"

	"filippo.io/bigmod"
	"golang.org/x/crypto/cryptobyte"
)

// pubKeyTypeDSA is the only PUBKEY type OTR defines.
const pubKeyTypeDSA uint16 = 0x0000

// DSA size bounds. Our own keys must be exactly what libotr generates
// (1024-bit p, 160-bit q); a peer's p may be larger, within a sanity bound
// that keeps verification cheap.
const (
	dsaPBits       = 1024
	dsaQBits       = 160
	dsaQBytes      = dsaQBits / 8
	dsaSigLen      = 2 * dsaQBytes // SIG: r ‖ s, each padded to len(q)
	maxPeerDSABits = 4096
)

// Fingerprint is the SHA-1 fingerprint of an OTR DSA public key: the hash
// of its PUBKEY encoding without the leading 2-byte type field.
type Fingerprint [sha1.Size]byte

// String returns the human-readable form libotr displays: five groups of
// eight upper-case hex digits separated by spaces.
func (f Fingerprint) String() string {
	h := strings.ToUpper(hex.EncodeToString(f[:]))
	var sb strings.Builder
	sb.Grow(len(h) + 4)
	for i := 0; i < len(h); i += 8 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(h[i : i+8])
	}
	return sb.String()
}

// Hex returns the fingerprint as 40 lower-case hex digits, the form
// libotr stores in its fingerprint files.
func (f Fingerprint) Hex() string {
	return hex.EncodeToString(f[:])
}

// ParseFingerprint parses a fingerprint typed or pasted by a user. The rule:
// exactly 40 hexadecimal digits of either case, with any number of spaces
// (U+0020) before, between or after them and nothing else. That accepts the
// form String returns and irssi, Pidgin and libotr display (five groups of
// eight digits separated by spaces), and the 40 digits libotr stores; it
// refuses tabs, colons, dashes and any other separator.
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	n := 0 // hex digits read
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' {
			continue
		}
		v, ok := hexDigit(c)
		if !ok {
			return Fingerprint{}, fmt.Errorf("otrcore: fingerprint %q: %q is not a hexadecimal digit; want 40 hexadecimal digits, optionally in groups separated by spaces", s, c)
		}
		if n == 2*len(f) {
			return Fingerprint{}, fmt.Errorf("otrcore: fingerprint %q: more than 40 hexadecimal digits", s)
		}
		f[n/2] |= v << (4 * (1 - n%2))
		n++
	}
	if n != 2*len(f) {
		return Fingerprint{}, fmt.Errorf("otrcore: fingerprint %q: want 40 hexadecimal digits, have %d", s, n)
	}
	return f, nil
}

// hexDigit returns the value of the hexadecimal digit c.
func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// FingerprintOf returns the fingerprint of the DSA public key pub, whose P,
// Q, G and Y must be set. It does not check that pub is a valid OTR key.
func FingerprintOf(pub *dsa.PublicKey) Fingerprint {
	return (&publicKey{p: pub.P, q: pub.Q, g: pub.G, y: pub.Y}).fingerprint()
}

// publicKey is a DSA public key as carried in the AKE.
type publicKey struct {
	p, q, g, y *big.Int
	// raw is the PUBKEY encoding (type field included) as received, or as
	// encoded for our own key. Decoding accepts only the canonical
	// encoding, so raw always equals the re-encoding of p, q, g, y.
	raw []byte
}

// addPubKey appends pk as PUBKEY: SHORT type 0x0000, then MPIs p, q, g, y.
func addPubKey(b *cryptobyte.Builder, pk *publicKey) {
	b.AddUint16(pubKeyTypeDSA)
	addMPI(b, pk.p)
	addMPI(b, pk.q)
	addMPI(b, pk.g)
	addMPI(b, pk.y)
}

// encodePubKey returns the PUBKEY encoding of pk.
func encodePubKey(pk *publicKey) []byte {
	b := cryptobyte.NewBuilder(nil)
	addPubKey(b, pk)
	return b.BytesOrPanic()
}

// readPubKey reads a PUBKEY into *pk and records its raw bytes. It accepts
// only type 0x0000 (DSA) with minimal MPIs and sane parameters: p odd of
// 1024 to 4096 bits, q odd of exactly 160 bits dividing p−1, 1 < g < p and
// 1 < y < p. Primality and subgroup membership are not checked here: a peer
// with bad parameters only weakens its own signatures. On failure s is
// left where it was.
func readPubKey(s *cryptobyte.String, pk *publicKey) bool {
	start := *s
	var typ uint16
	var p, q, g, y *big.Int
	if !s.ReadUint16(&typ) || typ != pubKeyTypeDSA ||
		!readMPI(s, &p) || !readMPI(s, &q) || !readMPI(s, &g) || !readMPI(s, &y) {
		*s = start
		return false
	}
	if !saneDSAPublic(p, q, g, y, maxPeerDSABits) {
		*s = start
		return false
	}
	raw := start[:len(start)-len(*s)]
	*pk = publicKey{p: p, q: q, g: g, y: y, raw: append([]byte{}, raw...)}
	return true
}

// saneDSAPublic checks the cheap structural properties of a DSA public key.
func saneDSAPublic(p, q, g, y *big.Int, maxPBits int) bool {
	if p.BitLen() < dsaPBits || p.BitLen() > maxPBits || p.Bit(0) == 0 {
		return false
	}
	if q.BitLen() != dsaQBits || q.Bit(0) == 0 {
		return false
	}
	one := big.NewInt(1)
	if g.Cmp(one) <= 0 || g.Cmp(p) >= 0 || y.Cmp(one) <= 0 || y.Cmp(p) >= 0 {
		return false
	}
	pm1 := new(big.Int).Sub(p, one)
	return new(big.Int).Mod(pm1, q).Sign() == 0
}

// encoded returns the PUBKEY bytes of pk: raw when known, else a fresh
// encoding.
func (pk *publicKey) encoded() []byte {
	if len(pk.raw) > 2 {
		return pk.raw
	}
	return encodePubKey(pk)
}

// fingerprint returns SHA-1 over the PUBKEY bytes without the 2-byte type
// field, i.e. over the four MPIs exactly as serialised.
func (pk *publicKey) fingerprint() Fingerprint {
	return Fingerprint(sha1.Sum(pk.encoded()[2:]))
}

// verify reports whether sig (r ‖ s, 20 bytes each) is a valid DSA
// signature of digest under pk. The digest is used directly as the
// integer to be signed, reduced mod q and not truncated, as the spec
// requires; crypto/dsa.Verify does exactly that. Verification deals only
// with public data, so its variable timing is harmless.
func (pk *publicKey) verify(digest, sig []byte) bool {
	if len(sig) != dsaSigLen || pk.p == nil || pk.q == nil || pk.g == nil || pk.y == nil {
		return false
	}
	r := new(big.Int).SetBytes(sig[:dsaQBytes])
	s := new(big.Int).SetBytes(sig[dsaQBytes:])
	pub := &dsa.PublicKey{Parameters: dsa.Parameters{P: pk.p, Q: pk.q, G: pk.g}, Y: pk.y}
	return dsa.Verify(pub, digest, r, s)
}

// PrivateKey is an OTR long-term DSA key (1024-bit p, 160-bit q) with its
// public encoding and fingerprint precomputed. Signing is constant time in
// the secret exponent and the nonce. A PrivateKey is immutable and safe
// for concurrent use.
type PrivateKey struct {
	p, q, g, y, x *big.Int

	pMod, qMod *bigmod.Modulus
	gNat       *bigmod.Nat // g mod p; read-only
	xBytes     []byte      // x, big-endian, padded to len(q)
	qMinus2    []byte      // exponent for the Fermat inverse mod q

	pub publicKey // raw holds the PUBKEY bytes
	fp  Fingerprint
}

// NewPrivateKey validates a DSA key and prepares it for OTR. It requires a
// 1024-bit prime p, a 160-bit prime q dividing p−1, 1 < g < p with
// g^q = 1 mod p, 0 < x < q and y = g^x mod p. k is copied.
func NewPrivateKey(k *dsa.PrivateKey) (*PrivateKey, error) {
	if k == nil || k.P == nil || k.Q == nil || k.G == nil || k.Y == nil || k.X == nil {
		return nil, errors.New("otrcore: DSA key: missing parameter")
	}
	p, q, g := new(big.Int).Set(k.P), new(big.Int).Set(k.Q), new(big.Int).Set(k.G)
	y, x := new(big.Int).Set(k.Y), new(big.Int).Set(k.X)
	if p.BitLen() != dsaPBits {
		return nil, fmt.Errorf("otrcore: DSA key: p has %d bits, want %d", p.BitLen(), dsaPBits)
	}
	if q.BitLen() != dsaQBits {
		return nil, fmt.Errorf("otrcore: DSA key: q has %d bits, want %d", q.BitLen(), dsaQBits)
	}
	if !saneDSAPublic(p, q, g, y, dsaPBits) {
		return nil, errors.New("otrcore: DSA key: inconsistent parameters (q must divide p-1, 1 < g < p, 1 < y < p)")
	}
	if !q.ProbablyPrime(20) || !p.ProbablyPrime(20) {
		return nil, errors.New("otrcore: DSA key: p or q is not prime")
	}
	if new(big.Int).Exp(g, q, p).Cmp(big.NewInt(1)) != 0 {
		return nil, errors.New("otrcore: DSA key: g does not generate the order-q subgroup")
	}
	if x.Sign() <= 0 || x.Cmp(q) >= 0 {
		return nil, errors.New("otrcore: DSA key: x out of range")
	}
	pMod, err := bigmod.NewModulus(p.Bytes())
	if err != nil {
		return nil, fmt.Errorf("otrcore: DSA key: %w", err)
	}
	qMod, err := bigmod.NewModulus(q.Bytes())
	if err != nil {
		return nil, fmt.Errorf("otrcore: DSA key: %w", err)
	}
	gNat, err := bigmod.NewNat().SetBytes(g.Bytes(), pMod)
	if err != nil {
		return nil, fmt.Errorf("otrcore: DSA key: %w", err)
	}
	xBytes := x.FillBytes(make([]byte, dsaQBytes))
	// y = g^x must hold; compute it in constant time since x is secret.
	gx := bigmod.NewNat().Exp(gNat, xBytes, pMod).Bytes(pMod)
	if subtle.ConstantTimeCompare(gx, y.FillBytes(make([]byte, pMod.Size()))) != 1 {
		return nil, errors.New("otrcore: DSA key: y does not match x")
	}
	pk := &PrivateKey{
		p: p, q: q, g: g, y: y, x: x,
		pMod: pMod, qMod: qMod, gNat: gNat,
		xBytes:  xBytes,
		qMinus2: new(big.Int).Sub(q, big.NewInt(2)).Bytes(),
		pub:     publicKey{p: p, q: q, g: g, y: y},
	}
	pk.pub.raw = encodePubKey(&pk.pub)
	pk.fp = pk.pub.fingerprint()
	return pk, nil
}

// GeneratePrivateKey generates a new OTR key (DSA with 1024-bit p and
// 160-bit q, as libotr does) using rand for both the parameters and the
// secret exponent. It takes tens of milliseconds to seconds.
func GeneratePrivateKey(rand io.Reader) (*PrivateKey, error) {
	var params dsa.Parameters
	if err := dsa.GenerateParameters(&params, rand, dsa.L1024N160); err != nil {
		return nil, fmt.Errorf("otrcore: generating DSA parameters: %w", err)
	}
	pMod, err := bigmod.NewModulus(params.P.Bytes())
	if err != nil {
		return nil, fmt.Errorf("otrcore: generating DSA key: %w", err)
	}
	qMod, err := bigmod.NewModulus(params.Q.Bytes())
	if err != nil {
		return nil, fmt.Errorf("otrcore: generating DSA key: %w", err)
	}
	gNat, err := bigmod.NewNat().SetBytes(params.G.Bytes(), pMod)
	if err != nil {
		return nil, fmt.Errorf("otrcore: generating DSA key: %w", err)
	}
	var x *bigmod.Nat
	for {
		var seed [64]byte
		if _, err := io.ReadFull(rand, seed[:]); err != nil {
			return nil, fmt.Errorf("otrcore: generating DSA key: %w", err)
		}
		x, err = reduceModQ(seed[:], pMod, qMod)
		if err != nil {
			return nil, fmt.Errorf("otrcore: generating DSA key: %w", err)
		}
		if x.IsZero() == 0 {
			break
		}
	}
	xBytes := x.Bytes(qMod)
	y := new(big.Int).SetBytes(bigmod.NewNat().Exp(gNat, xBytes, pMod).Bytes(pMod))
	key := &dsa.PrivateKey{PublicKey: dsa.PublicKey{Parameters: params, Y: y}, X: new(big.Int).SetBytes(xBytes)}
	return NewPrivateKey(key)
}

// reduceModQ returns b mod q in constant time. b must be shorter than p
// (it is first loaded as a number mod p, which is wider than q).
func reduceModQ(b []byte, pMod, qMod *bigmod.Modulus) (*bigmod.Nat, error) {
	n, err := bigmod.NewNat().SetBytes(b, pMod)
	if err != nil {
		return nil, err
	}
	return bigmod.NewNat().Mod(n, qMod), nil
}

// Fingerprint returns the fingerprint of the key's public part.
func (k *PrivateKey) Fingerprint() Fingerprint { return k.fp }

// DSA returns a copy of the key as a crypto/dsa private key.
func (k *PrivateKey) DSA() *dsa.PrivateKey {
	return &dsa.PrivateKey{
		PublicKey: dsa.PublicKey{
			Parameters: dsa.Parameters{P: new(big.Int).Set(k.p), Q: new(big.Int).Set(k.q), G: new(big.Int).Set(k.g)},
			Y:          new(big.Int).Set(k.y),
		},
		X: new(big.Int).Set(k.x),
	}
}

// publicKey returns the key's public part, whose raw field holds the PUBKEY
// bytes. The result must not be modified.
func (k *PrivateKey) publicKey() *publicKey { return &k.pub }

// maxSignedDigest bounds the value handed to sign; OTR signs 32-byte
// HMAC-SHA256 outputs.
const maxSignedDigest = 64

// sign returns the OTR SIG (r ‖ s, each left-padded to 20 bytes) of
// digest, which is used directly as the integer to sign reduced mod q (not
// truncated, and not hashed again). All arithmetic involving x and the
// nonce is constant time (filippo.io/bigmod); k⁻¹ is computed as k^(q−2).
//
// The nonce is hedged: SHA-512 over x, 32 bytes from rand and the digest,
// reduced mod q. A broken rand therefore cannot leak x through nonce reuse
// across different digests.
func (k *PrivateKey) sign(rand io.Reader, digest []byte) ([]byte, error) {
	if len(digest) > maxSignedDigest {
		return nil, fmt.Errorf("otrcore: DSA sign: %d-byte value is too long", len(digest))
	}
	for range 16 {
		var entropy [32]byte
		if _, err := io.ReadFull(rand, entropy[:]); err != nil {
			return nil, fmt.Errorf("otrcore: DSA sign: %w", err)
		}
		h := sha512.New()
		h.Write([]byte("otrbnc DSA nonce\x00"))
		h.Write(k.xBytes)
		h.Write(entropy[:])
		h.Write(digest)
		nonce, err := reduceModQ(h.Sum(nil), k.pMod, k.qMod)
		if err != nil {
			return nil, fmt.Errorf("otrcore: DSA sign: %w", err)
		}
		if nonce.IsZero() == 1 {
			continue
		}
		sig, ok, err := k.signWithNonce(nonce, digest)
		if err != nil {
			return nil, err
		}
		if ok {
			return sig, nil
		}
	}
	return nil, errors.New("otrcore: DSA sign: no valid signature after repeated attempts")
}

// signWithNonce computes r = (g^k mod p) mod q and s = k⁻¹(H + x·r) mod q
// for the nonce 0 < k < q (a Nat sized for q). ok is false when r or s is
// zero and another nonce is needed.
func (k *PrivateKey) signWithNonce(nonce *bigmod.Nat, digest []byte) (sig []byte, ok bool, err error) {
	kBytes := nonce.Bytes(k.qMod)
	gk := bigmod.NewNat().Exp(k.gNat, kBytes, k.pMod)
	r := bigmod.NewNat().Mod(gk, k.qMod)

	hm, err := reduceModQ(digest, k.pMod, k.qMod)
	if err != nil {
		return nil, false, fmt.Errorf("otrcore: DSA sign: %w", err)
	}
	xr, err := bigmod.NewNat().SetBytes(k.xBytes, k.qMod)
	if err != nil {
		return nil, false, fmt.Errorf("otrcore: DSA sign: %w", err)
	}
	xr.Mul(r, k.qMod)
	hm.Add(xr, k.qMod)
	s := bigmod.NewNat().Exp(nonce, k.qMinus2, k.qMod) // k⁻¹ by Fermat
	s.Mul(hm, k.qMod)
	if r.IsZero() == 1 || s.IsZero() == 1 {
		return nil, false, nil
	}
	sig = make([]byte, 0, dsaSigLen)
	sig = append(sig, r.Bytes(k.qMod)...)
	sig = append(sig, s.Bytes(k.qMod)...)
	return sig, true, nil
}
