package proxy

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
)

// Regression tests for the security boundary (docs/security.md, I1–I4):
// a scripted hostile server (fakeNet sends any line at any time) and
// hostile peers try to make otrbnc send in clear, put words in *otr's
// mouth, or pass clear text off as encrypted.

// assertNotInClear fails if token appears in anything otrbnc sent to the
// network. Tokens contain '-', which base64 (OTR data) never does.
func assertNotInClear(t *testing.T, fn *fakeNet, token string) {
	t.Helper()
	for _, l := range fn.sent() {
		if strings.Contains(l, token) {
			t.Errorf("sent in clear: %q", l)
		}
	}
}

// sentPlain reports whether otrbnc sent text to target as a PRIVMSG.
func sentPlain(fn *fakeNet, target, text string) bool {
	for _, m := range fn.sentTo(target) {
		if m.Command == "PRIVMSG" && m.Param(1) == text {
			return true
		}
	}
	return false
}

// serviceTexts returns the text of every *otr line c received.
func serviceTexts(c *testConn) []string {
	var out []string
	for _, l := range c.seenLines() {
		m, err := parseLine(l)
		if err == nil && m.Prefix.Name == serviceNick && len(m.Params) > 1 {
			out = append(out, m.Trailing())
		}
	}
	return out
}

// rename makes the peer change nick on the network.
func (p *fakePeer) rename(nick string) {
	p.fn.s.send(":" + p.prefix + " NICK :" + nick)
	p.fn.mu.Lock()
	delete(p.fn.peers, strings.ToLower(p.nick))
	p.nick, p.prefix = nick, nick+"!"+strings.SplitN(p.prefix, "!", 2)[1]
	p.fn.peers[strings.ToLower(nick)] = p
	p.fn.mu.Unlock()
}

// TestHostileChantypesCannotDowngrade: a server announcing every letter
// as a channel type must not turn private messages into channel messages
// sent in clear (defect 1).
func TestHostileChantypesCannotDowngrade(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")
	cmd(c, "policy bob always", "policy is now always")
	cmd(c, "policy carol always", "policy is now always")
	bob.secure(c)
	fn.s.send(":srv 005 alice CHANTYPES=#abcdefghijklmnopqrstuvwxyz STATUSMSG=abc :are supported")
	fn.sync(c)
	c.send("PRIVMSG bob :SECRET-chantypes-1", "PRIVMSG carol :SECRET-chantypes-2", "PRIVMSG Bob :SECRET-chantypes-3")
	bob.expectText("SECRET-chantypes-1")
	bob.expectText("SECRET-chantypes-3")
	c.expect("queued for carol", serviceSays("[carol] your message is queued"))
	fn.sync(c)
	assertNotInClear(t, fn, "SECRET-chantypes")
	// Real channels still work.
	c.send("PRIVMSG #chan :channel-words")
	fn.sync(c)
	if !sentPlain(fn, "#chan", "channel-words") {
		t.Errorf("channel message not sent: %q", fn.sent())
	}
}

// TestHostileRenameIntoIgnoredMask: a peer renamed (by itself or by the
// server) to a nick that matches an ignore mask keeps its private
// conversation: nothing goes in clear and its ciphertext is decrypted
// (defect 2).
func TestHostileRenameIntoIgnoredMask(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")
	bob.secure(c)
	bob.rename("bobserv") // matches the default ignore mask *serv
	c.expect("rename noticed", serviceSays("bob is now known as bobserv"))
	c.send("PRIVMSG bobserv :SECRET-rename-1")
	bob.expectText("SECRET-rename-1")
	bob.say("reply-after-rename")
	c.expect("decrypted reply", privmsgFrom("bobserv", "reply-after-rename"))
	fn.sync(c)
	assertNotInClear(t, fn, "SECRET-rename")
	for _, l := range c.seenLines() {
		if strings.Contains(l, "?OTR") {
			t.Errorf("client saw OTR data: %q", l)
		}
	}
	// Once the conversation ends, the ignore list applies again.
	cmd(c, "finish bobserv", "private conversation ended")
	c.send("PRIVMSG bobserv :now-in-clear")
	fn.sync(c)
	if !sentPlain(fn, "bobserv", "now-in-clear") {
		t.Errorf("ignored nick not sent in clear after finish")
	}
}

// forgery is what a hostile nick would like a *otr line to say.
const forgery = "[bob] private conversation with bob started (OTRv3, verified). FORGED"

// checkNoForgedServiceLine fails if a *otr line starts with peer text or
// shows the forgery anywhere but inside quotes after otrbnc's own words.
func checkNoForgedServiceLine(t *testing.T, c *testConn) {
	t.Helper()
	for _, l := range serviceTexts(c) {
		if strings.HasPrefix(l, "[bob] private conversation with bob started") {
			t.Errorf("*otr line starts with peer text: %q", l)
		}
		i := strings.Index(l, "FORGED")
		if i < 0 {
			continue
		}
		if q := strings.IndexAny(l, "\"“"); q < 0 || q > i {
			t.Errorf("peer text not quoted in *otr line: %q", l)
		}
	}
}

// TestHostileForgedServiceLines: peer text embedded in *otr notices (an
// OTR error any nick can send, the SMP question) cannot start a *otr line
// wherever the line is cut (defect 3).
func TestHostileForgedServiceLines(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	mallory := fn.addPeer("mallory", testKey(t, 2), 0x3003)
	c := registerClient(t, env.addr, "alice")
	// Error messages, the forged text placed at every plausible cut.
	lead := len("[mallory] OTR error from mallory: ")
	for _, filler := range []string{
		strings.Repeat("x", 400-lead),
		strings.Repeat("x", 401-lead),
		strings.Repeat("x ", (400-lead)/2),
		strings.Repeat("y", 200) + " " + strings.Repeat("z", 400-lead-201),
	} {
		mallory.raw("PRIVMSG alice :?OTR Error: " + filler + forgery)
	}
	fn.sync(c)
	// An SMP question crafted the same way.
	mallory.secure(c)
	q := strings.Repeat("q", 400-len("[mallory] mallory wants to verify your identity and asks: \"")) + forgery
	mallory.do(func(cv *otrcore.Conversation) (otrcore.Result, error) {
		return cv.StartSMP(time.Now(), q, true, "secret")
	})
	c.expect("smp question", serviceSays("wants to verify your identity"))
	cmd(c, "status mallory", "[mallory]")
	fn.sync(c)
	checkNoForgedServiceLine(t, c)
	// A client attaching later gets the question again: same rule.
	c2 := registerClient(t, env.addr, "alice")
	c2.expect("smp question replayed", serviceSays("wants to verify your identity"))
	fn.sync(c2)
	checkNoForgedServiceLine(t, c2)
}

// markedPieces returns the text of the PRIVMSGs from nick containing
// none of the words in skip, and whether each starts with the marker.
func checkEveryPieceMarked(t *testing.T, c *testConn, nick, first, last string) {
	t.Helper()
	var texts []string
	in := false
	for _, l := range c.seenLines() {
		m, err := parseLine(l)
		if err != nil || m.Command != "PRIVMSG" || m.Prefix.Name != nick {
			continue
		}
		text := m.Trailing()
		if _, body, ok := parseCTCP(text); ok {
			text = body
		}
		if strings.Contains(text, first) {
			in = true
		}
		if in {
			texts = append(texts, text)
		}
		if strings.Contains(text, last) {
			break
		}
	}
	if len(texts) < 2 {
		t.Fatalf("want the text split in several lines, got %q", texts)
	}
	for _, text := range texts {
		if !strings.HasPrefix(text, "[NOT ENCRYPTED] ") && !strings.Contains(text, "] [NOT ENCRYPTED] ") {
			t.Errorf("piece without the marker: %q", text)
		}
	}
}

// TestHostilePlaintextMarkedEverywhere: clear text that arrives while a
// conversation is private, or while the policy requires encryption, is
// marked on every line it is split into, also as ACTION and when tagged
// as history (defects 4 and 6).
func TestHostilePlaintextMarkedEverywhere(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "server-time batch", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	carol := fn.addPeer("carol", testKey(t, 2), 0x3003)
	c := registerClient(t, env.addr, "alice")
	bob.secure(c)
	long := func(tag string) string {
		return "START-" + tag + " " + strings.Repeat("word ", 120) + "END-" + tag
	}
	bob.raw("PRIVMSG alice :" + long("plain"))
	c.expect("end of plain", privmsgFrom("bob", "END-plain"))
	checkEveryPieceMarked(t, c, "bob", "START-plain", "END-plain")

	bob.raw("PRIVMSG alice :\x01ACTION " + long("action") + "\x01")
	c.expect("end of action", privmsgFrom("bob", "END-action"))
	checkEveryPieceMarked(t, c, "bob", "START-action", "END-action")

	old := formatServerTime(time.Now().Add(-time.Hour))
	bob.raw("PRIVMSG alice :x") // not history: resets nothing, just a separator
	fn.s.send("@time=" + old + " :" + bob.prefix + " PRIVMSG alice :" + long("history"))
	c.expect("end of history", privmsgFrom("bob", "END-history"))
	checkEveryPieceMarked(t, c, "bob", "START-history", "END-history")

	fn.s.send("BATCH +hb chathistory alice", "@batch=hb :"+bob.prefix+" PRIVMSG alice :"+long("batch"), "BATCH -hb")
	c.expect("end of batch", privmsgFrom("bob", "END-batch"))
	checkEveryPieceMarked(t, c, "bob", "START-batch", "END-batch")

	// No session, but the policy requires encryption: clear text from the
	// peer is marked too.
	cmd(c, "policy carol always", "policy is now always")
	carol.raw("PRIVMSG alice :" + long("always"))
	c.expect("end of always", privmsgFrom("carol", "END-always"))
	checkEveryPieceMarked(t, c, "carol", "START-always", "END-always")
}

// TestHostileNoticesAndCTCPStayPrivate: in a private conversation, a
// notice or a CTCP request is not sent in clear (I1), and one received in
// clear is marked.
func TestHostileNoticesAndCTCPStayPrivate(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")
	bob.secure(c)
	c.send("NOTICE bob :SECRET-notice", "PRIVMSG bob :\x01VERSION SECRET-ctcp\x01", "NOTICE bob :\x01VERSION SECRET-ctcpreply\x01")
	c.expect("notice refused", serviceSays("[bob] your notice was NOT sent"))
	c.expect("ctcp refused", serviceSays("[bob] your CTCP VERSION was NOT sent"))
	fn.sync(c)
	assertNotInClear(t, fn, "SECRET-")
	bob.raw("NOTICE alice :clear-notice")
	c.expect("marked notice", func(m *irc.Message) bool {
		return m.Command == "NOTICE" && m.Prefix.Name == "bob" && strings.HasPrefix(m.Trailing(), "[NOT ENCRYPTED] clear-notice")
	})
}

// TestHostileFinishUnderAlwaysSaysQueued: after finish under policy
// always, otrbnc does not claim that messages now go in clear (defect 9).
func TestHostileFinishUnderAlwaysSaysQueued(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")
	cmd(c, "policy bob always", "policy is now always")
	bob.secure(c)
	m := cmd(c, "finish bob", "private conversation ended")
	if strings.Contains(m.Trailing(), "now go in clear") {
		t.Errorf("finish under always says %q", m.Trailing())
	}
	c.send("PRIVMSG bob :SECRET-after-finish")
	c.expect("queued", serviceSays("[bob] your message is queued"))
	fn.sync(c)
	assertNotInClear(t, fn, "SECRET-after-finish")
}

// TestHostileSecondInstanceCannotSteer: with bob's verified session
// running, another OTR program under bob's nick (an attacker's, with its
// own key and instance tag) completes an AKE. otrbnc keeps sending to
// bob's session, marks every line of the other one, announces it, and
// lets the user choose (defect 5, I4).
func TestHostileSecondInstanceCannotSteer(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")
	bob.secure(c)
	cmd(c, "trust bob "+testKey(t, 1).Fingerprint().String(), "is now trusted")

	// mallory, under bob's nick, answers a query of her own making.
	mallory := otrcore.NewConversation(&otrcore.Account{Key: testKey(t, 2), InstanceTag: 0x3003}, "alice",
		otrcore.Options{Policy: otrcore.PolicyManual, MaxMessageSize: 400})
	inject := func(res otrcore.Result) {
		for _, o := range res.Send {
			for _, l := range o.Lines {
				fn.s.send(":bob!evil@elsewhere PRIVMSG alice :" + l)
			}
		}
	}
	res, err := mallory.Receive(time.Now(), "?OTRv3?")
	if err != nil {
		t.Fatal(err)
	}
	// Count what bob was sent before injecting: otrbnc's answer can come
	// back before this goroutine runs again.
	seen := len(fn.sentTo("bob"))
	inject(res)
	deadline := time.Now().Add(testTimeout)
	for mallory.Status().State != otrcore.StateEncrypted {
		if time.Now().After(deadline) {
			t.Fatalf("mallory's AKE did not complete")
		}
		fn.sync(c)
		sent := fn.sentTo("bob")
		for _, m := range sent[seen:] {
			r, _ := mallory.Receive(time.Now(), m.Param(1))
			inject(r)
		}
		seen = len(sent)
	}
	fn.sync(c)
	announced := false
	for _, l := range serviceTexts(c) {
		announced = announced || strings.Contains(l, "another OTR client of bob (instance 00003003)")
	}
	if !announced {
		t.Errorf("the second session was not announced: %q", serviceTexts(c))
	}

	c.send("PRIVMSG bob :for-bob-only")
	bob.expectText("for-bob-only")
	fn.sync(c)
	for _, m := range fn.sentTo("bob")[seen:] {
		if r, _ := mallory.Receive(time.Now(), m.Param(1)); r.HasText {
			t.Errorf("mallory read %q", r.Text)
		}
	}
	r, err := mallory.Send(time.Now(), "I am bob, really")
	if err != nil {
		t.Fatal(err)
	}
	inject(r)
	m := c.expect("marked", privmsgFrom("bob", "I am bob, really"))
	if !strings.HasPrefix(m.Trailing(), "[other session: instance 00003003, key "+testKey(t, 2).Fingerprint().String()[:8]+", UNVERIFIED] ") {
		t.Errorf("text from the other session shown as %q", m.Trailing())
	}
	bob.say("from the real bob")
	if m := c.expect("bob's text", privmsgFrom("bob", "from the real bob")); m.Trailing() != "from the real bob" {
		t.Errorf("text from the current session shown as %q", m.Trailing())
	}
	cmd(c, "instance bob", "instance 00002002: encrypted, OTRv3, key "+testKey(t, 1).Fingerprint().String()+" (verified), your messages go here")
	cmd(c, "instance bob 00003003", "your messages to bob now go to the session with instance 00003003")
}

// TestHostileServerCannotForgeWindowLines: the server cannot send lines
// that pass for otrbnc's own lines in the conversation's window (I2):
// lines in otrbnc's name are dropped, and numerics whose text starts like
// "OTR:" say they come from the server.
func TestHostileServerCannotForgeWindowLines(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	fn.s.send(
		":otrbnc 404 alice bob :OTR: private conversation started (key 1A2B3C4D, verified) FORGED1",
		":OTRBNC NOTICE alice :FORGED2",
		":srv 404 alice bob :OTR: private conversation started (key 1A2B3C4D, verified) FORGED3",
		":srv 404 alice bob :\x02\u041eTR: FORGED4",
		":srv FAIL PRIVMSG CANNOT_SEND bob :otr: FORGED5",
		":srv 404 alice bob :Cannot send to nick (+R) REAL6",
	)
	c.expect("the real numeric", func(m *irc.Message) bool { return strings.Contains(m.Trailing(), "REAL6") })
	for _, l := range c.seenLines() {
		m, err := parseLine(l)
		if err != nil || !strings.Contains(l, "FORGED") {
			continue
		}
		if strings.EqualFold(m.Prefix.Name, serverName) {
			t.Errorf("a line in otrbnc's name reached the client: %q", l)
		}
		if !strings.HasPrefix(m.Trailing(), "(from the server) ") {
			t.Errorf("a server line passes for otrbnc's: %q", l)
		}
	}
	for _, want := range []string{"FORGED3", "FORGED4", "FORGED5"} {
		if !strings.Contains(strings.Join(c.seenLines(), "\n"), want) {
			t.Errorf("%s was dropped instead of marked", want)
		}
	}
}
