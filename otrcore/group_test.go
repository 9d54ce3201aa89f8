package otrcore

import (
	"bytes"
	"crypto/rand"
	"math/big"
	"testing"
)

func TestFixedBaseMatchesBigInt(t *testing.T) {
	gr := otrGroup()
	for _, n := range []int{1, 20, 40, 192} {
		for i := 0; i < 5; i++ {
			x := make([]byte, n)
			if _, err := rand.Read(x); err != nil {
				t.Fatal(err)
			}
			want := new(big.Int).Exp(gr.g, new(big.Int).SetBytes(x), gr.p)
			if got := gr.expG(x); got.Cmp(want) != 0 {
				t.Fatalf("expG(%x) mismatch", x)
			}
			if got := gr.expGBytes(x); !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("expGBytes(%x) = %x, want the minimal %x", x, got, want)
			}
			base := new(big.Int).SetBytes(x[:1])
			base.Add(base, big.NewInt(3))
			want = new(big.Int).Exp(base, new(big.Int).SetBytes(x), gr.p)
			if got := gr.exp(base, x); got.Cmp(want) != 0 {
				t.Fatalf("exp mismatch")
			}
			if got := gr.expBytesMag(base.Bytes(), x); !bytes.Equal(got, want.FillBytes(make([]byte, dhPrimeBytes))) {
				t.Fatalf("expBytesMag mismatch")
			}
		}
	}
}

func TestCheckElement(t *testing.T) {
	gr := otrGroup()
	pm1 := new(big.Int).Sub(gr.p, big.NewInt(1))
	for _, bad := range []*big.Int{big.NewInt(0), big.NewInt(1), pm1, gr.p, nil} {
		if gr.checkElement(bad) == nil {
			t.Errorf("checkElement(%v) accepted", bad)
		}
	}
	for _, good := range []*big.Int{big.NewInt(2), gr.pMinus2} {
		if err := gr.checkElement(good); err != nil {
			t.Errorf("checkElement(%v) = %v", good, err)
		}
	}
}

// TestCheckElementBytes checks the byte form against checkElement on the
// boundaries and on values of every length class.
func TestCheckElementBytes(t *testing.T) {
	gr := otrGroup()
	one := big.NewInt(1)
	vals := []*big.Int{big.NewInt(0), one, big.NewInt(2), big.NewInt(255), big.NewInt(256),
		new(big.Int).Sub(gr.pMinus2, one), gr.pMinus2, new(big.Int).Add(gr.pMinus2, one), gr.p,
		new(big.Int).Lsh(one, 8*dhPrimeBytes), new(big.Int).Lsh(one, 8*dhPrimeBytes-1)}
	for i := 0; i < 50; i++ {
		b := make([]byte, 1+i%dhPrimeBytes)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		vals = append(vals, new(big.Int).SetBytes(b))
	}
	for _, v := range vals {
		want := gr.checkElement(v) == nil
		if got := gr.checkElementBytes(v.Bytes()) == nil; got != want {
			t.Errorf("checkElementBytes(%x) accepts=%v, checkElement accepts=%v", v, got, want)
		}
	}
}

func TestCompareMag(t *testing.T) {
	vals := []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(255), big.NewInt(256), big.NewInt(0x10000), big.NewInt(0xffff)}
	for _, a := range vals {
		for _, b := range vals {
			if got, want := compareMag(a.Bytes(), b.Bytes()), a.Cmp(b); got != want {
				t.Errorf("compareMag(%v, %v) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func BenchmarkExpG320(b *testing.B) {
	gr := otrGroup()
	x := make([]byte, 40)
	rand.Read(x)
	for b.Loop() {
		gr.expG(x)
	}
}

func BenchmarkExp320(b *testing.B) {
	gr := otrGroup()
	x := make([]byte, 40)
	rand.Read(x)
	base := gr.expG(x)
	for b.Loop() {
		gr.exp(base, x)
	}
}
