package otrcore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"

	"filippo.io/bigmod"
	"golang.org/x/crypto/cryptobyte"
)

// smpValue is one received, range-checked MPI.
type smpValue struct {
	// n is the value mod p (group element) or mod q (exponent).
	n *bigmod.Nat
	// mag is the minimal big-endian magnitude as received (a sub-slice of
	// the TLV), used for public exponentiations and hash comparisons.
	mag []byte
}

// smpParse decodes an SMP message with smpDecodeMPIs and checks every value
// against layout (see smpLayout1) before anything uses it.
func smpParse(gr *group, payload []byte, layout string) ([]smpValue, error) {
	mags, err := smpDecodeMPIs(payload, len(layout))
	if err != nil {
		return nil, err
	}
	out := make([]smpValue, len(mags))
	for i, m := range mags {
		v := new(big.Int).SetBytes(m)
		var mod *bigmod.Modulus
		if layout[i] == 'g' {
			if gr.checkElement(v) != nil {
				return nil, fmt.Errorf("%w: value %d is not a group element (need 2 ≤ v ≤ p−2)", errSMPRange, i+1)
			}
			if big.Jacobi(v, gr.p) != 1 {
				return nil, fmt.Errorf("%w: value %d is not in the prime-order subgroup", errSMPRange, i+1)
			}
			mod = gr.pMod
		} else {
			if gr.checkExponent(v) != nil {
				return nil, fmt.Errorf("%w: value %d is not an exponent (need 1 ≤ v < q)", errSMPRange, i+1)
			}
			mod = gr.qMod
		}
		n, err := bigmod.NewNat().SetBytes(m, mod)
		if err != nil { // unreachable after the range checks
			return nil, fmt.Errorf("%w: value %d: %v", errSMPRange, i+1, err)
		}
		out[i] = smpValue{n: n, mag: m}
	}
	return out, nil
}

// smpDecodeMPIs parses an SMP message body: a 4-byte big-endian count,
// which must equal want, then that many MPIs (4-byte big-endian length,
// then the magnitude). MPIs must be minimal (no leading zero byte; zero is
// the empty MPI) and at most dhPrimeBytes long; no bytes may follow the
// last MPI. The returned magnitudes alias b. The count is checked before
// anything is allocated.
func smpDecodeMPIs(b []byte, want int) ([][]byte, error) {
	s := cryptobyte.String(b)
	var n uint32
	if !s.ReadUint32(&n) {
		return nil, fmt.Errorf("%w: truncated MPI count", errSMPMalformed)
	}
	if n != uint32(want) {
		return nil, fmt.Errorf("%w: %d MPIs, want %d", errSMPMalformed, n, want)
	}
	out := make([][]byte, want)
	for i := range out {
		if !readMPIMagnitude(&s, &out[i]) {
			return nil, fmt.Errorf("%w: MPI %d truncated or not minimal", errSMPMalformed, i+1)
		}
		if len(out[i]) > dhPrimeBytes {
			return nil, fmt.Errorf("%w: MPI %d is %d bytes long", errSMPMalformed, i+1, len(out[i]))
		}
		out[i] = out[i][:len(out[i]):len(out[i])]
	}
	if !s.Empty() {
		return nil, fmt.Errorf("%w: %d bytes after the last MPI", errSMPMalformed, len(s))
	}
	return out, nil
}

// smpEncodeMPIs encodes an SMP message body: the count, then each
// magnitude as an MPI. The magnitudes must be minimal (see smpTrim).
func smpEncodeMPIs(mags ...[]byte) []byte {
	size := 4
	for _, m := range mags {
		size += 4 + len(m)
	}
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint32(b, uint32(len(mags)))
	for _, m := range mags {
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return b
}

// smpTrim strips leading zero bytes, giving the minimal MPI magnitude.
func smpTrim(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// smpElem returns the minimal magnitude of a group element (mod p).
func smpElem(gr *group, n *bigmod.Nat) []byte { return smpTrim(n.Bytes(gr.pMod)) }

// smpExpo returns the minimal magnitude of an exponent (mod q).
func smpExpo(gr *group, n *bigmod.Nat) []byte { return smpTrim(n.Bytes(gr.qMod)) }

// smpHash is the SMP hash function: SHA-256(version ‖ MPI(a) [‖ MPI(b)]),
// b omitted when nil. It returns the minimal magnitude of the digest read
// as an integer, ready to be sent as an MPI.
func smpHash(gr *group, version byte, a, b *bigmod.Nat) []byte {
	h := sha256.New()
	h.Write([]byte{version})
	for _, n := range []*bigmod.Nat{a, b} {
		if n == nil {
			continue
		}
		m := smpElem(gr, n)
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(m)))
		h.Write(l[:])
		h.Write(m)
	}
	return smpTrim(h.Sum(nil))
}

// smpHashNat converts a hash value (< 2^256 < q) to an exponent mod q.
func smpHashNat(gr *group, c []byte) *bigmod.Nat {
	n, err := bigmod.NewNat().SetBytes(c, gr.qMod)
	if err != nil {
		panic("otrcore: SHA-256 value exceeds q") // impossible: 256 < 1535 bits
	}
	return n
}

// smpSecretNat converts an smpSecret digest to the exponent x or y.
func smpSecretNat(secret []byte) (*bigmod.Nat, error) {
	if len(secret) != sha256.Size {
		return nil, fmt.Errorf("%w (got %d bytes)", errSMPSecret, len(secret))
	}
	return smpHashNat(otrGroup(), secret), nil
}

// smpRandExps draws n random 1536-bit exponents and reduces them mod q.
func smpRandExps(rand io.Reader, n int) ([]*bigmod.Nat, error) {
	gr := otrGroup()
	buf := make([]byte, smpExpBytes)
	defer clear(buf)
	out := make([]*bigmod.Nat, 0, n)
	for range n {
		if _, err := io.ReadFull(rand, buf); err != nil {
			smpWipe(out...)
			return nil, fmt.Errorf("reading random exponent: %w", err)
		}
		// 1536 bits fit the 1536-bit p: reduce mod p, then mod q.
		v, err := bigmod.NewNat().SetOverflowingBytes(buf, gr.pMod)
		if err != nil {
			smpWipe(out...)
			return nil, fmt.Errorf("reducing random exponent: %w", err)
		}
		out = append(out, bigmod.NewNat().Mod(v, gr.qMod))
		smpWipe(v)
	}
	return out, nil
}

// smpWipe zeroes the given values in place (nil entries are skipped).
func smpWipe(ns ...*bigmod.Nat) {
	for _, n := range ns {
		if n != nil {
			clear(n.Bits())
		}
	}
}

// smpExpG returns g1^e mod p for a secret exponent e mod q, in constant
// time via the fixed-base table.
func smpExpG(gr *group, e *bigmod.Nat) *bigmod.Nat {
	eb := e.Bytes(gr.qMod)
	defer clear(eb)
	return gr.fixedBaseG.exp(eb)
}

// smpExp returns base^e mod p for a secret exponent e mod q, in constant
// time.
func smpExp(gr *group, base, e *bigmod.Nat) *bigmod.Nat {
	eb := e.Bytes(gr.qMod)
	defer clear(eb)
	return bigmod.NewNat().Exp(base, eb, gr.pMod)
}

// smpExpMul returns base^(e1·e2 mod q) mod p in constant time. For base in
// the order-q subgroup this is (base^e1)^e2.
func smpExpMul(gr *group, base, e1, e2 *bigmod.Nat) *bigmod.Nat {
	e := smpMulQ(gr, e1, e2)
	defer smpWipe(e)
	return smpExp(gr, base, e)
}

// smpExpPub returns base^e mod p for a public exponent given as a
// big-endian magnitude (time depends on its length only).
func smpExpPub(gr *group, base *bigmod.Nat, e []byte) *bigmod.Nat {
	return bigmod.NewNat().Exp(base, e, gr.pMod)
}

// smpMulQ returns a·b mod q as a new value.
func smpMulQ(gr *group, a, b *bigmod.Nat) *bigmod.Nat {
	return bigmod.NewNat().Mod(a, gr.qMod).Mul(b, gr.qMod)
}

// smpSubMul returns the proof value r − e·c mod q.
func smpSubMul(gr *group, r, e, c *bigmod.Nat) *bigmod.Nat {
	t := smpMulQ(gr, e, c)
	defer smpWipe(t)
	return bigmod.NewNat().Mod(r, gr.qMod).Sub(t, gr.qMod)
}

// smpDiv returns a/b mod p for a public, checked b (2 ≤ b ≤ p−2). The
// inverse is computed with math/big, which is much faster than bigmod's
// and fine for a public value.
func smpDiv(gr *group, a, b *bigmod.Nat) *bigmod.Nat {
	inv := new(big.Int).ModInverse(new(big.Int).SetBytes(b.Bytes(gr.pMod)), gr.p)
	if inv == nil {
		panic("otrcore: SMP value not invertible") // impossible: 2 ≤ b ≤ p−2, p prime
	}
	return gr.nat(inv).Mul(a, gr.pMod)
}

// smpProve makes the proof of knowledge of e for g1^e:
// c = H(version, g1^r), D = r − e·c mod q. It returns both as minimal
// magnitudes.
func smpProve(gr *group, version byte, r, e *bigmod.Nat) (c, d []byte) {
	c = smpHash(gr, version, smpExpG(gr, r), nil)
	dn := smpSubMul(gr, r, e, smpHashNat(gr, c))
	return c, smpExpo(gr, dn)
}

// smpProveBase makes the proof that R = base^e and g3 = g1^e share e:
// c = H(version, g1^r, base^r), D = r − e·c mod q.
func smpProveBase(gr *group, version byte, base, r, e *bigmod.Nat) (c, d []byte) {
	c = smpHash(gr, version, smpExpG(gr, r), smpExp(gr, base, r))
	dn := smpSubMul(gr, r, e, smpHashNat(gr, c))
	return c, smpExpo(gr, dn)
}

// smpCheckHash compares a received hash value with a recomputed one.
func smpCheckHash(c smpValue, want []byte) error {
	if !bytes.Equal(c.mag, want) {
		return errSMPProof
	}
	return nil
}

// smpVerify checks a proof of knowledge of log_g1(h):
// c = H(version, g1^D · h^c).
func smpVerify(gr *group, version byte, c, d, h smpValue) error {
	t := gr.fixedBaseG.exp(d.mag)
	t.Mul(smpExpPub(gr, h.n, c.mag), gr.pMod)
	return smpCheckHash(c, smpHash(gr, version, t, nil))
}

// smpVerifyPQ checks the proof for P and Q:
// c = H(version, g3^D5 · P^c, g1^D5 · g2^D6 · Q^c), where g3 = g3o^e3 and
// g2 = g2o^e2 are computed as g3o^(e3·D5) and g2o^(e2·D6) (secret
// exponents, constant time).
func smpVerifyPQ(gr *group, version byte, g3o, e3, g2o, e2 *bigmod.Nat, p, q, c, d5, d6 smpValue) error {
	t1 := smpExpMul(gr, g3o, e3, d5.n)
	t1.Mul(smpExpPub(gr, p.n, c.mag), gr.pMod)
	t2 := gr.fixedBaseG.exp(d5.mag)
	t2.Mul(smpExpMul(gr, g2o, e2, d6.n), gr.pMod)
	t2.Mul(smpExpPub(gr, q.n, c.mag), gr.pMod)
	return smpCheckHash(c, smpHash(gr, version, t1, t2))
}

// smpVerifyR checks the proof for R:
// c = H(version, g1^D7 · g3o^c, ratio^D7 · R^c), where g3o is the peer's
// g3 half and ratio is Qa/Qb.
func smpVerifyR(gr *group, version byte, g3o, ratio *bigmod.Nat, r, c, d7 smpValue) error {
	t1 := gr.fixedBaseG.exp(d7.mag)
	t1.Mul(smpExpPub(gr, g3o, c.mag), gr.pMod)
	t2 := smpExpPub(gr, ratio, d7.mag)
	t2.Mul(smpExpPub(gr, r.n, c.mag), gr.pMod)
	return smpCheckHash(c, smpHash(gr, version, t1, t2))
}
