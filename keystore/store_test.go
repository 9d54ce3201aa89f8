package keystore

import (
	"bytes"
	"context"
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"otrbnc/otrcore"
)

// Compile-time check: Account provides what otrcore consumes.
var _ interface {
	IsTrusted(peer string, fp [20]byte) bool
	KnownFingerprints(peer string) [][20]byte
} = (*Account)(nil)

func TestSeenFingerprint(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testOptions(t, ""))
	a := mustAccount(t, s, "net")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	seen := func(peer string, f otrcore.Fingerprint, at time.Time) SeenResult {
		t.Helper()
		r, err := a.SeenFingerprint(peer, f, at)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	check := func(what string, got, want SeenResult) {
		t.Helper()
		if got.NewFingerprint != want.NewFingerprint || got.NewForPeer != want.NewForPeer || got.Trust != want.Trust ||
			!slices.Equal(got.OtherFingerprints, want.OtherFingerprints) || !slices.Equal(got.OtherNicks, want.OtherNicks) {
			t.Errorf("%s: got %+v, want %+v", what, got, want)
		}
	}
	check("first", seen("alice", fp(1), t0), SeenResult{NewFingerprint: true, NewForPeer: true})
	check("again", seen("alice", fp(1), t0.Add(time.Minute)), SeenResult{})
	check("earlier", seen("alice", fp(1), t0.Add(-time.Minute)), SeenResult{})
	// Someone else takes alice's nick with another key.
	check("new key", seen("alice", fp(2), t0.Add(time.Hour)), SeenResult{NewFingerprint: true, NewForPeer: true, OtherFingerprints: []otrcore.Fingerprint{fp(1)}})
	if err := a.SetTrust(fp(1), TrustSMP, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The trusted key shows up under another nick: trust follows the key.
	check("alt nick", seen("alice_", fp(1), t0.Add(3*time.Hour)), SeenResult{NewForPeer: true, OtherNicks: []string{"alice"}, Trust: TrustSMP})
	check("back", seen("alice", fp(1), t0.Add(4*time.Hour)), SeenResult{OtherFingerprints: []otrcore.Fingerprint{fp(2)}, OtherNicks: []string{"alice_"}, Trust: TrustSMP})

	if !a.IsTrusted("alice", fp(1)) || !a.IsTrusted("alice_", fp(1)) || !a.IsTrusted("someone", fp(1)) {
		t.Error("trust of fp(1) depends on the nick")
	}
	if a.IsTrusted("alice", fp(2)) || a.IsTrusted("alice", fp(3)) {
		t.Error("untrusted or unknown fingerprint reported trusted")
	}
	if got := a.KnownFingerprints("alice"); !slices.Equal(got, [][20]byte{fp(1), fp(2)}) {
		t.Errorf("KnownFingerprints(alice) = %x", got)
	}
	if got := a.KnownFingerprints("nobody"); len(got) != 0 {
		t.Errorf("KnownFingerprints(nobody) = %x", got)
	}
	if got := a.Peers(); !slices.Equal(got, []string{"alice", "alice_"}) {
		t.Errorf("Peers() = %q", got)
	}
	info, ok := a.Lookup(fp(1))
	want := FingerprintInfo{Fingerprint: fp(1), Trust: TrustSMP, VerifiedAt: t0.Add(2 * time.Hour), Seen: []Sighting{
		{"alice", t0.Add(-time.Minute), t0.Add(4 * time.Hour)},
		{"alice_", t0.Add(3 * time.Hour), t0.Add(3 * time.Hour)},
	}}
	if !ok || !infoEqual(info, want) {
		t.Errorf("Lookup = %+v, %v; want %+v", info, ok, want)
	}

	if err := a.SetTrust(fp(1), TrustNone, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if info, _ := a.Lookup(fp(1)); info.Trust != TrustNone || !info.VerifiedAt.IsZero() || len(info.Seen) != 2 {
		t.Errorf("after distrust: %+v", info)
	}
	// Trust before first sighting, then distrust removes the bare record.
	if err := a.SetTrust(fp(9), TrustManual, t0); err != nil {
		t.Fatal(err)
	}
	if !a.IsTrusted("x", fp(9)) || len(a.Fingerprints()) != 3 {
		t.Error("pre-trusted fingerprint missing")
	}
	if err := a.SetTrust(fp(9), TrustNone, t0); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Lookup(fp(9)); ok {
		t.Error("distrusted, never-seen fingerprint kept")
	}
	if err := a.SetTrust(fp(9), TrustLevel(7), t0); err == nil {
		t.Error("SetTrust accepted an invalid level")
	}
	if err := a.Forget(fp(2)); err != nil {
		t.Fatal(err)
	}
	if err := a.Forget(fp(2)); !errors.Is(err, ErrUnknownFingerprint) {
		t.Errorf("Forget twice: %v", err)
	}
	if got := a.KnownFingerprints("alice"); !slices.Equal(got, [][20]byte{fp(1)}) {
		t.Errorf("after Forget: %x", got)
	}
	if _, err := a.SeenFingerprint("", fp(1), t0); err == nil {
		t.Error("empty peer accepted")
	}
}

func infoEqual(a, b FingerprintInfo) bool {
	return a.Fingerprint == b.Fingerprint && a.Trust == b.Trust && a.VerifiedAt.Equal(b.VerifiedAt) &&
		slices.EqualFunc(a.Seen, b.Seen, func(x, y Sighting) bool {
			return x.Nick == y.Nick && x.FirstSeen.Equal(y.FirstSeen) && x.LastSeen.Equal(y.LastSeen)
		})
}

// snapshot is an account's observable state.
type snapshot struct {
	tag  uint32
	key  *dsa.PrivateKey
	fps  []FingerprintInfo
	peer map[string][][20]byte
}

func takeSnapshot(t testing.TB, a *Account) snapshot {
	t.Helper()
	k, err := a.PrivateKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sn := snapshot{tag: a.InstanceTag(), key: k, fps: a.Fingerprints(), peer: make(map[string][][20]byte)}
	for _, p := range a.Peers() {
		sn.peer[p] = a.KnownFingerprints(p)
	}
	return sn
}

func snapshotsEqual(a, b snapshot) bool {
	if a.tag != b.tag || !keysEqual(a.key, b.key) || !slices.EqualFunc(a.fps, b.fps, infoEqual) || len(a.peer) != len(b.peer) {
		return false
	}
	for p, f := range a.peer {
		if !slices.Equal(f, b.peer[p]) {
			return false
		}
	}
	return true
}

func populate(t testing.TB, a *Account) {
	t.Helper()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	for i, nick := range []string{"alice", "bob", "carol", "alice", "ünïcode\"nick\\"} {
		if _, err := a.SeenFingerprint(nick, fp(i%3), t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SetTrust(fp(1), TrustManual, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.SetTrust(fp(2), TrustSMP, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.SetTrust(fp(7), TrustManual, t0); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, pass := range []string{"", "correct horse battery staple"} {
		t.Run(fmt.Sprintf("passphrase=%v", pass != ""), func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, testOptions(t, pass))
			if err != nil {
				t.Fatal(err)
			}
			var snaps []snapshot
			for _, name := range []string{"libera", "oftc.net", "A-b_c"} {
				a := mustAccount(t, s, name)
				if tag := a.InstanceTag(); tag < 0x100 {
					t.Errorf("instance tag %#x < 0x100", tag)
				}
				populate(t, a)
				snaps = append(snaps, takeSnapshot(t, a))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, dir, testOptions(t, pass))
			if got := s.Accounts(); !slices.Equal(got, []string{"A-b_c", "libera", "oftc.net"}) {
				t.Errorf("Accounts() = %q", got)
			}
			for i, name := range []string{"libera", "oftc.net", "A-b_c"} {
				if got := takeSnapshot(t, mustAccount(t, s, name)); !snapshotsEqual(got, snaps[i]) {
					t.Errorf("%s after reopen:\n got %+v\nwant %+v", name, got, snaps[i])
				}
			}
			// Sealed files must not reveal keys or nicks.
			data, err := os.ReadFile(filepath.Join(dir, "account-libera.json"))
			if err != nil {
				t.Fatal(err)
			}
			xhex := snaps[0].key.X.Text(16)
			leaks := bytes.Contains(data, []byte(xhex)) || bytes.Contains(data, []byte("alice"))
			if leaks != (pass == "") {
				t.Errorf("file reveals key or nicks: %v, sealed: %v\n%s", leaks, pass != "", data)
			}
		})
	}
}

func TestPermissions(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "state")
	s := mustOpen(t, dir, testOptions(t, ""))
	a := mustAccount(t, s, "net")
	if _, err := a.SeenFingerprint("bob", fp(1), time.Time{}); err != nil {
		t.Fatal(err)
	}
	checkMode := func(path string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	checkMode(dir, 0o700)
	checkMode(filepath.Join(dir, "account-net.json"), 0o600)
	checkMode(filepath.Join(dir, "lock"), 0o600)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		checkMode(filepath.Join(dir, e.Name()), 0o600)
	}
	s.Close()

	// A directory and file restored with loose modes are tightened.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "account-net.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, testOptions(t, ""))
	checkMode(dir, 0o700)
	checkMode(filepath.Join(dir, "account-net.json"), 0o600)
	s.Close()

	// An existing file where the directory should be.
	file := filepath.Join(parent, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Open(file, Options{}); err == nil {
		t.Error("Open on a regular file succeeded")
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t, ""))
	if _, err := Open(dir, testOptions(t, "")); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	a := mustAccount(t, s, "net")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SeenFingerprint("bob", fp(1), time.Time{}); !errors.Is(err, ErrClosed) {
		t.Errorf("SeenFingerprint after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Account("other"); !errors.Is(err, ErrClosed) {
		t.Errorf("Account after Close: %v, want ErrClosed", err)
	}
	if a.IsTrusted("bob", fp(1)) || a.InstanceTag() < 0x100 {
		t.Error("queries after Close misbehave")
	}
	s2 := mustOpen(t, dir, testOptions(t, ""))
	s2.Close()
}

func TestAccountNames(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testOptions(t, ""))
	for _, name := range []string{"", ".hidden", "-x", "a/b", "a b", "../x", "ü", strings.Repeat("a", 65)} {
		if _, err := s.Account(name); !errors.Is(err, ErrInvalidAccountName) {
			t.Errorf("Account(%q): %v, want ErrInvalidAccountName", name, err)
		}
	}
	a1, a2 := mustAccount(t, s, "x"), mustAccount(t, s, "x")
	if a1 != a2 {
		t.Error("Account returned two objects for one name")
	}
}

// validFile returns the bytes of a valid plaintext account file for "net".
func validFile(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t, ""))
	a := mustAccount(t, s, "net")
	populate(t, a)
	if _, err := a.PrivateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(filepath.Join(dir, "account-net.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// editState applies fn to the decoded "state" object of a valid file.
func editState(t *testing.T, data []byte, fn func(m map[string]any)) []byte {
	t.Helper()
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	fn(f)
	out, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCorruptFiles(t *testing.T) {
	good := validFile(t)
	state := func(fn func(st map[string]any)) []byte {
		return editState(t, good, func(f map[string]any) { fn(f["state"].(map[string]any)) })
	}
	firstFP := func(fn func(fp map[string]any)) []byte {
		return state(func(st map[string]any) { fn(st["fingerprints"].([]any)[0].(map[string]any)) })
	}
	cases := map[string]struct {
		data []byte
		want error
	}{
		"empty":           {nil, ErrCorrupt},
		"blank":           {[]byte(" \n"), ErrCorrupt},
		"garbage":         {[]byte("\x00\x01garbage"), ErrForeignFile},
		"libotr key file": {[]byte("(privkeys)\n"), ErrForeignFile},
		"other json":      {[]byte(`{"hello": "world"}`), ErrForeignFile},
		"other format":    {editState(t, good, func(f map[string]any) { f["format"] = "something-else" }), ErrForeignFile},
		"other account":   {editState(t, good, func(f map[string]any) { f["account"] = "other" }), ErrForeignFile},
		"newer version":   {editState(t, good, func(f map[string]any) { f["version"] = 2 }), ErrUnsupportedVersion},
		"no state":        {editState(t, good, func(f map[string]any) { delete(f, "state") }), ErrCorrupt},
		"state and sealed": {editState(t, good, func(f map[string]any) {
			f["sealed"] = map[string]any{"kdf": "argon2id"}
		}), ErrCorrupt},
		"low instance tag": {state(func(st map[string]any) { st["instance_tag"] = 0xff }), ErrCorrupt},
		"unknown field":    {state(func(st map[string]any) { st["extra"] = 1 }), ErrCorrupt},
		"bad key": {state(func(st map[string]any) {
			st["private_key"].(map[string]any)["y"] = "02"
		}), ErrCorrupt},
		"key type":        {state(func(st map[string]any) { st["private_key"].(map[string]any)["type"] = "rsa" }), ErrCorrupt},
		"key hex":         {state(func(st map[string]any) { st["private_key"].(map[string]any)["x"] = "zz" }), ErrCorrupt},
		"bad trust":       {firstFP(func(f map[string]any) { f["trust"] = "maybe" }), ErrCorrupt},
		"bad fingerprint": {firstFP(func(f map[string]any) { f["fingerprint"] = "abc" }), ErrCorrupt},
		"upper fingerprint": {firstFP(func(f map[string]any) {
			f["fingerprint"] = strings.ToUpper(f["fingerprint"].(string))
		}), ErrCorrupt},
		"duplicate fingerprint": {state(func(st map[string]any) {
			l := st["fingerprints"].([]any)
			st["fingerprints"] = append(l, l[0])
		}), ErrCorrupt},
		"trusted without time": {state(func(st map[string]any) {
			for _, f := range st["fingerprints"].([]any) {
				delete(f.(map[string]any), "verified_at")
			}
		}), ErrCorrupt},
		"empty nick": {firstFP(func(f map[string]any) {
			f["seen"].([]any)[0].(map[string]any)["nick"] = ""
		}), ErrCorrupt},
		"time travel": {firstFP(func(f map[string]any) {
			f["seen"].([]any)[0].(map[string]any)["first_seen"] = "2999-01-01T00:00:00Z"
		}), ErrCorrupt},
		"bad time": {firstFP(func(f map[string]any) {
			f["seen"].([]any)[0].(map[string]any)["last_seen"] = "yesterday"
		}), ErrCorrupt},
	}
	// Every truncation of a valid file is detected.
	// Every truncation of a valid file is detected, as damage once the
	// format name is in.
	formatEnd := bytes.Index(good, []byte(`"otrbnc-keystore"`)) + len(`"otrbnc-keystore"`)
	for n := 1; n < len(good)-2; n += 1 + len(good)/40 {
		var want error
		if n >= formatEnd {
			want = ErrCorrupt
		}
		cases[fmt.Sprintf("truncated to %d", n)] = struct {
			data []byte
			want error
		}{good[:n], want}
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "account-net.json")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-time.Hour)
			os.Chtimes(path, old, old)
			for range 2 { // the lock is released after a failure
				s, err := Open(dir, testOptions(t, ""))
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded")
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("Open: %v, want %v", err, tc.want)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				if !strings.Contains(err.Error(), "To start otrbnc, ") || !strings.Contains(err.Error(), "move it out of "+dir) {
					t.Errorf("error %q does not say how to start again", err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(data, tc.data) {
				t.Errorf("file changed or removed: %v", err)
			}
			if fi, err := os.Stat(path); err != nil || fi.ModTime().After(old.Add(time.Second)) {
				t.Error("file was rewritten")
			}
		})
	}
}

func TestNotRegularFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere.json")
	os.WriteFile(target, validFile(t), 0o600)
	if err := os.Symlink(target, filepath.Join(dir, "account-net.json")); err != nil {
		t.Skip(err)
	}
	if _, err := Open(dir, testOptions(t, "")); !errors.Is(err, ErrForeignFile) {
		t.Errorf("Open with a symlinked account file: %v, want ErrForeignFile", err)
	}
}

func TestLeftoverTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t, ""))
	mustAccount(t, s, "net")
	s.Close()
	leftover := filepath.Join(dir, ".tmp-account-net.json-123")
	other := filepath.Join(dir, "unrelated.txt")
	os.WriteFile(leftover, []byte("{partial"), 0o600)
	os.WriteFile(other, []byte("keep me"), 0o600)
	s = mustOpen(t, dir, testOptions(t, ""))
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover temporary file kept: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("unrelated file removed: %v", err)
	}
}

func TestPassphrase(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t, ""))
	populate(t, mustAccount(t, s, "net"))
	plain := takeSnapshot(t, mustAccount(t, s, "net"))
	s.Close()

	// Configuring a passphrase seals the existing plaintext state.
	s = mustOpen(t, dir, testOptions(t, "secret"))
	if got := takeSnapshot(t, mustAccount(t, s, "net")); !snapshotsEqual(got, plain) {
		t.Error("state changed when sealing")
	}
	s.Close()
	data, _ := os.ReadFile(filepath.Join(dir, "account-net.json"))
	if !bytes.Contains(data, []byte(`"sealed"`)) || bytes.Contains(data, []byte(`"state"`)) {
		t.Fatalf("state not sealed:\n%s", data)
	}

	if _, err := Open(dir, testOptions(t, "")); !errors.Is(err, ErrPassphraseRequired) {
		t.Errorf("Open without passphrase: %v, want ErrPassphraseRequired", err)
	}
	if _, err := Open(dir, testOptions(t, "wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open with a wrong passphrase: %v, want ErrWrongPassphrase", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "account-net.json"))
	if !bytes.Equal(after, data) {
		t.Error("failed Opens modified the sealed file")
	}

	// Tampering is detected; a sealed state cannot be moved to another
	// account.
	tamper := func(fn func(sealed map[string]any)) []byte {
		return editState(t, data, func(f map[string]any) { fn(f["sealed"].(map[string]any)) })
	}
	for name, tc := range map[string]struct {
		file string
		data []byte
		want error
	}{
		"flipped ciphertext": {"account-net.json", tamper(func(m map[string]any) {
			c, err := base64.StdEncoding.DecodeString(m["ciphertext"].(string))
			if err != nil {
				t.Fatal(err)
			}
			c[5] ^= 1
			m["ciphertext"] = base64.StdEncoding.EncodeToString(c)
		}), ErrWrongPassphrase},
		"moved": {"account-other.json", editState(t, data, func(f map[string]any) { f["account"] = "other" }), ErrWrongPassphrase},
		"huge memory": {"account-net.json", tamper(func(m map[string]any) {
			m["memory_kib"] = 1 << 30
		}), ErrCorrupt},
		"short nonce": {"account-net.json", tamper(func(m map[string]any) { m["nonce"] = "AAAA" }), ErrCorrupt},
		"other aead":  {"account-net.json", tamper(func(m map[string]any) { m["aead"] = "aes-gcm" }), ErrCorrupt},
	} {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, tc.file), tc.data, 0o600)
		if _, err := Open(d, testOptions(t, "secret")); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}

	// With the passphrase, everything is there.
	s = mustOpen(t, dir, testOptions(t, "secret"))
	if got := takeSnapshot(t, mustAccount(t, s, "net")); !snapshotsEqual(got, plain) {
		t.Error("sealed state differs")
	}
}

func TestDefaultKDFSealing(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, "pass")
	opts.kdf = kdfParams{}
	s := mustOpen(t, dir, opts)
	mustAccount(t, s, "net")
	s.Close()
	data, _ := os.ReadFile(filepath.Join(dir, "account-net.json"))
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil || f.Sealed == nil {
		t.Fatalf("not sealed: %v", err)
	}
	if p := (kdfParams{f.Sealed.Time, f.Sealed.MemoryKiB, f.Sealed.Threads}); p != defaultKDF || f.Sealed.KDF != "argon2id" {
		t.Errorf("sealed with %+v, want %+v", p, defaultKDF)
	}
}

func TestReadPassphraseFile(t *testing.T) {
	dir := t.TempDir()
	for in, want := range map[string]string{"pw": "pw", "pw\n": "pw", "pw\r\n": "pw", "pw\n\n": "pw\n", " p w ": " p w "} {
		path := filepath.Join(dir, "p")
		os.WriteFile(path, []byte(in), 0o600)
		got, err := ReadPassphraseFile(path)
		if err != nil || string(got) != want {
			t.Errorf("ReadPassphraseFile(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n"} {
		path := filepath.Join(dir, "p")
		os.WriteFile(path, []byte(in), 0o600)
		if _, err := ReadPassphraseFile(path); err == nil {
			t.Errorf("ReadPassphraseFile(%q) succeeded", in)
		}
	}
	if _, err := ReadPassphraseFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestKeyGeneration(t *testing.T) {
	// Real key generation, once.
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	a := mustAccount(t, s, "net")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k, err := a.PrivateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateKey(k); err != nil {
		t.Fatal(err)
	}
	f, err := a.Fingerprint(ctx)
	if err != nil || f != otrcore.FingerprintOf(&k.PublicKey) {
		t.Errorf("Fingerprint = %s, %v", f, err)
	}
	k.X.SetInt64(1) // the result is a copy
	s.Close()
	s = mustOpen(t, dir, Options{})
	k2, err := mustAccount(t, s, "net").PrivateKey(ctx)
	if err != nil || otrcore.FingerprintOf(&k2.PublicKey) != f || k2.X.Int64() == 1 {
		t.Errorf("key not persisted: %v", err)
	}
}

func TestKeyGenerationWaitCancelRetry(t *testing.T) {
	release := make(chan struct{})
	var failing atomic.Bool
	failing.Store(true)
	opts := testOptions(t, "")
	opts.newKey = func() (*dsa.PrivateKey, error) {
		<-release
		if failing.Load() {
			return nil, errors.New("entropy ran out")
		}
		return cloneKey(testKey(t, 1)), nil
	}
	dir := t.TempDir()
	s := mustOpen(t, dir, opts)
	a := mustAccount(t, s, "net")

	// The account is usable for trust while the key is generated.
	if _, err := a.SeenFingerprint("bob", fp(1), time.Time{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := a.PrivateKey(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PrivateKey while generating: %v, want deadline exceeded", err)
	}
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := a.PrivateKey(context.Background())
			errc <- err
		}()
	}
	close(release)
	for range 2 {
		if err := <-errc; err == nil || !strings.Contains(err.Error(), "entropy ran out") {
			t.Errorf("waiter got %v, want the generation error", err)
		}
	}
	// The next call retries.
	failing.Store(false)
	k, err := a.PrivateKey(context.Background())
	if err != nil || !keysEqual(k, testKey(t, 1)) {
		t.Fatalf("retry: %v", err)
	}
	if info := a.Fingerprints(); len(info) != 1 {
		t.Errorf("sightings lost around key generation: %+v", info)
	}
}

func TestReplaceKey(t *testing.T) {
	block := make(chan struct{})
	opts := testOptions(t, "")
	gen := opts.newKey
	opts.newKey = func() (*dsa.PrivateKey, error) {
		<-block
		return gen()
	}
	dir := t.TempDir()
	s := mustOpen(t, dir, opts)
	a := mustAccount(t, s, "net")
	ctx := context.Background()

	// An explicit key wins over a background generation still running.
	f, err := a.ReplaceKey(ctx, testKey(t, 2))
	if err != nil || f != otrcore.FingerprintOf(&testKey(t, 2).PublicKey) {
		t.Fatalf("ReplaceKey = %s, %v", f, err)
	}
	close(block)
	k, err := a.PrivateKey(ctx)
	if err != nil || !keysEqual(k, testKey(t, 2)) {
		t.Fatalf("PrivateKey after ReplaceKey: %v", err)
	}
	time.Sleep(10 * time.Millisecond) // let the background generation finish
	if k, _ := a.PrivateKey(ctx); !keysEqual(k, testKey(t, 2)) {
		t.Error("background generation overwrote the explicit key")
	}

	// Regenerate.
	f2, err := a.ReplaceKey(ctx, nil)
	if err != nil || f2 == f {
		t.Fatalf("ReplaceKey(nil) = %s, %v", f2, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.ReplaceKey(cancelled, nil); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ReplaceKey: %v", err)
	}

	bad := cloneKey(testKey(t, 0))
	bad.Y.Add(bad.Y, bad.Y)
	if _, err := a.ReplaceKey(ctx, bad); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("ReplaceKey with a bad key: %v, want ErrInvalidKey", err)
	}
	cur, _ := a.Fingerprint(ctx)
	s.Close()
	s = mustOpen(t, dir, testOptions(t, ""))
	if got, _ := mustAccount(t, s, "net").Fingerprint(ctx); got != cur {
		t.Error("replaced key not persisted")
	}
}

func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t, "pw"))
	const workers, each = 8, 12
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := s.Account(fmt.Sprintf("net%d", w%2))
			if err != nil {
				t.Error(err)
				return
			}
			for i := range each {
				n := w*each + i
				if _, err := a.SeenFingerprint(fmt.Sprintf("nick%d", n%5), fp(n), time.Time{}); err != nil {
					t.Error(err)
				}
				if i%3 == 0 {
					if err := a.SetTrust(fp(n), TrustManual, time.Time{}); err != nil {
						t.Error(err)
					}
				}
				a.IsTrusted("nick0", fp(n))
				a.KnownFingerprints(fmt.Sprintf("nick%d", n%5))
				a.Fingerprints()
				a.Peers()
				s.Accounts()
			}
			if _, err := a.PrivateKey(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	want := map[string]snapshot{}
	for _, name := range []string{"net0", "net1"} {
		a := mustAccount(t, s, name)
		if got := len(a.Fingerprints()); got != workers/2*each {
			t.Errorf("%s: %d fingerprints, want %d", name, got, workers/2*each)
		}
		want[name] = takeSnapshot(t, a)
	}
	s.Close()
	s = mustOpen(t, dir, testOptions(t, "pw"))
	for name, w := range want {
		if !snapshotsEqual(takeSnapshot(t, mustAccount(t, s, name)), w) {
			t.Errorf("%s differs after reopen", name)
		}
	}
}

// TestFailedOpenWritesNothing checks that a failing Open does not seal or
// otherwise rewrite the files it could read.
func TestFailedOpenWritesNothing(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t, ""))
	populate(t, mustAccount(t, s, "aaa"))
	s.Close()
	plain, _ := os.ReadFile(filepath.Join(dir, "account-aaa.json"))
	os.WriteFile(filepath.Join(dir, "account-zzz.json"), []byte("{broken"), 0o600)
	if _, err := Open(dir, testOptions(t, "secret")); !errors.Is(err, ErrForeignFile) {
		t.Fatalf("Open: %v, want ErrForeignFile", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "account-aaa.json")); !bytes.Equal(after, plain) {
		t.Error("a failed Open rewrote a readable file")
	}
}

// FuzzDecodeState checks that no account file content makes loading panic,
// and that whatever loads is written back unchanged.
func FuzzDecodeState(f *testing.F) {
	good := validFile(f)
	f.Add(good)
	f.Add([]byte(`{"format":"otrbnc-keystore","version":1,"account":"net","state":{"instance_tag":256,"fingerprints":[]}}`))
	f.Add([]byte(`{"format":"otrbnc-keystore","version":1,"account":"net","sealed":{"kdf":"argon2id","time":1,"memory_kib":8,"threads":1,"salt":"AAAAAAAAAAAAAAAAAAAAAA==","aead":"xchacha20poly1305","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","ciphertext":""}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// No passphrase: a crafted file may legitimately ask for an
		// expensive key derivation, which would only slow the fuzzer.
		st, _, err := decodeState("net", data, nil)
		if err != nil {
			return
		}
		out, err := encodeState("net", st, nil)
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := decodeState("net", out, nil)
		if err != nil {
			t.Fatalf("re-reading %s: %v", out, err)
		}
		again, err := encodeState("net", back, nil)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("round trip changed the state:\n%s\n%s", out, again)
		}
	})
}

// TestRepeatedNicksMerged checks that a file in which one fingerprint lists
// the same nick twice opens. Earlier versions wrote nicks that were not
// valid UTF-8 as U+FFFD, so two such nicks on one key read the same, and
// otrbnc refused to start.
func TestRepeatedNicksMerged(t *testing.T) {
	good := validFile(t)
	var nick string
	data := editState(t, good, func(f map[string]any) {
		fps := f["state"].(map[string]any)["fingerprints"].([]any)
		fj := fps[0].(map[string]any)
		seen := fj["seen"].([]any)
		nick = seen[0].(map[string]any)["nick"].(string)
		dup := map[string]any{"nick": nick, "first_seen": "2020-01-01T00:00:00Z", "last_seen": "2030-01-01T00:00:00Z"}
		fj["seen"] = append(seen, dup)
	})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "account-net.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, testOptions(t, ""))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	n := 0
	for _, sg := range mustAccount(t, s, "net").Fingerprints()[0].Seen {
		if sg.Nick != nick {
			continue
		}
		n++
		if !sg.FirstSeen.Equal(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) || !sg.LastSeen.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("merged sighting %+v does not span both", sg)
		}
	}
	if n != 1 {
		t.Errorf("nick %q listed %d times", nick, n)
	}
}
