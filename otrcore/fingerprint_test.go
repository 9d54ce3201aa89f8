package otrcore

import (
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA long-term keys.
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
	priv, _ := katKey(t)
	if got := FingerprintOf(&priv.DSA().PublicKey); got != priv.Fingerprint() {
		t.Errorf("FingerprintOf = %s, PrivateKey.Fingerprint = %s", got, priv.Fingerprint())
	}
}

// TestParseFingerprintRule pins the one rule for fingerprints users type:
// 40 hex digits of either case, spaces anywhere, nothing else.
func TestParseFingerprintRule(t *testing.T) {
	want, err := ParseFingerprint("3ec5d635801c5f958fbb89b414849abfcbd594f7")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"3EC5D635 801C5F95 8FBB89B4 14849ABF CBD594F7",        // irssi's /otr info, Pidgin's dialog
		"3ec5d635 801c5f95 8fbb89b4 14849abf cbd594f7",        // the same, lower case
		"3EC5D635801C5F958FBB89B414849ABFCBD594F7",            // stored form, upper case
		"  3EC5D635  801C5F95 8FBB89B4 14849ABF CBD594F7 ",    // pasted with stray spaces
		"3EC5 D635 801C 5F95 8FBB 89B4 1484 9ABF CBD5 94F7",   // groups of four
		"3ec5d635801c5f958fbb89b414849abfcbd594f7" + "      ", // trailing spaces
	} {
		got, err := ParseFingerprint(in)
		if err != nil || got != want {
			t.Errorf("ParseFingerprint(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{
		"",
		"   ",
		"3EC5D635 801C5F95 8FBB89B4 14849ABF CBD594F",      // 39 digits
		"3EC5D635 801C5F95 8FBB89B4 14849ABF CBD594F70",    // 41 digits
		"3EC5D635\t801C5F95\t8FBB89B4\t14849ABF\tCBD594F7", // tabs
		"3EC5D635:801C5F95:8FBB89B4:14849ABF:CBD594F7",     // colons
		"3EC5D635-801C5F95-8FBB89B4-14849ABF-CBD594F7",     // dashes
		"3EC5D635 801C5F95 8FBB89B4 14849ABF CBD594F7\n",   // line break
		"0x3EC5D635801C5F958FBB89B414849ABFCBD594F7",
		"3EC5D635 801C5F95 8FBB89B4 14849ABF CBD594FG",
		"３EC5D635801C5F958FBB89B414849ABFCBD594F7", // full-width digit
	} {
		if got, err := ParseFingerprint(in); err == nil {
			t.Errorf("ParseFingerprint(%q) = %s, want an error", in, got)
		} else if !strings.HasPrefix(err.Error(), "otrcore: fingerprint ") {
			t.Errorf("ParseFingerprint(%q): error %q lacks context", in, err)
		}
	}
}

// FuzzParseFingerprint checks that parsing never panics and that whatever
// parses is what String and Hex print back.
func FuzzParseFingerprint(f *testing.F) {
	f.Add("3EC5D635 801C5F95 8FBB89B4 14849ABF CBD594F7")
	f.Add("3ec5d635801c5f958fbb89b414849abfcbd594f7")
	f.Add("3EC5D635\t801C5F95")
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		digits := strings.ReplaceAll(s, " ", "")
		if !strings.EqualFold(digits, fp.Hex()) {
			t.Fatalf("ParseFingerprint(%q) = %s", s, fp.Hex())
		}
		back, err := ParseFingerprint(fp.String())
		if err != nil || back != fp {
			t.Fatalf("String round trip of %q: %s, %v", s, back, err)
		}
	})
}
