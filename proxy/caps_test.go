package proxy

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
)

const allCaps = "batch cap-notify echo-message labeled-response message-tags server-time znc.in/self-message"

// TestCapListsOffered: the list is otrbnc's own, hidden capabilities are
// refused, and negotiation works before and after registration.
func TestCapListsOffered(t *testing.T) {
	t.Parallel()
	env, _ := startFakeNet(t, "sts=port=6697 draft/multiline=max-bytes=4096 draft/chathistory=100 soju.im/bouncer-networks znc.in/playback server-time message-tags batch", nil, Options{})
	c := dialTest(t, env.addr)
	c.send("CAP LS 302")
	m := c.expect("CAP LS", isCmd("CAP"))
	if got, want := m.Trailing(), "batch cap-notify echo-message labeled-response message-tags sasl=PLAIN server-time standard-replies znc.in/self-message"; got != want {
		t.Errorf("CAP LS 302 = %q, want %q", got, want)
	}
	c.send("CAP LS")
	m = c.expect("CAP LS", isCmd("CAP"))
	if got := m.Trailing(); !strings.Contains(got, " sasl ") {
		t.Errorf("CAP LS without 302 = %q, want sasl without a value", got)
	}
	for _, hidden := range []string{"sts", "draft/multiline", "draft/chathistory", "soju.im/bouncer-networks", "znc.in/playback", "chghost"} {
		c.send("CAP REQ :server-time " + hidden)
		m = c.expect("NAK", func(m *irc.Message) bool { return m.Command == "CAP" && m.Param(1) != "LS" })
		if m.Param(1) != "NAK" {
			t.Errorf("REQ %s: %s", hidden, m.Param(1))
		}
	}
	c.send("CAP REQ :" + allCaps)
	c.expect("ACK", func(m *irc.Message) bool { return m.Command == "CAP" && m.Param(1) == "ACK" })
	c.send("CAP REQ :-batch")
	c.expect("ACK", func(m *irc.Message) bool {
		return m.Command == "CAP" && m.Param(1) == "ACK" && m.Trailing() == "-batch"
	})
	c.send("CAP LIST")
	m = c.expect("LIST", func(m *irc.Message) bool { return m.Command == "CAP" && m.Param(1) == "LIST" })
	if got, want := m.Trailing(), "cap-notify echo-message labeled-response message-tags server-time znc.in/self-message"; got != want {
		t.Errorf("CAP LIST = %q, want %q", got, want)
	}
	c.send("PASS :"+testPassword, "NICK x", "USER x 0 * :x", "CAP END")
	m = c.expect("001", isCmd("001"))
	if _, ok := parseServerTime(m.Tags["time"]); !ok {
		t.Errorf("001 without server-time: %q", m.Tags["time"])
	}
	// After registration.
	c.send("CAP REQ :sts")
	c.expect("NAK", func(m *irc.Message) bool { return m.Command == "CAP" && m.Param(1) == "NAK" })
	c.send("CAP REQ :batch")
	c.expect("ACK", func(m *irc.Message) bool { return m.Command == "CAP" && m.Param(1) == "ACK" })
	c.send("CAP LS 302")
	m = c.expect("CAP LS", func(m *irc.Message) bool { return m.Command == "CAP" && m.Param(1) == "LS" })
	if strings.Contains(m.Trailing(), "sts") || strings.Contains(m.Trailing(), "chathistory") || strings.Contains(m.Trailing(), "multiline") {
		t.Errorf("hidden capability offered: %q", m.Trailing())
	}
}

// TestEchoMessageWithFragments: a long private message becomes many OTR
// fragments upstream; the sender (echo-message) sees exactly one echo,
// in plaintext, labeled; a second client (znc.in/self-message) sees one
// mirror.
func TestEchoMessageWithFragments(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2101)
	c1 := registerClient(t, env.addr, "alice", "echo-message", "labeled-response", "batch", "message-tags", "server-time")
	c2 := registerClient(t, env.addr, "alice", "znc.in/self-message")
	bob.secure(c1)
	text := strings.Repeat("fragment me please ", 24) // 456 bytes
	before := len(fn.sentTo("bob"))
	c1.send("@label=L1 PRIVMSG bob :" + text)
	bob.expectText("fragment me please")
	if n := len(fn.sentTo("bob")) - before; n < 3 {
		t.Fatalf("only %d line(s) upstream; the test needs fragments", n)
	}
	m := c1.expect("echo", privmsgFrom("alice", "fragment"))
	if m.Trailing() != text || m.Param(0) != "bob" || m.Tags["label"] != "L1" {
		t.Errorf("echo %q to %q label %q", m.Trailing(), m.Param(0), m.Tags["label"])
	}
	m = c2.expect("mirror", privmsgFrom("alice", "fragment"))
	if m.Trailing() != text || len(m.Tags) != 0 {
		t.Errorf("mirror %q tags %v", m.Trailing(), m.Tags)
	}
	fn.sync(c1)
	fn.sync(c2)
	for i, c := range []*testConn{c1, c2} {
		echoes := 0
		for _, l := range c.seenLines() {
			if strings.Contains(l, "?OTR") {
				t.Errorf("client %d saw OTR data: %q", i+1, l)
			}
			if strings.Contains(l, "fragment me") {
				echoes++
			}
		}
		if echoes != 1 {
			t.Errorf("client %d saw %d echoes, want exactly 1", i+1, echoes)
		}
	}
}

// TestLabeledResponse: otrbnc answers labels itself: a *otr reply in a
// labeled-response batch, a PONG, an ACK for a message with no echo.
func TestLabeledResponse(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	fn.addPeer("bob", testKey(t, 1), 0x2102)
	c := registerClient(t, env.addr, "alice", "labeled-response", "batch")
	c.send("@label=a1 PRIVMSG *otr :help start")
	start := c.expect("batch start", isCmd("BATCH"))
	if start.Tags["label"] != "a1" || start.Param(1) != "labeled-response" || !strings.HasPrefix(start.Param(0), "+") {
		t.Fatalf("batch start %v", start)
	}
	ref := start.Param(0)[1:]
	var lines []*irc.Message
	for {
		m := c.expect("batch line", func(*irc.Message) bool { return true })
		if m.Command == "BATCH" {
			if m.Param(0) != "-"+ref {
				t.Errorf("batch end %v", m)
			}
			break
		}
		if m.Tags["batch"] != ref {
			t.Errorf("line outside the batch: %v", m)
		}
		lines = append(lines, m)
	}
	if len(lines) < 2 || !strings.Contains(lines[0].Trailing(), "usage: start <nick>") {
		t.Errorf("batch lines %v", lines)
	}
	c.send("@label=a2 PRIVMSG *otr :version")
	m := c.expect("single labeled reply", serviceSays("otrbnc"))
	if m.Tags["label"] != "a2" || m.Tags["batch"] != "" {
		t.Errorf("single reply tags %v", m.Tags)
	}
	c.send("@label=a3 PING :x")
	m = c.expect("PONG", isCmd("PONG"))
	if m.Tags["label"] != "a3" {
		t.Errorf("PONG tags %v", m.Tags)
	}
	c.send("@label=a4 PRIVMSG bob :hi") // no echo-message: an ACK
	m = c.expect("ACK", isCmd("ACK"))
	if m.Tags["label"] != "a4" {
		t.Errorf("ACK tags %v", m.Tags)
	}
	// Without the capability, no labels.
	c2 := registerClient(t, env.addr, "alice")
	c2.send("@label=b1 PRIVMSG *otr :version")
	m = c2.expect("unlabeled reply", serviceSays("otrbnc"))
	if len(m.Tags) != 0 {
		t.Errorf("tags for a client without capabilities: %v", m.Tags)
	}
}

// TestClientTagsToOTRPeers: client-only tags never travel in clear next
// to an encrypted message unless client_tags is pass; TAGMSG to such a
// peer is dropped; tags to channels and on plaintext messages pass.
func TestClientTagsToOTRPeers(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "message-tags server-time batch", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2103)
	carol := fn.addPeer("carol", testKey(t, 2), 0x2104)
	c := registerClient(t, env.addr, "alice", "message-tags", "echo-message")

	// carol: no session, policy manual: the message is in clear, so are
	// its tags.
	c.send("@+draft/reply=m1;+draft/react=x PRIVMSG carol :plain hello")
	got := <-carol.got
	if got.Tags["+draft/reply"] != "m1" || got.Trailing() != "plain hello" {
		t.Errorf("carol got %v", got)
	}
	bob.secure(c)
	c.send("@+typing=active TAGMSG bob", "@+draft/reply=m2 PRIVMSG bob :secret hello")
	bob.expectText("secret hello")
	c.send("@+typing=active TAGMSG #room")
	fn.sync(c)
	for _, m := range fn.sentTo("bob") {
		if len(m.Tags) != 0 || m.Command == "TAGMSG" {
			t.Errorf("tags went to bob in clear: %v", m)
		}
	}
	found := false
	for _, l := range fn.sent() {
		if strings.Contains(l, "+typing=active") && strings.Contains(l, "TAGMSG #room") {
			found = true
		}
	}
	if !found {
		t.Errorf("TAGMSG to a channel not forwarded: %q", fn.sent())
	}
	// The echo keeps the client's tags (they never left otrbnc).
	cmd(c, "set client_tags pass", "client_tags = pass")
	before := len(fn.sentTo("bob"))
	c.send("@+draft/reply=m3 PRIVMSG bob :tagged")
	bob.expectText("tagged")
	fn.sync(c)
	lines := fn.sentTo("bob")[before:]
	if len(lines) == 0 || lines[0].Tags["+draft/reply"] != "m3" {
		t.Errorf("client_tags pass: first line %v", lines)
	}
	for _, m := range lines[1:] {
		if len(m.Tags) != 0 {
			t.Errorf("tags beyond the first line: %v", m)
		}
	}
}

// TestDetachAttachReplay: events and private messages that happen while
// no client is attached are replayed with their time, and a pending SMP
// question is asked again.
func TestDetachAttachReplay(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2105)
	c := registerClient(t, env.addr, "alice")
	c.send("QUIT")
	c.expectClosed()
	waitDetached(t, env)

	bob.start()
	bob.expectEvent(otrcore.EventGoneSecure)
	bob.say("while you were away")
	bob.do(func(cv *otrcore.Conversation) (otrcore.Result, error) {
		return cv.StartSMP(time.Now(), "Where did we meet?", true, "pier")
	})
	var kept int
	deadline := time.Now().Add(testTimeout)
	for kept < 1 {
		env.inNetwork(func(n *network) {
			if p := n.lookupPeer("bob"); p != nil && p.conv.Status().SMPAwaitingSecret {
				kept = keptMessages(n)
			}
		})
		if time.Now().After(deadline) {
			t.Fatal("SMP request not received")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A client with server-time gets the original times as tags.
	c1 := registerClient(t, env.addr, "alice", "server-time")
	m := c1.expect("gone secure replayed", serviceSays("private conversation with bob started"))
	if _, ok := parseServerTime(m.Tags["time"]); !ok || strings.HasPrefix(m.Trailing(), "[0") {
		t.Errorf("replayed event %v", m)
	}
	// In the order they happened.
	m = c1.expect("private message replayed", privmsgFrom("bob", "while you were away"))
	if m.Trailing() != "while you were away" || m.Tags["time"] == "" {
		t.Errorf("replayed message %v", m)
	}
	c1.expect("SMP request replayed", serviceSays(`asks: "Where did we meet?"`))
	c1.expect("pending SMP question repeated on attach", serviceSays(`asks: "Where did we meet?" — answer with: /msg *otr auth bob <answer>`))

	// The next client (nothing was buffered since) is still reminded of
	// the question, and a client without server-time sees times in text.
	c1.send("QUIT")
	c1.expectClosed()
	waitDetached(t, env)
	bob.raw("NOTICE alice :a notice while away")
	for kept = 0; kept == 0; {
		env.inNetwork(func(n *network) { kept = keptMessages(n) })
		if time.Now().After(deadline) {
			t.Fatal("notice not kept")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c2 := registerClient(t, env.addr, "alice")
	m = c2.expect("notice replayed with its time", func(m *irc.Message) bool {
		return m.Command == "NOTICE" && strings.Contains(m.Trailing(), "a notice while away")
	})
	if !strings.HasPrefix(m.Trailing(), "[") || len(m.Tags) != 0 {
		t.Errorf("replay to a client without server-time: %v", m)
	}
	c2.expect("pending SMP question repeated", serviceSays("Where did we meet?"))
	cmd(c2, "auth bob pier", "answer sent")
	bob.expectEvent(otrcore.EventSMPSucceeded)
}

func waitDetached(t *testing.T, env *proxyEnv) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for attached := 1; attached > 0; {
		env.inNetwork(func(n *network) { attached = len(n.downstreams) })
		if time.Now().After(deadline) {
			t.Fatal("client still attached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHistoryNeverFedToEngine: playback from an upstream bouncer (a
// chathistory batch, old time tags) is shown as a placeholder and never
// reaches the engine: nothing is sent to the peer because of it.
func TestHistoryNeverFedToEngine(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "server-time batch message-tags", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2106)
	c := registerClient(t, env.addr, "alice", "server-time", "batch", "message-tags")
	old := formatServerTime(time.Now().Add(-time.Hour))
	data := "?OTR:AAMDAAABAQAAEAAAAAAAAQAAAAEAAAABAgAAAAAAAAAAAAAAAUEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=." // a well-formed v3 data message
	p := ":" + bob.prefix + " PRIVMSG alice :"
	fn.s.send(
		"BATCH +h1 chathistory alice",
		"@batch=h1;time="+old+";msgid=x1 "+p+data,
		"@batch=h1;time="+old+" "+p+"?OTRv23? query from the past",
		"@batch=h1;time="+old+" "+p+"plain words from the past",
		"BATCH -h1",
		"@time="+old+" "+p+"?OTR|00000101|00001000,00001,00002,AAMDpiece,",
		"@time="+old+" "+p+"?OTR|00000101|00001000,00002,00002,morepiece,",
		"@time="+old+" "+p+"?OTR Error: an old error",
		"BATCH +z1 znc.in/playback",
		"@batch=z1 "+p+data,
		"BATCH -z1",
	)
	fn.sync(c)
	if got := fn.sentTo("bob"); len(got) != 0 {
		t.Errorf("otrbnc answered history: %v", got)
	}
	var placeholders, plain int
	for _, l := range c.seenLines() {
		m, err := parseLine(l)
		if err != nil || m.Command != "PRIVMSG" || m.Prefix.Name != "bob" {
			if strings.Contains(l, "?OTR") || strings.Contains(l, "BATCH") && strings.Contains(l, "chathistory") {
				t.Errorf("client saw %q", l)
			}
			continue
		}
		switch m.Trailing() {
		case historyPlaceholder:
			placeholders++
			if m.Tags["time"] != old && m.Tags["batch"] == "" {
				// Playback without time tags gets the time it arrived.
				if _, ok := parseServerTime(m.Tags["time"]); !ok {
					t.Errorf("placeholder without time: %v", m)
				}
			}
		case "plain words from the past":
			plain++
			if m.Tags["time"] != old {
				t.Errorf("history time lost: %v", m)
			}
		default:
			t.Errorf("client saw %q", l)
		}
	}
	if placeholders != 3 || plain != 1 {
		t.Errorf("%d placeholders and %d plaintext lines, want 3 and 1", placeholders, plain)
	}
	// Live traffic still works.
	bob.secure(c)
	bob.say("live")
	c.expect("live text", privmsgFrom("bob", "live"))
}

// TestNickChangeAndKeyWarnings: a conversation follows a peer's nick
// change; a nick presenting a different key, and a known key under a new
// nick, are reported.
func TestNickChangeAndKeyWarnings(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2107)
	c := registerClient(t, env.addr, "alice")
	bob.secure(c)
	cmd(c, "trust bob "+testKey(t, 1).Fingerprint().String(), "now trusted")

	fn.s.send(":" + bob.prefix + " NICK Bobby")
	c.expect("NICK", isCmd("NICK"))
	c.expect("conversation follows", serviceSays("[Bobby] bob is now known as Bobby; the private conversation follows the nick"))
	fn.mu.Lock()
	fn.peers["bobby"] = bob
	fn.mu.Unlock()
	bob.prefix = "Bobby!bob@peer.test"
	bob.say("still me")
	m := c.expect("decrypted from the new nick", privmsgFrom("Bobby", "still me"))
	if m.Trailing() != "still me" {
		t.Errorf("got %q", m.Trailing())
	}
	cmd(c, "status bobby", "encrypted OTRv3, verified")

	// Someone else takes the nick bob with another key.
	mallory := fn.addPeer("bob", testKey(t, 2), 0x2108)
	mallory.start()
	m = c.expect("key change warning", serviceSays("WARNING: bob now uses a DIFFERENT key: "+testKey(t, 2).Fingerprint().String()))
	if !strings.Contains(m.Trailing(), testKey(t, 1).Fingerprint().String()+" (verified)") {
		t.Errorf("warning lacks the old key: %q", m.Trailing())
	}
	// Bob's key under a brand-new nick.
	c.expect("gone secure with mallory", serviceSays("private conversation with bob started (OTRv3, UNVERIFIED)"))
	carol := fn.addPeer("carol", testKey(t, 1), 0x2109)
	carol.start()
	c.expect("known key under a new nick", serviceSays("this key was seen before under the nick(s) bob; it is verified (by fingerprint)"))
	c.expect("gone secure with carol, verified", serviceSays("private conversation with carol started (OTRv3, verified)"))
}
