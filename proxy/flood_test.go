package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"otrbnc/otrcore"
	"otrbnc/proxy/config"
)

// TestFloodDoesNotStallTheUser: a nick sending 600 D-H Commits under real
// pacing gets a handful of answers, and neither the user's channel
// message nor an AKE with another peer waits behind them (issue: fair and
// bounded under hostile load, defect 1).
func TestFloodDoesNotStallTheUser(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", func(c *config.Config) {
		c.Network[0].Pacing = config.PacingStrict
		c.Network[0].RateBurst = 5
		c.Network[0].RateInterval = config.Duration{Duration: 100 * time.Millisecond}
	}, Options{})
	mallory := fn.addPeer("mallory", testKey(t, 2), 0x3003)
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")

	// A real D-H Commit from mallory's engine, replayed 600 times.
	var commit string
	mallory.do(func(cv *otrcore.Conversation) (otrcore.Result, error) {
		res, err := cv.Receive(time.Now(), "?OTRv3?")
		if err == nil && len(res.Send) > 0 {
			commit = res.Send[0].Lines[0]
		}
		return otrcore.Result{}, err
	})
	if !strings.HasPrefix(commit, "?OTR:") {
		t.Fatalf("no commit: %q", commit)
	}
	lines := make([]string, 600)
	for i := range lines {
		lines[i] = ":" + mallory.prefix + " PRIVMSG alice :" + commit
	}
	fn.s.send(lines...)

	start := time.Now()
	c.send("PRIVMSG #chan :after-the-flood")
	deadline := time.Now().Add(testTimeout)
	for !sentPlain(fn, "#chan", "after-the-flood") {
		if time.Now().After(deadline) {
			t.Fatalf("the user's message never left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the user's message waited %v behind the flood", d)
	}
	// Another peer can still set up a session promptly.
	start = time.Now()
	bob.secure(c)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("AKE with bob took %v during the flood", d)
	}
	fn.sync(c)
	if got := len(fn.sentTo("mallory")); got > replyBurst+2 {
		t.Errorf("otrbnc sent mallory %d lines in answer to a flood", got)
	}
}

// TestNoticeFloodCollapsed: 400 bad lines from one nick make one notice
// and, when the minute is over, one summary (defect 6).
func TestNoticeFloodCollapsed(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	env, fn := startFakeNet(t, "", nil, Options{Now: clock.now})
	mallory := fn.addPeer("mallory", testKey(t, 2), 0x3003)
	c := registerClient(t, env.addr, "alice")
	lines := make([]string, 400)
	for i := range lines {
		lines[i] = ":" + mallory.prefix + " PRIVMSG alice :?OTR:AAMD" + strings.Repeat("A", i%50) + "!."
	}
	fn.s.send(lines...)
	fn.sync(c)
	count := 0
	for _, l := range serviceTexts(c) {
		if strings.Contains(l, "mallory") {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d notices about mallory, want 1: %q", count, serviceTexts(c))
	}
	clock.advance(2 * time.Minute)
	c.expect("summary", serviceSays("399 more notices about 1 nick you are not talking to ignored in the last minute: 399 malformed or unreadable OTR messages"))

	// Many nicks make one summary line, not one each.
	lines = lines[:0]
	for i := range 300 {
		lines = append(lines, fmt.Sprintf(":m%d!m@h PRIVMSG alice :?OTR:AAMD!.", i), fmt.Sprintf(":m%d!m@h PRIVMSG alice :?OTR:AAMD!!.", i))
	}
	fn.s.send(lines...)
	fn.sync(c)
	clock.advance(2 * time.Minute)
	c.expect("one summary", serviceSays("more notices about 300 nicks you are not talking to ignored in the last minute"))
	fn.sync(c)
	if got := len(serviceTexts(c)); got > 40 {
		t.Errorf("%d *otr lines for 300 nicks", got)
	}
}

// TestPeerMemoryBounded: hundreds of nicks each leaving the largest
// partial state they can (a first fragment announcing 65535 pieces under
// eight instance tags, a pending AKE) cannot push what otrbnc holds for
// them past peer_memory_mb, the user's running session survives, and idle
// state expires (defect 3).
func TestPeerMemoryBounded(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	env, fn := startFakeNet(t, "", func(c *config.Config) { c.Network[0].PeerMemoryMB = 4 }, Options{Now: clock.now})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")
	bob.secure(c)
	c.send("PRIVMSG bob :before the flood")
	bob.expectText("before the flood")

	piece := strings.Repeat("A", 360)
	var lines []string
	for i := range 600 {
		nick := fmt.Sprintf("m%03d", i)
		for tag := 0x1000; tag < 0x1008; tag++ {
			lines = append(lines, fmt.Sprintf(":%s!m@h PRIVMSG alice :?OTR|%08x|00000000,00001,65535,%s,", nick, tag, piece))
		}
		lines = append(lines, ":"+nick+"!m@h PRIVMSG alice :?OTRv3?")
	}
	fn.s.send(lines...)
	fn.sync(c)
	var total, peers int
	env.inNetwork(func(n *network) { total, peers = n.mem.total, len(n.otr.peers) })
	if total > 4<<20 {
		t.Errorf("peers hold %d bytes, over the 4 MiB budget", total)
	}
	t.Logf("after the flood: %d bytes in %d conversations", total, peers)
	c.send("PRIVMSG bob :after the flood")
	bob.expectText("after the flood")

	// Idle state expires; bob's session stays.
	clock.advance(peerIdle + time.Minute)
	deadline := time.Now().Add(testTimeout)
	for {
		env.inNetwork(func(n *network) { peers = len(n.otr.peers) })
		if peers == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d conversations left after they went idle, want bob's only", peers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.send("PRIVMSG bob :after the expiry")
	bob.expectText("after the expiry")
}

// TestStrangerSessionsGiveWay: sessions that strangers (nicks the user
// never addressed) set up count against the memory budget and give way,
// idle ones first, when it runs out; the user's own conversations do not.
// Otherwise nicks holding sessions would fill the budget for good and no
// newcomer could start one.
func TestStrangerSessionsGiveWay(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	bob.secure(c)
	c.send("PRIVMSG bob :hello")
	bob.expectText("hello")
	for i, nick := range []string{"s1", "s2", "s3"} {
		s := fn.addPeer(nick, testKey(t, 2), 0x3000+uint32(i))
		s.secure(c)
	}
	env.inNetwork(func(n *network) {
		// Room for bob's conversation only: the next account sheds.
		n.mem.limit = n.otr.peers["bob"].mem*10/9 + 1024
		n.accountPeer(n.otr.peers["bob"])
		if n.otr.peers["bob"] == nil {
			t.Errorf("the user's conversation was dropped")
		}
		if len(n.otr.peers) != 1 {
			t.Errorf("%d conversations left, want bob's only", len(n.otr.peers))
		}
		if n.mem.total > n.mem.limit {
			t.Errorf("%d bytes held, over %d", n.mem.total, n.mem.limit)
		}
	})
	c.send("PRIVMSG bob :still here")
	bob.expectText("still here")
}
