package proxy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/proxy/config"
)

// keptMessages counts the channel and private messages in the backlog
// (not *otr notices). Call it in the network goroutine.
func keptMessages(n *network) int {
	count := 0
	for _, t := range n.backlog.targets {
		for i := range t.len() {
			if t.at(i).m != nil {
				count++
			}
		}
	}
	return count
}

// registerAs logs in to otrbnc with PASS and username user
// ("test@laptop" names the identity laptop on network test).
func registerAs(t testing.TB, addr, user string, caps ...string) *testConn {
	t.Helper()
	return register(t, addr, "alice", user, caps)
}

// leave quits c and waits until the identity named id has no client
// attached.
func leave(t *testing.T, env *proxyEnv, c *testConn, id string) {
	t.Helper()
	c.send("QUIT")
	c.expectClosed()
	deadline := time.Now().Add(testTimeout)
	for {
		attached := -1
		env.inNetwork(func(n *network) {
			if i := n.backlog.ids[id]; i != nil {
				attached = i.attached
			}
		})
		if attached == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("identity %q still attached (%d)", id, attached)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSeq waits until the network has numbered at least seq lines.
func waitSeq(t *testing.T, env *proxyEnv, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		var got uint64
		env.inNetwork(func(n *network) { got = n.backlog.seq })
		if got >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog numbered %d lines, want %d", got, seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// textLines returns the PRIVMSG and NOTICE texts c was shown, in order,
// that contain sub.
func textLines(c *testConn, sub string) []string {
	var out []string
	for _, l := range c.seenLines() {
		m, err := parseLine(l)
		if err != nil || (m.Command != "PRIVMSG" && m.Command != "NOTICE") || !strings.Contains(m.Trailing(), sub) {
			continue
		}
		out = append(out, m.Param(0)+" "+m.Trailing())
	}
	return out
}

func TestParseClientUser(t *testing.T) {
	cases := []struct {
		in, network, client string
		ok                  bool
	}{
		{"libera", "libera", "", true},
		{"alice/libera", "libera", "", true},
		{"alice/libera@laptop", "libera", "laptop", true},
		{"libera@phone-2", "libera", "phone-2", true},
		{"a@b/libera", "libera", "", true}, // the '@' belongs to the user part
		{"alice/libera@", "", "", false},
		{"alice/libera@bad name", "", "", false},
		{"alice/libera@" + strings.Repeat("x", maxClientName+1), "", "", false},
	}
	for _, c := range cases {
		network, client, ok := parseClientUser(c.in)
		if network != c.network || client != c.client || ok != c.ok {
			t.Errorf("parseClientUser(%q) = %q, %q, %v; want %q, %q, %v", c.in, network, client, ok, c.network, c.client, c.ok)
		}
	}
}

// TestBacklogPerIdentity: identity a stays attached while b is away;
// channel and private messages and *otr notices arrive; b gets exactly
// what it missed, in order, with times, each channel's lines after that
// channel's JOIN and names list; a, back later, gets only what it had
// not seen.
func TestBacklogPerIdentity(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", func(c *config.Config) { c.Network[0].Channels = []string{"#chan"} }, Options{})
	a := registerAs(t, env.addr, "test@a")
	fn.expectOther("NAMES", "#chan")
	fn.s.send(":srv 366 alice #chan :End of /NAMES list")
	b := registerAs(t, env.addr, "test/test@b", "server-time")
	fn.expectOther("NAMES", "#chan")
	fn.s.send(":srv 366 alice #chan :End of /NAMES list")
	fn.s.send(":bob!b@peer.test PRIVMSG #chan :seen-by-both")
	b.expect("live line", privmsgFrom("bob", "seen-by-both"))
	leave(t, env, b, "b")

	fn.s.send(
		":bob!b@peer.test PRIVMSG #chan :missed-chan-1",
		":bob!b@peer.test PRIVMSG alice :missed-private-1",
		":carol!c@peer.test PRIVMSG #chan :\x01ACTION missed-action\x01",
		":bob!b@peer.test PRIVMSG alice :\x01VERSION\x01", // a CTCP request is not kept
	)
	a.expect("live", privmsgFrom("carol", "missed-action"))
	a.send("PRIVMSG *otr :status") // a reply to a, not an event
	a.expect("status", serviceSays("policy"))
	fn.s.send(":bob!b@peer.test PRIVMSG #chan :missed-chan-2")
	a.expect("live", privmsgFrom("bob", "missed-chan-2"))

	b = registerAs(t, env.addr, "test/test@b", "server-time")
	b.expect("JOIN", isCmd("JOIN"))
	b.expect("summary", serviceSays("while client b was away: 1 private message(s), 3 channel message(s)"))
	m := b.expect("private backlog", privmsgFrom("bob", "missed-private-1"))
	if _, ok := parseServerTime(m.Tags["time"]); !ok || m.Trailing() != "missed-private-1" {
		t.Errorf("private backlog %v", m)
	}
	fn.expectOther("NAMES", "#chan")
	fn.s.send(":srv 353 alice = #chan :alice bob carol", ":srv 366 alice #chan :End of /NAMES list")
	b.expect("names first", isCmd("366"))
	for _, want := range []string{"missed-chan-1", "missed-action", "missed-chan-2"} {
		m := b.expect("channel backlog", func(m *irc.Message) bool { return m.Command == "PRIVMSG" && m.Param(0) == "#chan" })
		if !strings.Contains(m.Trailing(), want) || m.Tags["time"] == "" {
			t.Errorf("channel backlog: got %v, want %q with a time", m, want)
		}
	}
	fn.s.send(":bob!b@peer.test PRIVMSG #chan :live-again")
	b.expect("live after backlog", privmsgFrom("bob", "live-again"))
	fn.sync(b)
	if got := textLines(b, "seen-by-both"); len(got) != 0 {
		t.Errorf("b was shown %q again", got)
	}
	if saw(b, "VERSION") {
		t.Error("a CTCP request was replayed")
	}

	// a leaves; what arrives now, a has not seen.
	leave(t, env, a, "a")
	fn.s.send(":bob!b@peer.test PRIVMSG #chan :a-missed", ":bob!b@peer.test NOTICE alice :a-missed-notice")
	b.expect("live", func(m *irc.Message) bool { return strings.Contains(m.Trailing(), "a-missed-notice") })
	a = registerAs(t, env.addr, "test@a")
	a.expect("summary", serviceSays("while client a was away: 1 private message(s), 1 channel message(s)"))
	m = a.expect("private backlog", func(m *irc.Message) bool { return strings.Contains(m.Trailing(), "a-missed-notice") })
	if !regexp.MustCompile(`^\[\d\d:\d\d:\d\d\] a-missed-notice$`).MatchString(m.Trailing()) {
		t.Errorf("backlog without server-time shown as %q", m.Trailing())
	}
	fn.expectOther("NAMES", "#chan")
	fn.s.send(":srv 366 alice #chan :End of /NAMES list")
	a.expect("channel backlog", privmsgFrom("bob", "a-missed"))
	fn.sync(a)
	for _, old := range []string{"missed-chan-1", "missed-private-1", "missed-chan-2", "live-again"} {
		if got := textLines(a, old); len(got) != 0 {
			t.Errorf("a was shown %q again", got)
		}
	}
	// Every identity saw everything: nothing stays in memory.
	env.inNetwork(func(n *network) {
		if k := keptMessages(n); k != 0 {
			t.Errorf("%d lines still kept although every identity saw them", k)
		}
	})
}

// TestBacklogLiveWaitsForChannelBacklog: a channel line arriving while a
// client's channel backlog waits for the names list comes after it.
func TestBacklogLiveWaitsForChannelBacklog(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", func(c *config.Config) { c.Network[0].Channels = []string{"#chan"} }, Options{})
	a := registerAs(t, env.addr, "test@a")
	fn.expectOther("NAMES", "#chan")
	fn.s.send(":srv 366 alice #chan :End of /NAMES list")
	fn.sync(a)
	leave(t, env, a, "a")
	var start uint64
	env.inNetwork(func(n *network) { start = n.backlog.seq })
	fn.s.send(":bob!b@peer.test PRIVMSG #chan :old-line")
	waitSeq(t, env, start+1)
	a = registerAs(t, env.addr, "test@a")
	fn.expectOther("NAMES", "#chan")
	fn.s.send(":bob!b@peer.test PRIVMSG #chan :new-line")
	fn.sync(a) // new-line was handled
	fn.s.send(":srv 366 alice #chan :End of /NAMES list")
	a.expect("old", privmsgFrom("bob", "old-line"))
	a.expect("new after old", privmsgFrom("bob", "new-line"))
	var lines []string
	for _, l := range a.seenLines() {
		if strings.Contains(l, "-line") || strings.Contains(l, " 366 ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 3 || !strings.Contains(lines[0], " 366 ") || !strings.Contains(lines[1], "old-line") || !strings.Contains(lines[2], "new-line") {
		t.Errorf("order: %q", lines)
	}
}

// TestBacklogBounds: under a flood the backlog stays within
// backlog_lines per target, maxBacklogTargets targets and
// maxClientIdentities identities, and an identity is told how much it
// lost.
func TestBacklogBounds(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", func(c *config.Config) { c.Network[0].BacklogLines = 5 }, Options{})
	b := registerAs(t, env.addr, "test@b")
	leave(t, env, b, "b")
	var start uint64
	env.inNetwork(func(n *network) { start = n.backlog.seq })

	var lines []string
	for i := range 20 {
		lines = append(lines, ":bob!b@peer.test PRIVMSG #chan :chan-flood-"+strconv.Itoa(i))
	}
	for i := range 200 {
		lines = append(lines, ":n"+strconv.Itoa(i)+"!u@peer.test PRIVMSG alice :nick-flood-"+strconv.Itoa(i))
	}
	fn.s.send(lines...)
	waitSeq(t, env, start+uint64(len(lines)))
	env.inNetwork(func(n *network) {
		targets := 0
		for key, tg := range n.backlog.targets {
			if key != serviceKey {
				targets++
			}
			if tg.len() > tg.max || (key != serviceKey && tg.max != 5) {
				t.Errorf("target %s holds %d lines, bound %d", key, tg.len(), tg.max)
			}
		}
		if targets > maxBacklogTargets {
			t.Errorf("%d targets kept, bound %d", targets, maxBacklogTargets)
		}
		if k := keptMessages(n); k != maxBacklogTargets {
			t.Errorf("%d lines kept, want %d (one per nick of the last ones)", k, maxBacklogTargets)
		}
		sum := 0
		for _, tg := range n.backlog.targets {
			for i := range tg.len() {
				sum += tg.at(i).size
			}
		}
		if sum != n.backlog.bytes {
			t.Errorf("byte count %d, lines add up to %d", n.backlog.bytes, sum)
		}
	})

	// #chan was the least recently active target: it went first; then
	// the oldest nicks.
	b = registerAs(t, env.addr, "test@b")
	lost := 220 - maxBacklogTargets
	b.expect("summary", serviceSays(fmt.Sprintf("%d private message(s), 0 channel message(s)", maxBacklogTargets)))
	fn.sync(b)
	if !saw(b, fmt.Sprintf("%d older message(s) did not fit in memory", lost)) {
		t.Errorf("b was not told that %d lines were lost", lost)
	}
	got := textLines(b, "nick-flood-")
	if len(got) != maxBacklogTargets {
		t.Errorf("b was shown %d lines, want %d", len(got), maxBacklogTargets)
	}
	for i, l := range got {
		if want := "] nick-flood-" + strconv.Itoa(lost-20+i); !strings.HasSuffix(l, want) {
			t.Errorf("line %d: %q, want %q (the newest, in order)", i, l, want)
			break
		}
	}

	// Identities: many names come and go; the oldest are forgotten.
	leave(t, env, b, "b")
	for i := range maxClientIdentities + 8 {
		c := registerAs(t, env.addr, "test@id"+strconv.Itoa(i))
		leave(t, env, c, "id"+strconv.Itoa(i))
	}
	env.inNetwork(func(n *network) {
		if len(n.backlog.ids) > maxClientIdentities {
			t.Errorf("%d identities remembered, bound %d", len(n.backlog.ids), maxClientIdentities)
		}
		if n.backlog.ids["id"+strconv.Itoa(maxClientIdentities+7)] == nil || n.backlog.ids["b"] != nil {
			t.Error("not the least recently seen identities forgotten")
		}
	})
}

// TestBacklogBytes: lines larger than any server sends are bounded in
// total, the oldest giving way.
func TestBacklogBytes(t *testing.T) {
	b := newBacklogStore(config.MaxBacklogLines)
	b.identity("away", time.Now()) // never attached: keeps everything
	big := strings.Repeat("x", 8000)
	for i := range 6000 {
		m := msg("bob!b@h", "PRIVMSG", "#c"+strconv.Itoa(i%3), big)
		b.add("#c"+strconv.Itoa(i%3), true, backlogLine{at: time.Now(), m: m})
	}
	if b.bytes > maxBacklogBytes {
		t.Errorf("%d bytes kept, bound %d", b.bytes, maxBacklogBytes)
	}
	sum, count := 0, 0
	for _, tg := range b.targets {
		for i := range tg.len() {
			sum += tg.at(i).size
			count++
		}
	}
	if sum != b.bytes || count == 0 || count >= 6000 {
		t.Errorf("%d lines of %d bytes kept, count says %d", count, sum, b.bytes)
	}
	if lost := b.ids["away"].lost; lost != 6000-count {
		t.Errorf("lost %d, want %d", lost, 6000-count)
	}
}

// TestBacklogDecryptedOTRInMemoryOnly: decrypted OTR messages and the
// *otr notices of the session are kept for an identity that is away, in
// memory: no file anywhere under the test's directories holds them.
func TestBacklogDecryptedOTRInMemoryOnly(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2201)
	b := registerAs(t, env.addr, "test@b")
	leave(t, env, b, "b")
	a := registerAs(t, env.addr, "test@a")
	bob.secure(a)
	const secret = "decrypted-secret-7f3a9c"
	bob.say(secret)
	a.expect("decrypted live", privmsgFrom("bob", secret))
	a.send("PRIVMSG bob :my-own-" + secret)
	bob.expectText("my-own-" + secret)

	var kept []string
	env.inNetwork(func(n *network) {
		for _, l := range n.backlog.since(0) {
			if l.m != nil {
				kept = append(kept, l.m.Trailing())
			} else {
				kept = append(kept, l.text)
			}
		}
	})
	if !slices.Contains(kept, secret) || !slices.Contains(kept, "my-own-"+secret) {
		t.Errorf("backlog %q lacks the decrypted messages", kept)
	}
	for _, l := range kept {
		if strings.Contains(l, "?OTR") {
			t.Errorf("ciphertext kept: %q", l)
		}
	}
	root := filepath.Dir(t.TempDir())
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), secret) {
			t.Errorf("%s holds a decrypted message", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	b = registerAs(t, env.addr, "test@b", "server-time", "znc.in/self-message")
	b.expect("session notice", serviceSays("private conversation with bob started"))
	m := b.expect("decrypted backlog", privmsgFrom("bob", secret))
	if m.Trailing() != secret || m.Tags["time"] == "" {
		t.Errorf("replayed %v", m)
	}
	m = b.expect("own message, for a client that wants them", privmsgFrom("alice", "my-own-"+secret))
	if m.Param(0) != "bob" {
		t.Errorf("own message replayed to %q", m.Param(0))
	}
	// A client that does not want its other clients' messages is not
	// shown them from the backlog either.
	leave(t, env, b, "b")
	bob.say("second-" + secret)
	a.expect("live", privmsgFrom("bob", "second-"+secret))
	a.send("PRIVMSG bob :own-second")
	bob.expectText("own-second")
	b = registerAs(t, env.addr, "test@b")
	b.expect("decrypted backlog", privmsgFrom("bob", "second-"+secret))
	fn.sync(b)
	if saw(b, "own-second") {
		t.Error("own message replayed to a client without echo-message or self-message")
	}
}

// FuzzParseClientUser: any username either names a valid identity or is
// refused, and the network part never contains '/'.
func FuzzParseClientUser(f *testing.F) {
	for _, s := range []string{"libera", "a/libera@laptop", "@", "/@/", "a@b@c", "x/y/z@w-1.2_3", "libera@" + strings.Repeat("é", 20)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		network, client, ok := parseClientUser(user)
		if !ok {
			return
		}
		if client != "" && !validClientName(client) {
			t.Fatalf("%q: invalid client %q accepted", user, client)
		}
		if strings.Contains(network, "/") || !strings.Contains(user, network) {
			t.Fatalf("%q: network %q", user, network)
		}
	})
}
