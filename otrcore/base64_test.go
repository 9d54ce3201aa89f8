package otrcore

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestBase64DecodeTable(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	if base64Alphabet != alphabet {
		t.Fatal("wrong alphabet")
	}
	if len(base64DecodeTable) != 256 {
		t.Fatalf("table has %d entries", len(base64DecodeTable))
	}
	for c := 0; c < 256; c++ {
		want := byte(base64Invalid)
		if i := strings.IndexByte(alphabet, byte(c)); i >= 0 {
			want = byte(i)
		}
		if base64DecodeTable[c] != want {
			t.Errorf("table[%#02x] = %#02x, want %#02x", c, base64DecodeTable[c], want)
		}
	}
}

// checkBase64 compares decodeBase64 with encoding/base64's strict
// decoder, which must agree except that line breaks are refused.
func checkBase64(t *testing.T, s string) {
	t.Helper()
	want, wantErr := base64.StdEncoding.Strict().DecodeString(s)
	wantOK := wantErr == nil && !strings.ContainsAny(s, "\r\n") && s != ""
	dst := make([]byte, len(s)/4*3)
	n, ok := decodeBase64(dst, s)
	if ok != wantOK {
		t.Fatalf("decodeBase64(%q): valid %v, encoding/base64: %v", s, ok, wantErr)
	}
	if ok && !bytes.Equal(dst[:n], want) {
		t.Fatalf("decodeBase64(%q) = %x, want %x", s, dst[:n], want)
	}
}

func TestDecodeBase64(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 200; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		s := base64.StdEncoding.EncodeToString(b)
		checkBase64(t, s)
		if len(s) > 0 {
			// Every single-character change, and every truncation.
			for i := 0; i < len(s); i++ {
				for _, c := range []byte{'=', 'A', '/', '-', '_', '\n', '\r', ' ', 0, 0xff, s[i] ^ 1} {
					m := []byte(s)
					m[i] = c
					checkBase64(t, string(m))
				}
			}
			for i := 0; i < len(s); i++ {
				checkBase64(t, s[:i])
			}
		}
	}
	// A destination too small is refused, not overrun.
	if _, ok := decodeBase64(make([]byte, 2), "AAAA"); ok {
		t.Error("short destination accepted")
	}
}

func FuzzDecodeBase64(f *testing.F) {
	for _, s := range []string{"", "AA==", "AAA=", "AAAA", "AB==", "AAB=", "A===", "====", "AAAAAAAAAAAA", "AA\nAA", "QUJDREVGR0hJSktMTU5PUA=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkBase64(t, s)
	})
}

func TestEncodeBase64(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		want := base64.StdEncoding.EncodeToString(b)
		got := make([]byte, len(want))
		encodeBase64(got, b)
		if string(got) != want {
			t.Fatalf("encodeBase64 of %d bytes: %q, want %q", n, got, want)
		}
	}
}

func TestEncodeEnvelopeMatchesBase64(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 2, 3, 383, 384, 385, 767, 768, 2000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := encodeEnvelope(b), "?OTR:"+base64.StdEncoding.EncodeToString(b)+"."; got != want {
			t.Fatalf("encodeEnvelope of %d bytes differs from encoding/base64", n)
		}
	}
}
