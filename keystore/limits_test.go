package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"otrbnc/otrcore"
)

// limitOptions returns test options with the given limits.
func limitOptions(t testing.TB, fps, perNick, nicksPerFP int) Options {
	opts := testOptions(t, "")
	opts.MaxFingerprints, opts.MaxFingerprintsPerNick, opts.MaxNicksPerFingerprint = fps, perNick, nicksPerFP
	return opts
}

func mustSee(t testing.TB, a *Account, nick string, f otrcore.Fingerprint, at time.Time) SeenResult {
	t.Helper()
	r, err := a.SeenFingerprint(nick, f, at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func knownSet(a *Account, nick string) []otrcore.Fingerprint {
	var out []otrcore.Fingerprint
	for _, f := range a.KnownFingerprints(nick) {
		out = append(out, f)
	}
	return out
}

// TestLimitPerNick checks that one nick presenting key after key evicts
// only its own least recently seen untrusted keys.
func TestLimitPerNick(t *testing.T) {
	s := mustOpen(t, t.TempDir(), limitOptions(t, 100, 3, 8))
	a := mustAccount(t, s, "net")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mustSee(t, a, "alice", fp(100), t0)
	mustSee(t, a, "mallory", fp(0), t0)
	if err := a.SetTrust(fp(0), TrustManual, t0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		mustSee(t, a, "mallory", fp(i), t0.Add(time.Duration(i)*time.Minute))
	}
	// Seen again, fp(9) becomes more recent than fp(10), which goes next.
	mustSee(t, a, "mallory", fp(9), t0.Add(time.Hour))
	mustSee(t, a, "mallory", fp(11), t0.Add(2*time.Hour))
	if got, want := knownSet(a, "mallory"), []otrcore.Fingerprint{fp(0), fp(9), fp(11)}; !slices.Equal(got, want) {
		t.Errorf("mallory's fingerprints = %s, want %s (the trusted one and the two seen last)", got, want)
	}
	if _, ok := a.Lookup(fp(1)); ok {
		t.Error("an evicted fingerprint seen under no other nick is still known")
	}
	if got := knownSet(a, "alice"); !slices.Equal(got, []otrcore.Fingerprint{fp(100)}) {
		t.Errorf("alice's fingerprints = %s: another nick's flood evicted them", got)
	}
	if n := len(a.Fingerprints()); n != 4 {
		t.Errorf("%d fingerprints, want 4", n)
	}

	// A key evicted from one nick stays under the others it was seen under.
	mustSee(t, a, "mallory_", fp(11), t0.Add(3*time.Hour))
	mustSee(t, a, "mallory", fp(12), t0.Add(4*time.Hour)) // evicts fp(9)
	mustSee(t, a, "mallory", fp(13), t0.Add(5*time.Hour)) // evicts fp(11) from mallory
	if info, ok := a.Lookup(fp(11)); !ok || len(info.Seen) != 1 || info.Seen[0].Nick != "mallory_" {
		t.Errorf("fp(11) after its eviction from mallory: %+v, %v", info, ok)
	}
	if got, want := knownSet(a, "mallory"), []otrcore.Fingerprint{fp(0), fp(12), fp(13)}; !slices.Equal(got, want) {
		t.Errorf("mallory's fingerprints = %s, want %s", got, want)
	}

	// When all of a nick's keys are trusted, a new one is reported but
	// not recorded.
	for _, f := range knownSet(a, "mallory") {
		if err := a.SetTrust(f, TrustSMP, t0); err != nil {
			t.Fatal(err)
		}
	}
	before := knownSet(a, "mallory")
	r := mustSee(t, a, "mallory", fp(14), t0.Add(6*time.Hour))
	if !r.NewFingerprint || !r.NewForPeer || !r.NotRecorded || len(r.OtherFingerprints) != 3 {
		t.Errorf("new key of a nick full of trusted keys: %+v", r)
	}
	if got := knownSet(a, "mallory"); !slices.Equal(got, before) {
		t.Errorf("trusted keys evicted: %s, before %s", got, before)
	}
	if _, ok := a.Lookup(fp(14)); ok {
		t.Error("unrecorded fingerprint stored")
	}
}

// TestLimitTotal checks the overall limit: the least recently seen
// untrusted fingerprints make room, trusted ones never do.
func TestLimitTotal(t *testing.T) {
	s := mustOpen(t, t.TempDir(), limitOptions(t, 10, 16, 8))
	a := mustAccount(t, s, "net")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 4 {
		mustSee(t, a, fmt.Sprintf("friend%d", i), fp(i), t0)
	}
	if err := a.SetTrust(fp(0), TrustManual, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.SetTrust(fp(1), TrustSMP, t0); err != nil {
		t.Fatal(err)
	}
	mustSee(t, a, "friend2", fp(2), t0.Add(time.Hour)) // seen recently
	// A flood of keys under ever new nicks.
	for i := range 100 {
		r := mustSee(t, a, fmt.Sprintf("flood%d", i), fp(1000+i), t0.Add(time.Minute+time.Duration(i)*time.Second))
		if r.NotRecorded {
			t.Fatalf("sighting %d not recorded while untrusted fingerprints could make room", i)
		}
	}
	fps := a.Fingerprints()
	if len(fps) != 10 {
		t.Fatalf("%d fingerprints, want the limit, 10", len(fps))
	}
	for _, f := range []otrcore.Fingerprint{fp(0), fp(1)} {
		if !a.IsTrusted("", f) {
			t.Errorf("trusted %s evicted", f)
		}
	}
	// fp(2), seen at t0+1h, is more recent than any flood key; fp(3), the
	// oldest untrusted, went first.
	if _, ok := a.Lookup(fp(2)); !ok {
		t.Error("recently seen fp(2) evicted before older flood keys")
	}
	if _, ok := a.Lookup(fp(3)); ok {
		t.Error("least recently seen fp(3) kept")
	}
	if _, ok := a.Lookup(fp(1099)); !ok {
		t.Error("latest sighting not kept")
	}

	// Trusting a new fingerprint evicts an untrusted one; when all are
	// trusted, it fails and nothing changes.
	for i := range 8 {
		if err := a.SetTrust(fp(500+i), TrustManual, t0); err != nil {
			t.Fatalf("SetTrust %d: %v", i, err)
		}
	}
	err := a.SetTrust(fp(600), TrustManual, t0)
	if !errors.Is(err, ErrTooManyTrusted) {
		t.Errorf("SetTrust with all fingerprints trusted: %v, want ErrTooManyTrusted", err)
	}
	if a.IsTrusted("", fp(600)) || len(a.Fingerprints()) != 10 {
		t.Error("refused SetTrust changed the account")
	}
	r := mustSee(t, a, "newcomer", fp(601), t0.Add(2*time.Hour))
	if !r.NotRecorded || !r.NewFingerprint {
		t.Errorf("sighting with all fingerprints trusted: %+v", r)
	}
	if _, ok := a.Lookup(fp(601)); ok {
		t.Error("unrecorded sighting stored")
	}
}

// TestLimitNicksPerFingerprint checks that one key shown under ever new
// nicks keeps only its most recently seen nicks, and its trust.
func TestLimitNicksPerFingerprint(t *testing.T) {
	s := mustOpen(t, t.TempDir(), limitOptions(t, 100, 16, 3))
	a := mustAccount(t, s, "net")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mustSee(t, a, "bob", fp(1), t0)
	if err := a.SetTrust(fp(1), TrustSMP, t0); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		mustSee(t, a, fmt.Sprintf("bob%d", i), fp(1), t0.Add(time.Duration(i+1)*time.Minute))
	}
	info, _ := a.Lookup(fp(1))
	var nicks []string
	for _, s := range info.Seen {
		nicks = append(nicks, s.Nick)
	}
	if !slices.Equal(nicks, []string{"bob7", "bob8", "bob9"}) || info.Trust != TrustSMP {
		t.Errorf("fp(1) seen under %q with trust %v; want the 3 latest nicks and smp", nicks, info.Trust)
	}
	if got := a.Peers(); !slices.Equal(got, []string{"bob7", "bob8", "bob9"}) {
		t.Errorf("Peers() = %q", got)
	}
	if got := a.KnownFingerprints("bob"); len(got) != 0 {
		t.Errorf("forgotten nick still has %x", got)
	}
}

// TestFloodStaysWithinDefaultLimits is the hostile load of the issue: any
// nick can make otrbnc record new fingerprints at no cost. With the default
// limits, 6,000 new keys under 1,500 nicks leave the account at the
// overall limit, every nick within its own, and the trusted key intact.
func TestFloodStaysWithinDefaultLimits(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testOptions(t, ""))
	a := mustAccount(t, s, "net")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := a.SeenFingerprint("alice", fp(0), t0); err != nil {
		t.Fatal(err)
	}
	if err := a.SetTrust(fp(0), TrustManual, t0); err != nil {
		t.Fatal(err)
	}
	const flood, nicks = 6000, 1500
	for i := range flood {
		f := otrcore.Fingerprint{0xff, byte(i >> 16), byte(i >> 8), byte(i)}
		if _, err := a.SeenFingerprint(fmt.Sprintf("m%d", i%nicks), f, t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(a.Fingerprints()); n != DefaultMaxFingerprints {
		t.Errorf("%d fingerprints after %d new ones, want the limit %d", n, flood, DefaultMaxFingerprints)
	}
	for i := range nicks {
		if n := len(a.KnownFingerprints(fmt.Sprintf("m%d", i))); n > DefaultMaxFingerprintsPerNick {
			t.Errorf("nick m%d has %d fingerprints", i, n)
		}
	}
	if !a.IsTrusted("alice", fp(0)) {
		t.Error("the flood evicted a trusted fingerprint")
	}
}

// TestLimitsValidated checks that Open refuses limits with which a file
// could outgrow what Open reads, and accepts the largest that fit.
func TestLimitsValidated(t *testing.T) {
	for _, tc := range []struct {
		fps, perNick, nicks int
		ok                  bool
	}{
		{0, 0, 0, true},
		{DefaultMaxFingerprints, DefaultMaxFingerprintsPerNick, DefaultMaxNicksPerFingerprint, true},
		{DefaultMaxFingerprints, 1, 12, true},
		{DefaultMaxFingerprints, 1, 13, false},
		{100000, 1, 1, false},
		{1 << 62, 1, 1 << 62, false},
		{-1, 0, 0, false},
		{0, -1, 0, false},
		{0, 0, -5, false},
	} {
		s, err := Open(t.TempDir(), limitOptions(t, tc.fps, tc.perNick, tc.nicks))
		if (err == nil) != tc.ok {
			t.Errorf("limits %d/%d/%d: %v, want ok=%v", tc.fps, tc.perNick, tc.nicks, err, tc.ok)
		}
		if err == nil {
			s.Close()
		}
	}
	if b := maxFileSize(limits{DefaultMaxFingerprints, DefaultMaxFingerprintsPerNick, DefaultMaxNicksPerFingerprint}); b > maxStateFile*3/4 {
		t.Errorf("default limits allow %d bytes, want headroom below %d", b, maxStateFile)
	}
}

func TestPeerNames(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testOptions(t, ""))
	a := mustAccount(t, s, "net")
	for _, bad := range []string{"", strings.Repeat("n", MaxPeerName+1), "caf\xe9"} {
		if _, err := a.SeenFingerprint(bad, fp(1), time.Time{}); err == nil {
			t.Errorf("SeenFingerprint(%q) accepted", bad)
		}
	}
	for _, good := range []string{strings.Repeat("n", MaxPeerName), "café", "<&>\x01"} {
		if _, err := a.SeenFingerprint(good, fp(1), time.Time{}); err != nil {
			t.Errorf("SeenFingerprint(%q): %v", good, err)
		}
	}
	for _, at := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, err := a.SeenFingerprint("bob", fp(1), at); err == nil {
			t.Errorf("SeenFingerprint at %v accepted", at)
		}
		if err := a.SetTrust(fp(1), TrustManual, at); err == nil {
			t.Errorf("SetTrust at %v accepted", at)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatalf("a stored name or time cannot be written: %v", err)
	}
}

// TestOldFileBroughtWithinLimits checks that a file written without limits
// (by an earlier version) opens, keeps its trusted fingerprints and is
// trimmed to the limits, on disk too.
func TestOldFileBroughtWithinLimits(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fps := make(map[otrcore.Fingerprint]*record)
	for i := range 50 {
		r := &record{seen: []Sighting{{Nick: "flood", FirstSeen: t0.Add(time.Duration(i) * time.Minute), LastSeen: t0.Add(time.Duration(i) * time.Minute)}}}
		if i%10 == 0 {
			r.trust, r.verifiedAt = TrustManual, t0
		}
		fps[fp(i)] = r
	}
	many := &record{trust: TrustSMP, verifiedAt: t0}
	for i := range 12 {
		at := t0.Add(time.Duration(i) * time.Hour)
		many.seen = append(many.seen, Sighting{Nick: fmt.Sprintf("nick%02d", i), FirstSeen: at, LastSeen: at})
	}
	fps[fp(100)] = many
	// Two nicks that were not valid UTF-8 before they were written:
	// they now read the same and are merged.
	late := t0.Add(10 * time.Hour)
	fps[fp(101)] = &record{seen: []Sighting{{Nick: "caf\ufffd", FirstSeen: late, LastSeen: late}, {Nick: "x", FirstSeen: late, LastSeen: late}}}
	// Under 30 more nicks, older than the rest.
	for i := range 30 {
		at := t0.Add(time.Duration(i) * time.Second)
		fps[fp(200+i)] = &record{seen: []Sighting{{Nick: fmt.Sprintf("n%d", i), FirstSeen: at, LastSeen: at}}}
	}
	data, err := encodeState("net", newState(0x1234, testKey(t, 0), fps), nil)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), `"nick": "x"`, `"nick": "caf\ufffd"`, 1))
	if err := os.WriteFile(filepath.Join(dir, "account-net.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	var log logRecorder
	opts := limitOptions(t, 20, 8, 4)
	opts.Logger = log.logger()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	check := func(a *Account) {
		t.Helper()
		if n := len(a.Fingerprints()); n != 20 {
			t.Errorf("%d fingerprints, want 20", n)
		}
		for i := 0; i < 50; i += 10 {
			if !a.IsTrusted("", fp(i)) {
				t.Errorf("trusted fp(%d) dropped", i)
			}
		}
		// flood keeps its 5 trusted and 3 latest; of the 30 oldest, the
		// 10 latest fill the account to 20.
		if n := len(a.KnownFingerprints("flood")); n != 8 {
			t.Errorf("flood has %d fingerprints, want 8", n)
		}
		for i := range 30 {
			if _, ok := a.Lookup(fp(200 + i)); ok != (i >= 20) {
				t.Errorf("fp(%d) kept: %v", 200+i, ok)
			}
		}
		info, _ := a.Lookup(fp(100))
		if len(info.Seen) != 4 || info.Seen[0].Nick != "nick08" || info.Trust != TrustSMP {
			t.Errorf("fp(100): %+v", info)
		}
		if info, _ := a.Lookup(fp(101)); len(info.Seen) != 1 {
			t.Errorf("fp(101): %+v", info)
		}
	}
	check(mustAccount(t, s, "net"))
	if !log.has("keystore: account file holds more than the limits allow") {
		t.Error("trimming not logged")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened with no limit below the file's size: the trimmed state
	// was written.
	s = mustOpen(t, dir, limitOptions(t, 1000, 100, 8))
	check(mustAccount(t, s, "net"))
}

func TestImportReportsDropped(t *testing.T) {
	s := mustOpen(t, t.TempDir(), limitOptions(t, 100, 2, 8))
	a := mustAccount(t, s, "net")
	l := &Libotr{}
	from := LibotrAccount{Name: "me", Protocol: "IRC"}
	for i := range 5 {
		trust := ""
		if i == 0 {
			trust = "smp"
		}
		l.Fingerprints = append(l.Fingerprints, LibotrFingerprint{Peer: "bob", Account: from, Fingerprint: fp(i), Trust: trust})
	}
	res, err := a.ImportLibotr(l, from, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sightings != 5 || res.Trusted != 1 || res.Dropped != 3 {
		t.Errorf("ImportLibotr = %+v, want 5 sightings, 1 trusted, 3 dropped", res)
	}
	if !a.IsTrusted("bob", fp(0)) || len(a.KnownFingerprints("bob")) != 2 {
		t.Errorf("after import: %+v", a.Fingerprints())
	}
}

// checkState verifies the invariants of st under lim: the nick index and
// the eviction order match the records, and every limit holds.
func checkState(t *testing.T, st *state, lim limits) {
	t.Helper()
	if len(st.fps) > lim.fingerprints {
		t.Fatalf("%d fingerprints, limit %d", len(st.fps), lim.fingerprints)
	}
	index := make(map[string]map[otrcore.Fingerprint]bool)
	untrusted := 0
	for f, r := range st.fps {
		if len(r.seen) > lim.nicksPerFP {
			t.Fatalf("%s has %d nicks, limit %d", f, len(r.seen), lim.nicksPerFP)
		}
		if r.trust == TrustNone {
			untrusted++
			if len(r.seen) == 0 {
				t.Fatalf("untrusted %s is seen under no nick", f)
			}
			i, ok := st.untrusted.pos[f]
			if !ok || st.untrusted.entries[i].fp != f || !st.untrusted.entries[i].last.Equal(r.lastSeen()) {
				t.Fatalf("untrusted %s missing or misplaced in the eviction order", f)
			}
		}
		for _, s := range r.seen {
			if index[s.Nick] == nil {
				index[s.Nick] = make(map[otrcore.Fingerprint]bool)
			}
			if index[s.Nick][f] {
				t.Fatalf("%s lists %q twice", f, s.Nick)
			}
			index[s.Nick][f] = true
		}
	}
	if untrusted != len(st.untrusted.entries) || len(st.untrusted.pos) != untrusted {
		t.Fatalf("eviction order holds %d, want the %d untrusted", len(st.untrusted.entries), untrusted)
	}
	for i := 1; i < len(st.untrusted.entries); i++ {
		if st.untrusted.Less(i, (i-1)/2) {
			t.Fatalf("eviction order is not a heap at %d", i)
		}
	}
	if len(index) != len(st.nicks) {
		t.Fatalf("nick index has %d nicks, records %d", len(st.nicks), len(index))
	}
	for n, fps := range st.nicks {
		if len(fps) > lim.perNick {
			t.Fatalf("nick %q has %d fingerprints, limit %d", n, len(fps), lim.perNick)
		}
		if len(fps) != len(index[n]) {
			t.Fatalf("nick %q indexed with %d fingerprints, seen with %d", n, len(fps), len(index[n]))
		}
		for _, f := range fps {
			if !index[n][f] {
				t.Fatalf("nick %q indexed with %s, not seen with it", n, f)
			}
		}
	}
}

// FuzzLimits runs random sightings, trust changes and forgets on a state
// with small limits, checking the invariants after each, and that trusted
// fingerprints disappear only when the user says so.
func FuzzLimits(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 1, 3, 2, 1, 2, 0, 2, 4, 1, 3, 5, 3, 1, 2})
	f.Add(bytes.Repeat([]byte{0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5, 2, 0, 1, 2, 0, 2}, 4))
	f.Add([]byte{2, 0, 1, 2, 0, 2, 2, 0, 3, 2, 0, 4, 2, 0, 5, 2, 0, 6, 0, 1, 7, 0, 2, 8, 6, 1, 1})
	// A trusted key among a nick's, then more keys under the nick.
	f.Add([]byte{0, 0, 1, 2, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5})
	f.Fuzz(func(t *testing.T, ops []byte) {
		lim := limits{fingerprints: 6, perNick: 3, nicksPerFP: 2}
		st := newState(0x100, nil, make(map[otrcore.Fingerprint]*record))
		trusted := make(map[otrcore.Fingerprint]bool) // what the user trusted
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		for i := 0; i+2 < len(ops) && i < 3*500; i += 3 {
			op, nick, f := ops[i], fmt.Sprintf("n%d", ops[i+1]%5), fp(int(ops[i+2]%12))
			// Times mostly advance, sometimes go back.
			now := t0.Add(time.Duration(i) * time.Second)
			if op&0x80 != 0 {
				now = t0.Add(-time.Duration(i) * time.Second)
			}
			// The nicks of trusted fingerprints: eviction must not touch
			// them, only a sighting of the fingerprint itself may.
			trustedNicks := make(map[otrcore.Fingerprint]string)
			for tf := range trusted {
				trustedNicks[tf] = fmt.Sprint(st.fps[tf].seen)
			}
			switch op & 3 {
			case 0, 1:
				res, _ := st.seen(nick, f, now, lim)
				r := st.fps[f]
				stored := r != nil && r.sightingIndex(nick) >= 0
				if stored == res.NotRecorded {
					t.Fatalf("op %d: NotRecorded %v, stored %v", i/3, res.NotRecorded, stored)
				}
			case 2:
				level := TrustManual
				if op&4 != 0 {
					level = TrustNone
				}
				err := st.setTrust(f, level, now, lim)
				switch {
				case err == nil && level != TrustNone:
					trusted[f] = true
				case err == nil:
					delete(trusted, f)
				case !errors.Is(err, ErrTooManyTrusted) || len(trusted) < lim.fingerprints:
					t.Fatalf("op %d: setTrust: %v with %d trusted", i/3, err, len(trusted))
				}
			case 3:
				st.forget(f)
				delete(trusted, f)
			}
			checkState(t, st, lim)
			for tf := range trusted {
				r := st.fps[tf]
				if r == nil || r.trust == TrustNone {
					t.Fatalf("op %d: trusted %s was evicted", i/3, tf)
				}
				if before, ok := trustedNicks[tf]; ok && tf != f && fmt.Sprint(r.seen) != before {
					t.Fatalf("op %d: sightings of trusted %s changed from %s to %v", i/3, tf, before, r.seen)
				}
			}
		}
		// A copy and a snapshot are independent of the state.
		c := st.clone()
		checkState(t, c, lim)
		c.seen("other", fp(99), t0, lim)
		if _, ok := st.fps[fp(99)]; ok {
			t.Fatal("changing a clone changed the state")
		}
	})
}
