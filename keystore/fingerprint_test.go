package keystore

import (
	"testing"

	"otrbnc/otrcore"
)

func TestFingerprintLibotrKnownAnswer(t *testing.T) {
	// testdata/libotr/otr.dump is what libotr 4.1.1 reported for
	// otr.key: otrl_privkey_fingerprint_raw for every account.
	want := readDump(t, "testdata/libotr/otr.dump")
	keys := testKeys(t)
	if len(keys) != len(want.keys) {
		t.Fatalf("parsed %d keys, libotr reported %d", len(keys), len(want.keys))
	}
	for _, k := range keys {
		if got, w := otrcore.FingerprintOf(&k.Key.PublicKey).Hex(), want.keys[k.Account]; got != w {
			t.Errorf("%v: fingerprint %s, libotr says %s", k.Account, got, w)
		}
	}
}
