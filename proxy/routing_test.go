package proxy

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"
)

// expectOther waits for a line otrbnc sent to the fakeNet that no peer
// consumed, matching cmd and first parameter.
func (fn *fakeNet) expectOther(cmd, param string) *irc.Message {
	fn.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case m := <-fn.other:
			if m.Command == cmd && (param == "" || m.Param(0) == param) {
				return m
			}
		case <-timer.C:
			fn.t.Fatalf("otrbnc did not send %s %s", cmd, param)
			return nil
		}
	}
}

// saw reports whether c has received a line containing sub.
func saw(c *testConn, sub string) bool {
	for _, l := range c.seenLines() {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// TestSelfMessageOnlyToClientsThatAsk: what one client sends reaches the
// others only if they negotiated echo-message or znc.in/self-message
// (HexChat, with neither, would file it under our own nick), and the
// sender itself only with echo-message; the same holds for our own
// messages echoed by the network.
func TestSelfMessageOnlyToClientsThatAsk(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	echo := registerClient(t, env.addr, "alice", "echo-message")
	plain := registerClient(t, env.addr, "alice")
	self := registerClient(t, env.addr, "alice", "znc.in/self-message")

	echo.send("PRIVMSG carol :from-echo-client")
	echo.expect("own echo", privmsgFrom("alice", "from-echo-client"))
	self.expect("mirror on the self-message client", privmsgFrom("alice", "from-echo-client"))

	plain.send("PRIVMSG carol :from-plain-client")
	echo.expect("mirror on the echo-message client", privmsgFrom("alice", "from-plain-client"))
	self.expect("mirror on the self-message client", privmsgFrom("alice", "from-plain-client"))

	self.send("PRIVMSG #chan :from-self-client")
	echo.expect("channel mirror", privmsgFrom("alice", "from-self-client"))

	fn.s.send(":alice!~alice@host.test PRIVMSG carol :from-elsewhere")
	echo.expect("network's self-message", privmsgFrom("alice", "from-elsewhere"))
	self.expect("network's self-message", privmsgFrom("alice", "from-elsewhere"))

	for _, c := range []*testConn{echo, plain, self} {
		fn.sync(c)
	}
	for _, s := range []string{"from-echo-client", "from-plain-client", "from-self-client", "from-elsewhere"} {
		if saw(plain, s) {
			t.Errorf("the client without echo-message or self-message was shown our own %q", s)
		}
	}
	if saw(self, "from-self-client") {
		t.Error("the sender without echo-message got its own message back")
	}
	for _, want := range []string{"carol from-echo-client", "carol from-plain-client"} {
		if n := countSeen(fn.sent(), want); n != 1 {
			t.Errorf("%q sent %d times upstream", want, n)
		}
	}
}

func countSeen(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// TestRepliesGoToTheAsker: WHOIS replies, a 401 for an unknown nick and a
// user mode change reach only the client whose command caused them;
// numerics nobody asked for reach every client.
func TestRepliesGoToTheAsker(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c1 := registerClient(t, env.addr, "alice")
	c2 := registerClient(t, env.addr, "alice")

	c1.send("WHOIS bob")
	fn.expectOther("WHOIS", "bob")
	c2.send("WHOIS Nobody") // irssi's automatic WHOIS of a query
	fn.expectOther("WHOIS", "Nobody")
	// The network answers in order; nicks come back in its case.
	fn.s.send(
		":srv 311 alice bob ~bob peer.test * :Bob Example",
		":srv 319 alice bob :#chan",
		":srv 318 alice bob :End of /WHOIS list",
		":srv 401 alice nobody :No such nick",
		":srv 318 alice nobody :End of /WHOIS list",
	)
	c1.expect("WHOIS reply", func(m *irc.Message) bool { return m.Command == "318" && m.Param(1) == "bob" })
	c2.expect("401 for the unknown nick", func(m *irc.Message) bool { return m.Command == "401" && m.Param(1) == "nobody" })
	c2.expect("end of its WHOIS", func(m *irc.Message) bool { return m.Command == "318" && m.Param(1) == "nobody" })

	c2.send("MODE alice +i")
	fn.expectOther("MODE", "alice")
	fn.s.send(":alice!~alice@host.test MODE alice :+i")
	c2.expect("its mode change", func(m *irc.Message) bool { return m.Command == "MODE" && m.Trailing() == "+i" })

	// Unsolicited: a user mode set by the network, a numeric nobody
	// asked for, a 401 matching no command.
	fn.s.send(
		":srv MODE alice :+r",
		":srv 042 alice ABCDEF :your unique ID",
		":srv 401 alice ghost :No such nick",
	)
	for _, c := range []*testConn{c1, c2} {
		c.expect("unsolicited mode", func(m *irc.Message) bool { return m.Command == "MODE" && m.Trailing() == "+r" })
		c.expect("unsolicited numeric", isCmd("042"))
		c.expect("unmatched 401", func(m *irc.Message) bool { return m.Command == "401" && m.Param(1) == "ghost" })
	}
	fn.sync(c1)
	fn.sync(c2)
	for _, s := range []string{" 401 alice nobody ", " 318 alice nobody ", " MODE alice +i"} {
		if saw(c1, s) {
			t.Errorf("c1 was shown %q, a reply to c2", s)
		}
	}
	if !saw(c2, " MODE alice +i") {
		t.Error("the test looks for the wrong line")
	}
	for _, s := range []string{" 311 alice bob ", " 319 alice bob ", " 318 alice bob "} {
		if saw(c2, s) {
			t.Errorf("c2 was shown %q, a reply to c1", s)
		}
	}
}

// TestRepliesByFamilyAndTarget: replies are matched by command family
// and target, not just by order: a NAMES and a channel MODE query asked
// by different clients get their own replies; errors naming a target go
// to the client whose command named it; ERR_UNKNOWNCOMMAND goes to who
// sent the command; a reply to a client that has left reaches nobody.
func TestRepliesByFamilyAndTarget(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c1 := registerClient(t, env.addr, "alice")
	c2 := registerClient(t, env.addr, "alice")

	c1.send("NAMES #one")
	fn.expectOther("NAMES", "#one")
	c2.send("MODE #two")
	fn.expectOther("MODE", "#two")
	c2.send("KICK #two mallory")
	fn.expectOther("KICK", "#two")
	c1.send("FROB x")
	fn.expectOther("FROB", "x")
	fn.s.send(
		":srv 324 alice #two +nt",
		":srv 353 alice = #one :alice bob",
		":srv 366 alice #one :End of /NAMES list",
		":srv 329 alice #two 1700000000",
		":srv 482 alice #two :You're not channel operator",
		":srv 421 alice FROB :Unknown command",
	)
	c1.expect("NAMES reply", isCmd("366"))
	c1.expect("unknown command", isCmd("421"))
	c2.expect("MODE reply", isCmd("324"))
	c2.expect("creation time", isCmd("329"))
	c2.expect("KICK error", isCmd("482"))

	// c3 asks and leaves before the answer.
	c3 := registerClient(t, env.addr, "alice")
	c3.send("WHOIS carol")
	fn.expectOther("WHOIS", "carol")
	c3.send("QUIT")
	c3.expectClosed()
	waitClients(t, env, 2)
	fn.s.send(":srv 311 alice carol ~c peer.test * :Carol", ":srv 318 alice carol :End")
	fn.sync(c1)
	fn.sync(c2)
	for _, s := range []string{" 324 ", " 329 ", " 482 ", "carol"} {
		if saw(c1, s) {
			t.Errorf("c1 was shown %q", s)
		}
	}
	for _, s := range []string{" 353 ", " 366 ", " 421 ", "carol"} {
		if saw(c2, s) {
			t.Errorf("c2 was shown %q", s)
		}
	}
	env.inNetwork(func(n *network) {
		for _, p := range n.pending {
			if p.cmd != "MOTD" { // fn.sync's, never answered
				t.Errorf("still pending: %s %v", p.cmd, p.targets)
			}
		}
	})
}

// TestRepliesByLabel: with labeled-response from the network, otrbnc
// labels what it passes on and routes by label, even a lone 401 that no
// end of WHOIS follows; lines every client needs (a JOIN and its names
// list) still reach every client.
func TestRepliesByLabel(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "batch labeled-response message-tags", nil, Options{})
	c1 := registerClient(t, env.addr, "alice")
	c2 := registerClient(t, env.addr, "alice")

	c1.send("WHOIS ghost")
	l1 := fn.expectOther("WHOIS", "ghost").Tags["label"]
	c2.send("WHOIS bob")
	l2 := fn.expectOther("WHOIS", "bob").Tags["label"]
	c2.send("JOIN #new")
	l3 := fn.expectOther("JOIN", "#new").Tags["label"]
	c1.send("AWAY")
	l4 := fn.expectOther("AWAY", "").Tags["label"]
	c2.send("STATS u") // no reply family: only a label can tell
	l5 := fn.expectOther("STATS", "u").Tags["label"]
	if l1 == "" || l2 == "" || l3 == "" || l4 == "" || l5 == "" || l1 == l2 {
		t.Fatalf("labels %q %q %q %q %q", l1, l2, l3, l4, l5)
	}
	fn.s.send(
		"@label="+l1+" :srv 401 alice ghost :No such nick",
		"@label="+l2+" BATCH +w labeled-response",
		"@batch=w :srv 311 alice bob ~bob peer.test * :Bob",
		"@batch=w :srv 318 alice bob :End of /WHOIS list",
		"BATCH -w",
		"@label="+l3+" BATCH +j labeled-response",
		"@batch=j :alice!~alice@host.test JOIN #new",
		"@batch=j :srv 353 alice = #new :alice bob",
		"@batch=j :srv 366 alice #new :End of /NAMES list",
		"BATCH -j",
		"@label="+l4+" ACK",
		"@label="+l5+" BATCH +s labeled-response",
		"@batch=s :srv 242 alice :Server Up 3 days",
		"@batch=s :srv 219 alice u :End of /STATS report",
		"BATCH -s",
	)
	c1.expect("lone labeled 401", func(m *irc.Message) bool { return m.Command == "401" && m.Param(1) == "ghost" })
	c2.expect("WHOIS in a batch", func(m *irc.Message) bool { return m.Command == "318" && m.Param(1) == "bob" })
	for _, c := range []*testConn{c1, c2} {
		c.expect("JOIN", func(m *irc.Message) bool { return m.Command == "JOIN" && m.Param(0) == "#new" })
		c.expect("names", isCmd("366"))
	}
	c2.expect("STATS reply", isCmd("219"))
	fn.sync(c1)
	fn.sync(c2)
	if saw(c2, "ghost") || saw(c1, " 311 ") || saw(c1, " 318 ") || saw(c1, "Server Up") {
		t.Error("a labeled reply reached the other client")
	}
	for _, c := range []*testConn{c1, c2} {
		if saw(c, "ACK") || saw(c, "label=otrbnc") || saw(c, "BATCH") {
			t.Error("a client was shown otrbnc's labels, batches or ACK")
		}
	}
	env.inNetwork(func(n *network) {
		for _, p := range n.pending {
			if p.cmd != "MOTD" {
				t.Errorf("still pending: %s %v", p.cmd, p.targets)
			}
		}
	})
}

// TestPendingBounded: a network that never answers cannot grow the
// pending list beyond its bound, and entries expire.
func TestPendingBounded(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	env, fn := startFakeNet(t, "", nil, Options{Now: clock.now})
	c := registerClient(t, env.addr, "alice")
	var lines []string
	for i := range maxPending + 100 {
		lines = append(lines, "WHOIS n"+strconv.Itoa(i))
	}
	c.send(lines...)
	for range len(lines) {
		fn.expectOther("WHOIS", "")
	}
	env.inNetwork(func(n *network) {
		if len(n.pending) > maxPending {
			t.Errorf("%d pending commands, bound %d", len(n.pending), maxPending)
		}
	})
	// The oldest were dropped: their replies go to every client.
	c2 := registerClient(t, env.addr, "alice")
	fn.s.send(":srv 318 alice n0 :End of /WHOIS list")
	c2.expect("reply to a forgotten command", isCmd("318"))

	clock.advance(pendingTimeout + time.Second)
	c.send("WHOIS last")
	fn.expectOther("WHOIS", "last")
	env.inNetwork(func(n *network) {
		if len(n.pending) != 1 || n.pending[0].targets[0] != "last" {
			t.Errorf("after expiry: %d pending", len(n.pending))
		}
	})
}

// waitClients waits until count clients are attached.
func waitClients(t *testing.T, env *proxyEnv, count int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		var attached int
		env.inNetwork(func(n *network) { attached = len(n.downstreams) })
		if attached == count {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d clients attached, want %d", attached, count)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRepliesToAJoinOfSeveralChannels: each channel of a JOIN ends on
// its own (an error, or our JOIN, which every client sees); the command
// is over when all have.
func TestRepliesToAJoinOfSeveralChannels(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c1 := registerClient(t, env.addr, "alice")
	c2 := registerClient(t, env.addr, "alice")
	c1.send("JOIN #a,#b")
	fn.expectOther("JOIN", "#a,#b")
	fn.s.send(":srv 474 alice #a :Cannot join channel (+b)", ":alice!~alice@host.test JOIN #b")
	c1.expect("its error", isCmd("474"))
	c2.expect("the JOIN", isCmd("JOIN"))
	env.inNetwork(func(n *network) {
		for _, p := range n.pending {
			if p.cmd == "JOIN" {
				t.Errorf("JOIN still pending for %v", p.targets)
			}
		}
	})
	fn.s.send(":srv 474 alice #a :Cannot join channel (+b)") // nobody asked now
	c2.expect("unsolicited error", isCmd("474"))
	fn.sync(c2)
	if got := countSeen(c2.seenLines(), " 474 "); got != 1 {
		t.Errorf("c2 saw %d errors, want only the unsolicited one", got)
	}
}

// FuzzReplyRouting feeds arbitrary lines from the network to a network
// with pending commands of two clients: nothing panics, the list stays
// bounded, and a line reaches at most every client once.
func FuzzReplyRouting(f *testing.F) {
	for _, s := range []string{
		":srv 311 alice bob ~b h * :Bob", ":srv 318 alice bob :End", ":srv 401 alice", ":srv 421 alice",
		":srv 353 alice = #c :a b", ":srv 366 alice #c", ":srv 474 alice #a :banned", ":alice JOIN #b",
		":srv FAIL", ":srv FAIL JOIN X :no", ":alice MODE alice :+i", ":srv 329", "@label=otrbnc1 :srv 401 alice x",
		"@label=otrbnc2 BATCH +x labeled-response", "@batch=x :srv 311 alice a", "BATCH -x", "@label=otrbnc3 ACK",
		":srv 352 alice", ":srv 315", ":srv 322 alice #c 3 :t", ":alice NICK bob", ":srv 433 * bob :in use",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		sf := newStateFuzz(t)
		dc2 := &downstream{conn: detachedConn(), id: 2, nick: "alice", caps: map[string]bool{}, logger: sf.n.logger, now: func() time.Time { return sf.clock }}
		sf.n.handleEvent(evDownstreamAttach{dc: dc2})
		sf.n.upCaps["labeled-response"] = true
		for _, c := range []string{"WHOIS bob", "MODE #c", "NAMES #c", "MODE alice +i"} {
			sf.client(c)
		}
		sf.n.upCaps["labeled-response"] = false
		m, err := parseLine(line)
		if err != nil {
			return
		}
		for _, c := range []string{"JOIN #a,#b", "NICK bob", "FROB", "WHO", "LIST"} {
			sf.n.handleEvent(evDownstreamMsg{dc: dc2, m: mustParse(t, c)})
		}
		for _, q := range []*sendQueue{sf.dc.conn.q, dc2.conn.q} {
			for {
				if _, _, ok := q.pop(); !ok {
					break
				}
			}
		}
		sf.n.handleEvent(evUpstreamMsg{uc: sf.up, m: m})
		if len(sf.n.pending) > maxPending {
			t.Fatalf("%d pending", len(sf.n.pending))
		}
		for _, q := range []*sendQueue{sf.dc.conn.q, dc2.conn.q} {
			count := 0
			for {
				lines, _, ok := q.pop()
				if !ok {
					break
				}
				for _, l := range lines {
					if strings.HasSuffix(l, strings.TrimPrefix(line, "@")) {
						count++
					}
				}
			}
			if count > 1 {
				t.Fatalf("%q reached a client %d times", line, count)
			}
		}
	})
}

func mustParse(t *testing.T, line string) *irc.Message {
	t.Helper()
	m, err := parseLine(line)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
