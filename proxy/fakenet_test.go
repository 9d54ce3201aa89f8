package proxy

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
	"otrbnc/proxy/config"
)

// fakeNet is a small IRC server for tests, played by the test itself: it
// registers otrbnc, offers the capabilities the test asks for, and routes
// private messages to in-process OTR peers (otrcore), so that whole AKE
// and SMP runs take milliseconds and need no ngIRCd.
type fakeNet struct {
	t     *testing.T
	s     *testConn
	caps  string
	mu    sync.Mutex
	peers map[string]*fakePeer
	log   []*irc.Message // everything otrbnc sent
	// other receives what no peer consumed (not PING, CAP, registration).
	other chan *irc.Message
}

// startFakeNet runs otrbnc against a fakeNet offering caps (a CAP LS
// value) and waits until the upstream is registered.
func startFakeNet(t *testing.T, caps string, cfg func(*config.Config), opts Options) (*proxyEnv, *fakeNet) {
	t.Helper()
	addr, conns := fakeServer(t, nil)
	c := testConfig(addr)
	if cfg != nil {
		cfg(c)
	}
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	env := startProxy(t, c, opts)
	fn := &fakeNet{t: t, s: nextConn(t, conns), caps: caps, peers: map[string]*fakePeer{}, other: make(chan *irc.Message, 10000)}
	go fn.serve()
	env.waitUp()
	return env, fn
}

func (fn *fakeNet) serve() {
	nick, user, capNeg := "", false, false
	welcome := func() {
		if nick != "" && user && !capNeg {
			fn.s.send(
				":srv 001 "+nick+" :Welcome "+nick+"!~"+nick+"@host.test",
				":srv 005 "+nick+" CHANTYPES=# CASEMAPPING=rfc1459 :are supported",
				":srv 376 "+nick+" :End of MOTD",
			)
			user = false
		}
	}
	for m := range fn.s.in {
		fn.mu.Lock()
		fn.log = append(fn.log, m)
		fn.mu.Unlock()
		switch m.Command {
		case "PING":
			fn.s.send(":srv PONG srv :" + m.Param(0))
			continue
		case "CAP":
			switch m.Param(0) {
			case "LS":
				capNeg = true
				fn.s.send(":srv CAP * LS :" + fn.caps)
			case "REQ":
				fn.s.send(":srv CAP * ACK :" + m.Param(1))
			case "END":
				capNeg = false
				welcome()
			}
			continue
		case "NICK", "USER":
			if m.Command == "NICK" {
				nick = m.Param(0)
			} else {
				user = true
			}
			welcome()
			continue
		case "WHO":
			fn.s.send(":srv 352 alice * ~alice host.test srv alice H :0 alice", ":srv 315 alice alice :End of WHO")
			continue
		case "PRIVMSG", "NOTICE", "TAGMSG":
			fn.mu.Lock()
			p := fn.peers[strings.ToLower(m.Param(0))]
			fn.mu.Unlock()
			if p != nil {
				p.handle(m)
				continue
			}
		}
		fn.other <- m
	}
}

// sent returns what otrbnc sent so far, as raw lines.
func (fn *fakeNet) sent() []string {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	out := make([]string, len(fn.log))
	for i, m := range fn.log {
		out[i] = m.String()
	}
	return out
}

// sentTo returns the PRIVMSG/NOTICE/TAGMSG otrbnc sent to nick.
func (fn *fakeNet) sentTo(nick string) []*irc.Message {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	var out []*irc.Message
	for _, m := range fn.log {
		if (m.Command == "PRIVMSG" || m.Command == "NOTICE" || m.Command == "TAGMSG") && strings.EqualFold(m.Param(0), nick) {
			out = append(out, m)
		}
	}
	return out
}

// sync makes sure otrbnc has handled everything sent before by the
// server and by client c, and written out everything it queued upstream
// in reaction: a server NOTICE must reach c, then a command from c must
// reach the server.
func (fn *fakeNet) sync(c *testConn) {
	fn.t.Helper()
	tok := fmt.Sprintf("sync%d", time.Now().UnixNano())
	fn.s.send(":srv NOTICE alice :" + tok)
	c.expect("sync notice", func(m *irc.Message) bool { return m.Command == "NOTICE" && m.Trailing() == tok })
	c.send("MOTD " + tok)
	deadline := time.Now().Add(testTimeout)
	for {
		select {
		case m := <-fn.other:
			if m.Command == "MOTD" && m.Param(0) == tok {
				return
			}
		case <-time.After(time.Until(deadline)):
			fn.t.Fatalf("sync: otrbnc did not pass MOTD on")
		}
	}
}

// fakePeer is a nick on the fakeNet with its own OTR engine.
type fakePeer struct {
	fn     *fakeNet
	nick   string
	prefix string
	mu     sync.Mutex
	conv   *otrcore.Conversation
	texts  chan string
	events chan otrcore.Event
	// got receives every raw message otrbnc sent to this nick.
	got chan *irc.Message
}

// addPeer puts nick on the network with OTR key k.
func (fn *fakeNet) addPeer(nick string, k *otrcore.PrivateKey, tag uint32) *fakePeer {
	p := &fakePeer{
		fn: fn, nick: nick, prefix: nick + "!" + nick + "@peer.test",
		texts: make(chan string, 1000), events: make(chan otrcore.Event, 1000), got: make(chan *irc.Message, 10000),
	}
	p.conv = otrcore.NewConversation(&otrcore.Account{Key: k, InstanceTag: tag}, "alice", otrcore.Options{Policy: otrcore.PolicyManual, MaxMessageSize: 400})
	fn.mu.Lock()
	fn.peers[strings.ToLower(nick)] = p
	fn.mu.Unlock()
	return p
}

func (p *fakePeer) handle(m *irc.Message) {
	p.got <- m
	if m.Command != "PRIVMSG" {
		return
	}
	p.mu.Lock()
	res, err := p.conv.Receive(time.Now(), m.Trailing())
	p.mu.Unlock()
	if err != nil {
		p.fn.t.Logf("peer %s: %v", p.nick, err)
	}
	p.apply(res)
	if res.HasText {
		p.texts <- res.Text
	}
}

func (p *fakePeer) apply(res otrcore.Result) {
	for _, b := range res.Send {
		for _, l := range b.Lines {
			p.fn.s.send(":" + p.prefix + " PRIVMSG alice :" + l)
		}
	}
	for _, ev := range res.Events {
		p.events <- ev
	}
}

// do runs f on the peer's conversation and sends what it produced.
func (p *fakePeer) do(f func(c *otrcore.Conversation) (otrcore.Result, error)) {
	p.fn.t.Helper()
	p.mu.Lock()
	res, err := f(p.conv)
	p.mu.Unlock()
	if err != nil {
		p.fn.t.Fatalf("peer %s: %v", p.nick, err)
	}
	p.apply(res)
}

func (p *fakePeer) start() {
	p.do(func(c *otrcore.Conversation) (otrcore.Result, error) { return c.Start(time.Now()) })
}

func (p *fakePeer) say(text string) {
	p.do(func(c *otrcore.Conversation) (otrcore.Result, error) { return c.Send(time.Now(), text) })
}

// raw sends a line as this peer, bypassing OTR.
func (p *fakePeer) raw(line string) { p.fn.s.send(":" + p.prefix + " " + line) }

func (p *fakePeer) expectText(sub string) string {
	p.fn.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case s := <-p.texts:
			if strings.Contains(s, sub) {
				return s
			}
		case <-timer.C:
			p.fn.t.Fatalf("peer %s: no text %q", p.nick, sub)
			return ""
		}
	}
}

func (p *fakePeer) expectEvent(k otrcore.EventKind) otrcore.Event {
	p.fn.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case ev := <-p.events:
			if ev.Kind == k {
				return ev
			}
		case <-timer.C:
			p.fn.t.Fatalf("peer %s: no event %s", p.nick, k)
			return otrcore.Event{}
		}
	}
}

// encrypted reports the peer's side of the session.
func (p *fakePeer) status() otrcore.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conv.Status()
}

// secure runs an AKE started by the peer and waits for both sides.
func (p *fakePeer) secure(c *testConn) {
	p.fn.t.Helper()
	p.start()
	c.expect("gone secure", serviceSays("private conversation with "+p.nick+" started"))
	p.expectEvent(otrcore.EventGoneSecure)
}

// cmd sends a *otr command from c and returns the first reply line
// containing want.
func cmd(c *testConn, line, want string) *irc.Message {
	c.t.Helper()
	c.send("PRIVMSG *otr :" + line)
	return c.expect(fmt.Sprintf("reply to %q containing %q", line, want), serviceSays(want))
}

// assertPrivateFile checks that path exists with mode 0600.
func assertPrivateFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
