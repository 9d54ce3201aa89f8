package otrcore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/big"
	"sync"

	"filippo.io/bigmod"
)

// dhPrimeHex is the 1536-bit MODP group prime of RFC 3526, section 2,
// used by OTR for the AKE, data-message key exchange and SMP.
const dhPrimeHex = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1" +
	"29024E088A67CC74020BBEA63B139B22514A08798E3404DD" +
	"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245" +
	"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
	"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D" +
	"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F" +
	"83655D23DCA3AD961C62F356208552BB9ED529077096966D" +
	"670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF"

// dhPrimeBytes is the byte length of the DH prime.
const dhPrimeBytes = 192

// group holds the immutable parameters of OTR's DH group: p, q = (p-1)/2
// and generator g = 2, both as math/big values (for range checks and
// public, variable-time work) and as bigmod moduli (for constant-time
// secret exponentiation).
type group struct {
	p, q, g      *big.Int
	pMinus2      *big.Int
	pMod, qMod   *bigmod.Modulus
	two          *bigmod.Nat
	fixedBaseG   *fixedBase
	pBytes       []byte
	qBytes       []byte
	pMinus2Bytes []byte // p−2 as a minimal big-endian magnitude
	one          *big.Int
}

// otrGroup returns the OTR DH group, built once per process. The value is
// read-only after construction and safe to share between goroutines.
var otrGroup = sync.OnceValue(newGroup)

// newGroup builds the OTR DH group with its fixed-base table for g.
func newGroup() *group {
	p, ok := new(big.Int).SetString(dhPrimeHex, 16)
	if !ok {
		panic("otrcore: bad built-in prime")
	}
	q := new(big.Int).Rsh(p, 1)
	pMod, err := bigmod.NewModulus(p.Bytes())
	if err != nil {
		panic("otrcore: " + err.Error())
	}
	qMod, err := bigmod.NewModulus(q.Bytes())
	if err != nil {
		panic("otrcore: " + err.Error())
	}
	gr := &group{
		p:       p,
		q:       q,
		g:       big.NewInt(2),
		pMinus2: new(big.Int).Sub(p, big.NewInt(2)),
		pMod:    pMod,
		qMod:    qMod,
		pBytes:  p.Bytes(),
		qBytes:  q.Bytes(),
		one:     big.NewInt(1),
	}
	gr.pMinus2Bytes = gr.pMinus2.Bytes()
	gr.two = bigmod.NewNat().SetUint(2).ExpandFor(pMod)
	gr.fixedBaseG = newFixedBase(gr.two, pMod, 8*dhPrimeBytes)
	return gr
}

// errGroupElement reports a received value outside 2 ≤ v ≤ p−2.
var errGroupElement = errors.New("otrcore: group element out of range")

// checkElement reports whether 2 ≤ v ≤ p−2, the range every received DH
// and SMP group element must satisfy (values 0, 1 and p−1 would let an
// attacker force a known shared secret).
func (gr *group) checkElement(v *big.Int) error {
	if v == nil || v.Cmp(gr.g) < 0 || v.Cmp(gr.pMinus2) > 0 {
		return errGroupElement
	}
	return nil
}

// checkElementBytes is checkElement for a minimal big-endian magnitude
// (an MPI's body, no leading zero byte).
func (gr *group) checkElementBytes(mag []byte) error {
	if len(mag) == 0 || len(mag) == 1 && mag[0] < 2 || compareMag(mag, gr.pMinus2Bytes) > 0 {
		return errGroupElement
	}
	return nil
}

// compareMag compares two minimal big-endian magnitudes (no leading zero
// bytes) as integers, returning -1, 0 or +1. It is not constant-time: use
// it on public values only.
func compareMag(a, b []byte) int {
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return bytes.Compare(a, b)
}

// checkExponent reports whether 1 ≤ v < q, the range of SMP proof values.
func (gr *group) checkExponent(v *big.Int) error {
	if v == nil || v.Sign() <= 0 || v.Cmp(gr.q) >= 0 {
		return errors.New("otrcore: exponent out of range")
	}
	return nil
}

// natFromInt converts a public value v (already range-checked, so v < p)
// into a bigmod.Nat modulo p.
func (gr *group) nat(v *big.Int) *bigmod.Nat {
	n, err := bigmod.NewNat().SetBytes(v.Bytes(), gr.pMod)
	if err != nil {
		// v was range-checked by the caller; reduce defensively.
		n, _ = bigmod.NewNat().SetOverflowingBytes(v.Bytes(), gr.pMod)
	}
	return n
}

// expG returns g^x mod p in constant time with respect to x, using the
// precomputed fixed-base table for g = 2.
func (gr *group) expG(x []byte) *big.Int {
	r := gr.fixedBaseG.exp(x)
	return new(big.Int).SetBytes(r.Bytes(gr.pMod))
}

// expGBytes is expG returning a minimal big-endian magnitude.
func (gr *group) expGBytes(x []byte) []byte {
	b := gr.fixedBaseG.exp(x).Bytes(gr.pMod)
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// exp returns base^x mod p, constant time with respect to the secret x.
// base must already satisfy 0 ≤ base < p.
func (gr *group) exp(base *big.Int, x []byte) *big.Int {
	r := bigmod.NewNat().Exp(gr.nat(base), x, gr.pMod)
	return new(big.Int).SetBytes(r.Bytes(gr.pMod))
}

// expBytesMag returns base^x mod p, constant time with respect to the
// secret x, big-endian and padded to the modulus length. base is a
// big-endian magnitude that must already satisfy base < p.
func (gr *group) expBytesMag(base, x []byte) []byte {
	n, err := bigmod.NewNat().SetBytes(base, gr.pMod)
	if err != nil {
		// base was range-checked by the caller; reduce defensively.
		n, _ = bigmod.NewNat().SetOverflowingBytes(base, gr.pMod)
	}
	return bigmod.NewNat().Exp(n, x, gr.pMod).Bytes(gr.pMod)
}

// fixedBase is a precomputed table for constant-time exponentiation of one
// fixed base: table[i][j] = base^(j·16^i), so an exponentiation needs one
// multiplication per 4-bit window of the exponent and no squarings. Each
// lookup reads every entry of its row and keeps the wanted one with a mask,
// so memory access does not depend on the secret exponent.
type fixedBase struct {
	m     *bigmod.Modulus
	table [][16][]uint64 // entries as big-endian 64-bit words
	words int
}

// newFixedBase precomputes base^(j·16^i) for every 4-bit window i of an
// exponent of up to maxBits bits.
func newFixedBase(base *bigmod.Nat, m *bigmod.Modulus, maxBits int) *fixedBase {
	windows := (maxBits + 3) / 4
	size := m.Size()
	fb := &fixedBase{m: m, table: make([][16][]uint64, windows), words: (size + 7) / 8}
	cur := bigmod.NewNat().ExpandFor(m)
	cur.Mod(base, m) // cur = base^(16^i) at the start of window i
	buf := make([]byte, fb.words*8)
	for i := 0; i < windows; i++ {
		acc := bigmod.NewNat().SetUint(1).ExpandFor(m)
		for j := 0; j < 16; j++ {
			copy(buf[len(buf)-size:], acc.Bytes(m))
			w := make([]uint64, fb.words)
			for k := range w {
				w[k] = binary.BigEndian.Uint64(buf[8*k:])
			}
			fb.table[i][j] = w
			acc.Mul(cur, m)
		}
		cur = acc // cur^16 = base^(16^(i+1))
	}
	return fb
}

// exp returns base^e mod m for a big-endian exponent e of at most the
// precomputed number of bits. Its timing depends only on len(e).
func (fb *fixedBase) exp(e []byte) *bigmod.Nat {
	if len(e)*2 > len(fb.table) {
		panic("otrcore: fixed-base exponent too large")
	}
	acc := bigmod.NewNat().SetUint(1).ExpandFor(fb.m)
	sel := make([]uint64, fb.words)
	buf := make([]byte, fb.words*8)
	t := bigmod.NewNat()
	size := fb.m.Size()
	for i := 0; i < len(e)*2; i++ {
		b := e[len(e)-1-i/2]
		w := uint64(b>>(4*uint(i%2))) & 0xf
		clear(sel)
		for j := uint64(0); j < 16; j++ {
			// mask is all ones when j == w, else zero, without branching.
			d := j ^ w
			mask := ((d | -d) >> 63) - 1
			row := fb.table[i][j]
			for k := range sel {
				sel[k] |= row[k] & mask
			}
		}
		for k, v := range sel {
			binary.BigEndian.PutUint64(buf[8*k:], v)
		}
		if _, err := t.SetBytes(buf[len(buf)-size:], fb.m); err != nil {
			panic("otrcore: fixed-base table entry out of range")
		}
		acc.Mul(t, fb.m)
	}
	return acc
}
