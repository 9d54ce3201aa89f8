package otrcore

import (
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
			base := new(big.Int).SetBytes(x[:1])
			base.Add(base, big.NewInt(3))
			want = new(big.Int).Exp(base, new(big.Int).SetBytes(x), gr.p)
			if got := gr.exp(base, x); got.Cmp(want) != 0 {
				t.Fatalf("exp mismatch")
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
