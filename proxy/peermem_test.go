package proxy

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"otrbnc/otrcore"
	"otrbnc/proxy/config"
)

// TestPeersKeepNoLines: what otrbnc keeps about a nick (its key, nick and
// prefix) has memory of its own, not the line it was parsed from: 20,000
// strangers would otherwise keep 20,000 whole lines alive, outside the
// peer memory budget (seen in the memory-bound benchmark once nick
// folding stopped copying names that were already folded). The lines here
// carry an 8,000-byte tag, so a kept line shows in the heap. Not parallel:
// it measures the heap.
func TestPeersKeepNoLines(t *testing.T) {
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	tag := "@x=" + strings.Repeat("t", 8000) + " "
	send := func(from, to int) {
		for i := from; i < to; i++ {
			fn.s.send(fmt.Sprintf("%s:n%04d!u%04d@host.example PRIVMSG alice :hello", tag, i, i))
		}
		c.expect("the last line", privmsgFrom(fmt.Sprintf("n%04d", to-1), "hello"))
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	send(0, 20) // warm up
	before := heap()
	const nicks = 300
	send(20, 20+nicks)
	after := heap()
	env.inNetwork(func(n *network) {
		if len(n.otr.peers) < 20+nicks {
			t.Fatalf("%d conversations, want %d", len(n.otr.peers), 20+nicks)
		}
	})
	if per := int64(after-before) / nicks; per > 4096 {
		t.Errorf("each new nick keeps %d bytes of heap; a whole line is about 8,050", per)
	}
}

// TestFragmentTagsCounted: the tags of a first fragment, kept until the
// message is whole, count in the peer memory account (a hostile server
// can put 8 KB of tags on every line).
func TestFragmentTagsCounted(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	fn.s.send("@x=" + strings.Repeat("t", 8000) + " :erin!e@h PRIVMSG alice :?OTR|00001234|00000000,00001,00003,AAMD,")
	fn.sync(c)
	env.inNetwork(func(n *network) {
		p := n.lookupPeer("erin")
		if p == nil {
			t.Fatal("no conversation with erin")
		}
		if p.mem < 8000 {
			t.Errorf("erin's account is %d bytes with 8,000 bytes of tags kept", p.mem)
		}
	})
}

// tick runs the network's timers once, as its ticker does.
func (e *proxyEnv) tick() {
	e.t.Helper()
	e.inNetwork(func(n *network) { n.otrTick(); n.out.flush() })
}

// hasPeer reports whether the network keeps a conversation with nick.
func (e *proxyEnv) hasPeer(nick string) bool {
	e.t.Helper()
	has := false
	e.inNetwork(func(n *network) { has = n.lookupPeer(nick) != nil })
	return has
}

// TestAddressedPeerExpires: the conversation of a nick the user wrote to
// in clear is forgotten once the user has not addressed the nick for the
// engagement time and it has been idle for peerIdle; before, otrbnc kept
// every such conversation for good (issue 14, target 3: memory returns
// when peers go away).
func TestAddressedPeerExpires(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	env, fn := startFakeNet(t, "", nil, Options{Now: clock.now})
	c := registerClient(t, env.addr, "alice")
	c.send("PRIVMSG carol :hello in clear")
	fn.sync(c)
	if !env.hasPeer("carol") {
		t.Fatal("no conversation with carol after writing to her")
	}
	clock.advance(peerIdle + time.Minute)
	env.tick()
	if !env.hasPeer("carol") {
		t.Fatalf("carol's conversation was forgotten %v after the user wrote to her, within the engagement time", peerIdle+time.Minute)
	}
	clock.advance(engagement)
	env.tick()
	if env.hasPeer("carol") {
		t.Fatal("carol's conversation is kept although it holds nothing and the user has not written to her for 40 minutes")
	}
	cmd(c, "status carol", "[carol] no conversation")
}

// TestExpiredPeerStaysGuarded: forgetting the idle conversation of a nick
// whose policy requires encryption changes nothing about what otrbnc
// sends: the next message is queued again, never sent in clear (I1).
func TestExpiredPeerStaysGuarded(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	env, fn := startFakeNet(t, "", func(c *config.Config) {
		c.Network[0].Peers = map[string]config.PeerConfig{"dave": {Policy: "always"}}
	}, Options{Now: clock.now})
	c := registerClient(t, env.addr, "alice")
	c.send("PRIVMSG dave :first secret")
	c.expect("queued", serviceSays("queued"))
	cmd(c, "discard dave", "dave")
	clock.advance(engagement + peerIdle)
	env.tick()
	if env.hasPeer("dave") {
		t.Fatal("dave's conversation, with nothing queued and no session, was not forgotten")
	}
	c.send("PRIVMSG dave :second secret")
	c.expect("queued again", serviceSays("queued"))
	fn.sync(c)
	for _, m := range fn.sentTo("dave") {
		if strings.Contains(m.Trailing(), "secret") {
			t.Errorf("otrbnc sent dave %q in clear", m.String())
		}
	}
}

// TestFinishedPeerKept: a conversation the peer ended is never forgotten
// for being idle: it refuses the user's messages until the user runs
// finish or start, and a conversation made anew would send them in clear
// under the default policy.
func TestFinishedPeerKept(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	env, fn := startFakeNet(t, "", nil, Options{Now: clock.now})
	c := registerClient(t, env.addr, "alice")
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	bob.secure(c)
	c.send("PRIVMSG bob :hello")
	bob.expectText("hello")
	bob.do(func(cv *otrcore.Conversation) (otrcore.Result, error) { return cv.End(time.Now()), nil })
	c.expect("peer finished", serviceSays("ended the private conversation"))
	clock.advance(24 * time.Hour)
	env.tick()
	if !env.hasPeer("bob") {
		t.Fatal("the conversation bob finished was forgotten")
	}
	c.send("PRIVMSG bob :not for clear text")
	c.expect("refused", serviceSays("NOT sent"))
	fn.sync(c)
	for _, m := range fn.sentTo("bob") {
		if strings.Contains(m.Trailing(), "not for clear text") {
			t.Errorf("otrbnc sent bob %q in clear", m.String())
		}
	}
}

// TestForgottenStrangerSessionStaysGuarded: a private conversation a
// stranger started, forgotten after peerIdle of silence, must not turn
// into clear text behind the user's back. The user saw "private
// conversation with eve started" and never saw it end; otrbnc used to
// forget it silently, and the user's next message to eve went out in
// clear (policy manual). Now the user is told, and that message is
// refused until the user runs start or finish.
func TestForgottenStrangerSessionStaysGuarded(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	env, fn := startFakeNet(t, "", nil, Options{Now: clock.now})
	c := registerClient(t, env.addr, "alice")
	eve := fn.addPeer("eve", testKey(t, 2), 0x5005)
	eve.start()
	c.expect("gone secure", serviceSays("private conversation with eve started"))
	clock.advance(peerIdle + time.Minute)
	env.tick()
	if env.hasPeer("eve") {
		t.Fatal("the idle stranger's conversation was kept; this test needs it forgotten")
	}
	c.expect("told", serviceSays("otrbnc closed the private conversation eve started"))
	c.send("PRIVMSG eve :SECRET-AFTER-EXPIRY")
	c.expect("refused", serviceSays("your message was NOT sent: otrbnc closed the private conversation"))
	c.send("PRIVMSG eve :\x01ACTION SECRET-ACTION\x01")
	c.expect("action refused", serviceSays("your message was NOT sent: otrbnc closed the private conversation"))
	fn.sync(c)
	for _, m := range fn.sentTo("eve") {
		if strings.Contains(m.Trailing(), "SECRET") {
			t.Fatalf("sent in clear after the conversation was forgotten: %q", m.Trailing())
		}
	}
	// The user decides: finish, then clear text is what they asked for.
	cmd(c, "finish eve", "now goes in clear")
	c.send("PRIVMSG eve :now in clear, as asked")
	eve.expectText("now in clear, as asked")
}
