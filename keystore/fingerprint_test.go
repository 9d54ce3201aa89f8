package keystore

import (
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"crypto/sha1"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
)

func TestFingerprintOfMPIEncoding(t *testing.T) {
	// Hand-built PUBKEY body: MPI lengths are minimal, zero is empty.
	pub := &dsa.PublicKey{
		Parameters: dsa.Parameters{P: big.NewInt(0x0102), Q: big.NewInt(0xff), G: big.NewInt(0)},
		Y:          new(big.Int).SetBytes([]byte{0x80, 0, 0, 1}),
	}
	body, _ := hex.DecodeString("00000002" + "0102" + "00000001" + "ff" + "00000000" + "00000004" + "80000001")
	if got, want := FingerprintOf(pub), Fingerprint(sha1.Sum(body)); got != want {
		t.Errorf("FingerprintOf = %x, want %x", got, want)
	}
}

func TestFingerprintStringParse(t *testing.T) {
	f := fp(1234)
	s := f.String()
	if len(s) != 44 || strings.Count(s, " ") != 4 || strings.ToUpper(s) != s {
		t.Fatalf("String() = %q, want 5 groups of 8 uppercase hex digits", s)
	}
	if f.Hex() != strings.ToLower(strings.ReplaceAll(s, " ", "")) {
		t.Errorf("Hex() = %q, String() = %q", f.Hex(), s)
	}
	for _, in := range []string{s, f.Hex(), strings.ToUpper(f.Hex()), " " + s + "\t"} {
		got, err := ParseFingerprint(in)
		if err != nil || got != f {
			t.Errorf("ParseFingerprint(%q) = %x, %v; want %x", in, got, err, f)
		}
	}
	for _, in := range []string{"", f.Hex()[:39], f.Hex() + "0", "zz" + f.Hex()[2:], f.Hex()[:38] + "-0"} {
		if _, err := ParseFingerprint(in); err == nil {
			t.Errorf("ParseFingerprint(%q) succeeded", in)
		}
	}
}

func TestFingerprintLibotrKnownAnswer(t *testing.T) {
	// testdata/libotr/otr.dump is what libotr 4.1.1 reported for
	// otr.key: otrl_privkey_fingerprint_raw for every account.
	want := readDump(t, "testdata/libotr/otr.dump")
	keys := testKeys(t)
	if len(keys) != len(want.keys) {
		t.Fatalf("parsed %d keys, libotr reported %d", len(keys), len(want.keys))
	}
	for _, k := range keys {
		if got, w := FingerprintOf(&k.Key.PublicKey).Hex(), want.keys[k.Account]; got != w {
			t.Errorf("%v: fingerprint %s, libotr says %s", k.Account, got, w)
		}
	}
}
