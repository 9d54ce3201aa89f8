package proxy

import (
	"context"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
	"otrbnc/otrcore/otrtest/libotrpeer"
	"otrbnc/proxy/config"
)

// TestE2EChannelsAndClients: channels pass untouched, two clients share the
// network and see each other's messages, the upstream stays up between
// clients.
func TestE2EChannelsAndClients(t *testing.T) {
	t.Parallel()
	ircd := startNgircd(t, true)
	env := startProxy(t, testConfig(ircd.Addr), Options{})
	env.waitUp()
	bob := registerIRC(t, ircd.Addr, "bob")

	c1 := registerClient(t, env.addr, "whatever")
	c1.send("JOIN #room")
	c1.expect("own JOIN", func(m *irc.Message) bool { return m.Command == "JOIN" && m.Prefix.Name == "alice" })
	bob.send("JOIN #room")
	c1.expect("bob's JOIN", func(m *irc.Message) bool { return m.Command == "JOIN" && m.Prefix.Name == "bob" })
	bob.send("PRIVMSG #room :hello channel")
	c1.expect("channel text", privmsgFrom("bob", "hello channel"))
	c1.send("PRIVMSG #room :hi from alice")
	bob.expect("channel text from alice", privmsgFrom("alice", "hi from alice"))

	c2 := registerClient(t, env.addr, "alice", "znc.in/self-message")
	c2.expect("JOIN replay", func(m *irc.Message) bool { return m.Command == "JOIN" && m.Param(0) == "#room" })
	c2.expect("NAMES reply", func(m *irc.Message) bool { return m.Command == "353" && strings.Contains(m.Trailing(), "bob") })
	c1.send("PRIVMSG #room :second line")
	bob.expect("second channel line", privmsgFrom("alice", "second line"))
	c2.expect("echo of c1's channel line", privmsgFrom("alice", "second line"))

	// Detach both clients: the upstream stays and channel state survives.
	c1.send("QUIT :bye")
	c2.nc.Close()
	c1.expectClosed()
	bob.send("PRIVMSG #room :while away")
	c3 := registerClient(t, env.addr, "alice")
	c3.expect("JOIN replay after detach", func(m *irc.Message) bool { return m.Command == "JOIN" && m.Param(0) == "#room" })
	bob.send("PRIVMSG #room :welcome back")
	c3.expect("channel text", privmsgFrom("bob", "welcome back"))
}

// TestE2ELibotr runs the whole story against libotr 4.1.1 on ngIRCd.
func TestE2ELibotr(t *testing.T) {
	t.Parallel()
	ircd := startNgircd(t, true)
	cfg := testConfig(ircd.Addr)
	env := startProxy(t, cfg, Options{})
	env.waitUp()
	bob := newIRCPeer(t, ircd.Addr, "bob", newLibotrEngine(t, "bob", libotrpeer.PolicyManual))
	c1 := registerClient(t, env.addr, "alice")
	c2 := registerClient(t, env.addr, "alice", "echo-message")

	// Session started from our side.
	c1.send("PRIVMSG *otr :start bob")
	c1.expect("gone secure", serviceSays("private conversation with bob started"))
	c2.expect("gone secure on the second client", serviceSays("private conversation with bob started"))

	c1.send("PRIVMSG bob :hello bob")
	bob.expectText("hello bob")
	c2.expect("plaintext echo on the other client", func(m *irc.Message) bool {
		return m.Command == "PRIVMSG" && m.Prefix.Name == "alice" && m.Param(0) == "bob" && m.Trailing() == "hello bob"
	})

	bob.say("alice", "hi alice")
	m := c1.expect("decrypted text", privmsgFrom("bob", "hi alice"))
	if m.Trailing() != "hi alice" || m.Prefix.User == "" || m.Prefix.Host == "" {
		t.Errorf("got %q from %q, want the plain text from bob's real prefix", m.Trailing(), m.Prefix)
	}

	// Long messages both ways.
	long := strings.Repeat("0123456789 abcdefghij ", 100) // 2200 bytes
	c2.send("PRIVMSG bob :" + long[:400])
	bob.expectText(long[:400])
	bob.say("alice", long)
	var got strings.Builder
	for got.Len() < len(long) {
		m := c1.expect("long text piece", privmsgFrom("bob", ""))
		if len(formatMessage(m))+2 > 512 {
			t.Fatalf("client line of %d bytes", len(formatMessage(m))+2)
		}
		got.WriteString(m.Trailing())
	}
	if got.String() != long {
		t.Fatalf("long message mangled:\n got %q\nwant %q", got.String(), long)
	}
	// A 450-byte line from the client is as long as a client can send;
	// it must arrive whole through fragments.
	c1.send("PRIVMSG bob :" + strings.Repeat("x", 450))
	bob.expectText(strings.Repeat("x", 450))

	// /me both ways.
	c1.send("PRIVMSG bob :\x01ACTION waves\x01")
	if pt := bob.expectText("waves"); pt.text != "/me waves" {
		t.Errorf("action arrived as %q, want /me waves", pt.text)
	}
	bob.say("alice", "/me dances")
	m = c1.expect("action", privmsgFrom("bob", "dances"))
	if m.Trailing() != "\x01ACTION dances\x01" {
		t.Errorf("got %q, want a CTCP ACTION", m.Trailing())
	}

	// Plaintext during the session is marked and cannot hide the marker.
	bob.c.send("PRIVMSG alice :\x0301,01\u202esneaky")
	m = c1.expect("marked plaintext", privmsgFrom("bob", "sneaky"))
	if m.Trailing() != "[NOT ENCRYPTED] sneaky" {
		t.Errorf("plaintext shown as %q", m.Trailing())
	}
	c1.expect("plaintext warning", serviceSays("was NOT encrypted"))

	// The peer ends the session: further messages are refused, not sent.
	bob.endOTR("alice")
	c1.expect("peer finished", serviceSays("ended the private conversation"))
	c1.send("PRIVMSG bob :must not leak")
	c1.expect("refusal", serviceSays("NOT sent"))
	c1.send("PRIVMSG *otr :finish bob")
	c1.expect("ended", serviceSays("private conversation ended"))

	// Session started by the peer.
	bob.startOTR("alice")
	c1.expect("gone secure again", serviceSays("private conversation with bob started"))
	c1.send("PRIVMSG bob :second session")
	bob.expectText("second session")

	for _, l := range append(c1.seenLines(), c2.seenLines()...) {
		if strings.Contains(l, "?OTR") {
			t.Errorf("a client saw OTR protocol data: %q", l)
		}
		if strings.Contains(l, "must not leak") {
			t.Errorf("refused text came back: %q", l)
		}
	}
}

// TestE2EAlwaysQueueReconnectShutdown: under policy always a message typed
// before the session is queued and sent after the AKE; the upstream
// reconnects after the server restarts; shutdown tells the peer.
func TestE2EAlwaysQueueReconnectShutdown(t *testing.T) {
	t.Parallel()
	ircd := startNgircd(t, true)
	cfg := testConfig(ircd.Addr)
	cfg.Network[0].Policy = "always"
	env := startProxy(t, cfg, Options{})
	env.waitUp()
	eng := newLibotrEngine(t, "bob", libotrpeer.PolicyManual)
	bob := newIRCPeer(t, ircd.Addr, "bob", eng)
	c1 := registerClient(t, env.addr, "alice")

	c1.send("PRIVMSG bob :queued hello")
	c1.expect("queued notice", serviceSays("queued until the private conversation"))
	c1.expect("gone secure", serviceSays("private conversation with bob started"))
	c1.expect("held sent", serviceSays("queued message(s) sent encrypted"))
	bob.expectText("queued hello")

	// The server goes away and comes back.
	ircd.Stop()
	c1.expect("disconnect notice", serviceSays("disconnected from test"))
	ircd.Start()
	c1.expect("reconnect notice", serviceSays("connected to test as alice"))
	env.waitUp()
	bob = newIRCPeer(t, ircd.Addr, "bob", eng)
	c1.send("PRIVMSG bob :after reconnect")
	bob.expectText("after reconnect")
	bob.say("alice", "still private")
	c1.expect("decrypted after reconnect", privmsgFrom("bob", "still private"))

	// Graceful shutdown ends the session on the peer's side too.
	env.stop()
	deadline := time.Now().Add(testTimeout)
	for {
		st, err := eng.p.Status(context.Background(), "alice")
		if err == nil && st.MsgState == "finished" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer still in state %q after otrbnc shut down (err %v)", st.MsgState, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2EDefaultFloodLimits runs an AKE, an SMP exchange (our step 2 is
// about 8 fragments) and a long message through ngIRCd with its default
// flood control, paced by otrbnc's default pacing (for ngIRCd, once it
// has named itself).
func TestE2EDefaultFloodLimits(t *testing.T) {
	t.Parallel()
	ircd := startNgircd(t, false)
	cfg := testConfig(ircd.Addr)
	cfg.Network[0].Pacing = ""
	env := startProxy(t, cfg, Options{})
	env.waitUp()
	eng := newLibotrEngine(t, "bob", libotrpeer.PolicyManual)
	bob := newIRCPeer(t, ircd.Addr, "bob", eng)
	c := registerClient(t, env.addr, "alice")

	bob.startOTR("alice")
	c.expect("gone secure", serviceSays("private conversation with bob started"))
	r, err := eng.p.SMPStart(context.Background(), "alice", "our secret")
	if err != nil {
		t.Fatal(err)
	}
	bob.write("alice", r.Out)
	c.expect("SMP request", serviceSays("wants to verify your identity"))
	c.send("PRIVMSG *otr :auth bob our secret")
	c.expect("SMP result", func(m *irc.Message) bool {
		return serviceSays("identity verified")(m) || serviceSays("verified your identity")(m)
	})
	long := strings.Repeat("flood-safe ", 180) // ~2 KB: 6+ fragments
	c.send("PRIVMSG bob :" + long[:440])
	bob.expectText(long[:440])
	st, err := eng.p.Status(context.Background(), "alice")
	if err != nil || !st.Trusted {
		t.Errorf("libotr peer did not verify us: %+v %v", st, err)
	}
	for _, l := range c.seenLines() {
		if strings.Contains(l, "?OTR") {
			t.Errorf("client saw %q", l)
		}
	}
}

// TestE2EHeartbeatFromProxyClock: OTR timers run on otrbnc's clock; a
// session that received but did not send gets a heartbeat a minute later.
func TestE2EHeartbeatFromProxyClock(t *testing.T) {
	t.Parallel()
	ircd := startNgircd(t, true)
	var offset atomic.Int64
	base := time.Now()
	clock := func() time.Time { return base.Add(time.Duration(offset.Load())) }
	env := startProxy(t, testConfig(ircd.Addr), Options{Now: clock, TickInterval: 20 * time.Millisecond})
	env.waitUp()
	bob := newIRCPeer(t, ircd.Addr, "bob", newGoEngine(testKey(t, 1), 0x4242, otrcore.PolicyManual))
	c := registerClient(t, env.addr, "alice")
	bob.startOTR("alice")
	c.expect("gone secure", serviceSays("private conversation with bob started"))
	bob.say("alice", "ping me back")
	c.expect("decrypted", privmsgFrom("bob", "ping me back"))
	before := bob.privmsgs.Load()
	time.Sleep(100 * time.Millisecond)
	if got := bob.privmsgs.Load(); got != before {
		t.Fatalf("otrbnc sent %d messages before its clock advanced", got-before)
	}
	offset.Store(int64(2 * time.Minute))
	deadline := time.Now().Add(testTimeout)
	for bob.privmsgs.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat after the clock advanced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case pt := <-bob.texts:
		t.Errorf("heartbeat carried text %q", pt.text)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestE2EDetachedBuffer: private messages that arrive while no client is
// attached are kept in memory and replayed to the next client.
func TestE2EDetachedBuffer(t *testing.T) {
	t.Parallel()
	ircd := startNgircd(t, true)
	env := startProxy(t, testConfig(ircd.Addr), Options{})
	env.waitUp()
	bob := newIRCPeer(t, ircd.Addr, "bob", newGoEngine(testKey(t, 1), 0x4243, otrcore.PolicyManual))
	c := registerClient(t, env.addr, "alice")
	bob.startOTR("alice")
	c.expect("gone secure", serviceSays("private conversation with bob started"))
	c.send("QUIT")
	c.expectClosed()
	deadline := time.Now().Add(testTimeout)
	for attached := 1; attached > 0; {
		env.inNetwork(func(n *network) { attached = len(n.downstreams) })
		if time.Now().After(deadline) {
			t.Fatal("client still attached")
		}
		time.Sleep(5 * time.Millisecond)
	}
	bob.say("alice", "while you were away")
	bob.c.send("PRIVMSG alice :and this in clear")
	for kept := 0; kept < 2; {
		env.inNetwork(func(n *network) { kept = keptMessages(n) })
		if time.Now().After(deadline) {
			t.Fatal("messages not kept")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c = registerClient(t, env.addr, "alice")
	c.expect("replay notice", serviceSays("while this client was away: 2 private message(s)"))
	c.expect("decrypted replay", privmsgFrom("bob", "while you were away"))
	m := c.expect("marked replay", privmsgFrom("bob", "and this in clear"))
	// A client without server-time sees when the message arrived.
	if !regexp.MustCompile(`^\[\d\d:\d\d:\d\d\] ` + regexp.QuoteMeta(config.DefaultPlaintextMarker) + ` and this in clear$`).MatchString(m.Trailing()) {
		t.Errorf("plaintext replayed as %q", m.Trailing())
	}
}
