package keystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"otrbnc/otrcore"
)

// worstNick returns the n-th of many distinct nicks of MaxPeerName bytes
// that encoding/json writes 6 bytes for each byte of (\u00XX).
func worstNick(n int) string {
	var six []byte // characters JSON escapes as \u00XX
	for c := byte(1); c < 0x20; c++ {
		if !strings.ContainsRune("\b\t\n\f\r", rune(c)) {
			six = append(six, c)
		}
	}
	six = append(six, '<', '>', '&')
	b := bytes.Repeat([]byte{1}, MaxPeerName)
	for i := len(b) - 1; n > 0; i-- {
		b[i] = six[n%len(six)]
		n /= len(six)
	}
	return string(b)
}

// TestFileSizeAtLimits fills an account to the default limits with the
// largest content there can be, all trusted (so nothing is evicted), and
// checks that its file stays within maxFileSize and so within what Open
// reads, plaintext and sealed.
func TestFileSizeAtLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a file of tens of MiB")
	}
	if got, err := json.Marshal(worstNick(12345)); err != nil || len(got) != 2+6*MaxPeerName {
		t.Fatalf("worstNick encodes to %d bytes, want %d", len(got), 2+6*MaxPeerName)
	}
	const (
		fps   = DefaultMaxFingerprints
		nicks = DefaultMaxNicksPerFingerprint
		group = DefaultMaxFingerprintsPerNick // fingerprints sharing the same nicks
	)
	// The longest time there is.
	now := time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	from := LibotrAccount{Name: "me", Protocol: "IRC"}
	l := &Libotr{}
	for i := range fps {
		f := otrcore.Fingerprint{byte(i >> 8), byte(i)}
		for k := range nicks {
			l.Fingerprints = append(l.Fingerprints, LibotrFingerprint{
				Peer: worstNick(i/group*nicks + k), Account: from, Fingerprint: f, Trust: "smp",
			})
		}
	}
	bound := maxFileSize(limits{fps, group, nicks})
	passphrases := []string{"a passphrase", ""}
	if raceEnabled {
		// encoding/json is some 20 times slower with the race detector:
		// check only the sealed file, the larger one.
		passphrases = passphrases[:1]
	}
	for _, pass := range passphrases {
		dir := t.TempDir()
		s := mustOpen(t, dir, testOptions(t, pass))
		a := mustAccount(t, s, "net")
		res, err := a.ImportLibotr(l, from, now)
		if err != nil {
			t.Fatal(err)
		}
		if res.Dropped != 0 || len(a.Fingerprints()) != fps || len(a.Peers()) != fps/group*nicks {
			t.Fatalf("not at the limits: %+v, %d fingerprints, %d nicks", res, len(a.Fingerprints()), len(a.Peers()))
		}
		// Full of trusted fingerprints: a new key is reported, not stored.
		if r, err := a.SeenFingerprint(worstNick(999999), otrcore.Fingerprint{0xff}, now); err != nil || !r.NotRecorded {
			t.Errorf("sighting in a full account: %+v, %v", r, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "account-net.json")
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("passphrase %v: %d bytes, %.1f%% of the bound %d, %.1f%% of the read limit %d",
			pass != "", fi.Size(), 100*float64(fi.Size())/float64(bound), bound, 100*float64(fi.Size())/maxStateFile, maxStateFile)
		if fi.Size() > bound || bound > maxStateFile {
			t.Errorf("file of %d bytes, bound %d, read limit %d", fi.Size(), bound, maxStateFile)
		}
		if _, err := readStateFile(path); err != nil {
			t.Fatal(err)
		}
		if raceEnabled {
			continue
		}
		s = mustOpen(t, dir, testOptions(t, pass))
		if n := len(mustAccount(t, s, "net").Fingerprints()); n != fps {
			t.Errorf("reopened with %d fingerprints", n)
		}
		s.Close()
	}
}

// TestOversizedFile checks that a file larger than Open reads is reported
// with its name, the reason and a way out, and left as it is.
func TestOversizedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "account-net.json")
	if err := os.WriteFile(path, validFile(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, maxStateFile+1); err != nil { // sparse
		t.Fatal(err)
	}
	_, err := Open(dir, testOptions(t, ""))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	for _, want := range []string{path, "67108865 bytes", "more than the 67108864 bytes", "move it out of " + dir, "new key", "backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != maxStateFile+1 {
		t.Errorf("file changed: %v", err)
	}
}
