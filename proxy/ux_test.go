package proxy

import (
	"otrbnc/otrcore"
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"
)

// windowLineFor matches otrbnc's line about peer in the conversation's
// window (numeric 404 naming the peer) containing sub.
func windowLineFor(peer, sub string) func(*irc.Message) bool {
	return func(m *irc.Message) bool {
		return m.Command == "404" && m.Prefix.Name == serverName && m.Param(1) == peer && strings.Contains(m.Trailing(), sub)
	}
}

// sawMsg reports whether c received a line matching pred so far.
func sawMsg(c *testConn, pred func(*irc.Message) bool) bool {
	for _, l := range c.seenLines() {
		if m, err := parseLine(l); err == nil && pred(m) {
			return true
		}
	}
	return false
}

// TestUnansweredStartIsExplained: a start that gets no answer is shown by
// status, and after 30 s the user is told why that may be, in the
// conversation's window and in *otr (issue 12, item 5).
func TestUnansweredStartIsExplained(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	env, fn := startFakeNet(t, "", nil, Options{Now: clock.now})
	c := registerClient(t, env.addr, "alice")
	cmd(c, "start dave", "asking dave for a private conversation")
	cmd(c, "status dave", "asked for a private conversation at")
	clock.advance(askTimeout + time.Second)
	c.expect("window line", windowLineFor("dave", "no answer to the request for a private conversation"))
	c.expect("explanation", serviceSays("may still be generating its key"))
	fn.sync(c)
}

// TestClearReplyWhileQueued: under policy always, a peer without OTR that
// answers in clear while the user's message waits is marked, and the user
// learns how to get out (issue 12, item 6).
func TestClearReplyWhileQueued(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	cmd(c, "policy dave always", "policy is now always")
	c.send("PRIVMSG dave :are you there?")
	c.expect("queued, in the window", windowLineFor("dave", "your message is queued"))
	fn.s.send(":dave!d@h PRIVMSG alice :I have no OTR")
	m := c.expect("marked", privmsgFrom("dave", "I have no OTR"))
	if !strings.HasPrefix(m.Trailing(), "[NOT ENCRYPTED] ") {
		t.Errorf("clear reply shown as %q", m.Trailing())
	}
	c.expect("hint", serviceSays("/msg *otr discard dave drops them"))
}

// TestRefusalInTheWindow: after the peer ends the conversation, the next
// line the user types is refused where the user looks, for a client with
// standard-replies as FAIL, for the others as 404 (issue 12, item 1).
func TestRefusalInTheWindow(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")
	sr := registerClient(t, env.addr, "alice", "standard-replies")
	bob.secure(c)
	if !sawMsg(c, windowLineFor("bob", "private conversation started")) {
		t.Errorf("no start in the window")
	}
	bob.do(func(cv *otrcore.Conversation) (otrcore.Result, error) { return cv.End(time.Now()), nil })
	c.expect("ended by bob, in the window", windowLineFor("bob", "bob ended the private conversation"))
	c.send("PRIVMSG bob :still there?")
	c.expect("refusal, in the window", windowLineFor("bob", "your message was NOT sent"))
	sr.send("PRIVMSG bob :still there?")
	sr.expect("FAIL", func(m *irc.Message) bool {
		return m.Command == "FAIL" && m.Param(0) == "PRIVMSG" && m.Param(2) == "bob" && strings.Contains(m.Trailing(), "NOT sent")
	})
}

// TestPolicyNeverTellsAboutQueries: under policy never, a peer's request
// for OTR is neither shown raw nor answered, and the user is told how to
// accept it (defect 8 of the security issue).
func TestPolicyNeverTellsAboutQueries(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	cmd(c, "policy dave never", "policy is now never")
	fn.s.send(":dave!d@h PRIVMSG alice :?OTRv23? dave would like to talk privately")
	c.expect("told", serviceSays("dave asks for a private conversation, but your policy for dave is never"))
	fn.sync(c)
	for _, l := range c.seenLines() {
		if strings.Contains(l, "?OTR") {
			t.Errorf("the query reached the client: %q", l)
		}
	}
	for _, m := range fn.sentTo("dave") {
		t.Errorf("otrbnc answered under policy never: %q", m)
	}
}

// TestPolicyNeverDuringSession: switching the policy to never during a
// session neither drops what the peer sends nor sends the user's messages
// in clear; the session runs until it is ended (defect 7 of the security
// issue).
func TestPolicyNeverDuringSession(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")
	bob.secure(c)
	cmd(c, "policy bob never", "policy is now never")
	bob.say("still encrypted")
	c.expect("decrypted", privmsgFrom("bob", "still encrypted"))
	c.send("PRIVMSG bob :SECRET-never-1")
	bob.expectText("SECRET-never-1")
	fn.sync(c)
	assertNotInClear(t, fn, "SECRET-never")
}
