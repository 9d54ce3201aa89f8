package proxy

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
	"otrbnc/otrcore/otrtest/libotrpeer"
)

// peerEngine is the OTR implementation of a test peer.
type peerEngine interface {
	recv(ctx context.Context, from, line string) (text string, delivered bool, out []string, err error)
	send(ctx context.Context, to, text string) ([]string, error)
	query(ctx context.Context, to string) ([]string, error)
	end(ctx context.Context, to string) ([]string, error)
}

// libotrEngine drives libotr 4.1.1 (a C process).
type libotrEngine struct{ p *libotrpeer.Peer }

func newLibotrEngine(t testing.TB, nick string, pol libotrpeer.Policy) *libotrEngine {
	t.Helper()
	libotrpeer.Require(t)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := libotrpeer.Start(ctx, libotrpeer.Options{Account: nick, Dir: t.TempDir(), Policy: pol, MaxMessageSize: 400})
	if err != nil {
		cancel()
		t.Fatalf("starting libotr peer: %v", err)
	}
	t.Cleanup(func() { p.Close(); cancel() })
	return &libotrEngine{p: p}
}

func (e *libotrEngine) recv(ctx context.Context, from, line string) (string, bool, []string, error) {
	r, err := e.p.Recv(ctx, from, line)
	return r.Text, r.Delivered, r.Out, err
}

func (e *libotrEngine) send(ctx context.Context, to, text string) ([]string, error) {
	r, err := e.p.Send(ctx, to, text)
	return r.Out, err
}

func (e *libotrEngine) query(ctx context.Context, to string) ([]string, error) {
	r, err := e.p.Query(ctx, to)
	return r.Out, err
}

func (e *libotrEngine) end(ctx context.Context, to string) ([]string, error) {
	r, err := e.p.End(ctx, to)
	return r.Out, err
}

// goEngine is an in-process otrcore peer.
type goEngine struct {
	mu    sync.Mutex
	acct  *otrcore.Account
	pol   otrcore.Policy
	convs map[string]*otrcore.Conversation
}

func newGoEngine(key *otrcore.PrivateKey, tag uint32, pol otrcore.Policy) *goEngine {
	return &goEngine{acct: &otrcore.Account{Key: key, InstanceTag: tag}, pol: pol, convs: map[string]*otrcore.Conversation{}}
}

func (e *goEngine) conv(peer string) *otrcore.Conversation {
	c := e.convs[peer]
	if c == nil {
		c = otrcore.NewConversation(e.acct, peer, otrcore.Options{Policy: e.pol, MaxMessageSize: 400})
		e.convs[peer] = c
	}
	return c
}

func flatten(res otrcore.Result) []string {
	var out []string
	for _, b := range res.Send {
		out = append(out, b.Lines...)
	}
	return out
}

func (e *goEngine) recv(ctx context.Context, from, line string) (string, bool, []string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, err := e.conv(from).Receive(time.Now(), line)
	return res.Text, res.HasText, flatten(res), err
}

func (e *goEngine) send(ctx context.Context, to, text string) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, err := e.conv(to).Send(time.Now(), text)
	return flatten(res), err
}

func (e *goEngine) query(ctx context.Context, to string) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, err := e.conv(to).Start(time.Now())
	return flatten(res), err
}

func (e *goEngine) end(ctx context.Context, to string) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return flatten(e.conv(to).End(time.Now())), nil
}

// ircPeer is an OTR user connected directly to the IRC server.
type ircPeer struct {
	t     testing.TB
	nick  string
	c     *testConn
	eng   peerEngine
	texts chan peerText
	raw   chan *irc.Message
	// privmsgs counts private messages received, readable or not.
	privmsgs atomic.Int64
}

type peerText struct{ from, text string }

func newIRCPeer(t testing.TB, addr, nick string, eng peerEngine) *ircPeer {
	t.Helper()
	p := &ircPeer{t: t, nick: nick, c: registerIRC(t, addr, nick), eng: eng,
		texts: make(chan peerText, 10000), raw: make(chan *irc.Message, 10000)}
	go p.pump()
	return p
}

func (p *ircPeer) pump() {
	ctx := context.Background()
	for m := range p.c.in {
		if m.Command != "PRIVMSG" || !strings.EqualFold(m.Param(0), p.nick) {
			p.raw <- m
			continue
		}
		p.privmsgs.Add(1)
		from := m.Prefix.Name
		text, delivered, out, err := p.eng.recv(ctx, from, m.Trailing())
		if err != nil {
			p.t.Logf("peer %s: recv: %v", p.nick, err)
		}
		p.write(from, out)
		if delivered {
			p.texts <- peerText{from: from, text: text}
		}
	}
}

func (p *ircPeer) write(to string, lines []string) {
	for _, l := range lines {
		p.c.send("PRIVMSG " + to + " :" + l)
	}
}

func (p *ircPeer) say(to, text string) {
	p.t.Helper()
	out, err := p.eng.send(context.Background(), to, text)
	if err != nil {
		p.t.Fatalf("peer %s send: %v", p.nick, err)
	}
	p.write(to, out)
}

func (p *ircPeer) startOTR(to string) {
	p.t.Helper()
	out, err := p.eng.query(context.Background(), to)
	if err != nil {
		p.t.Fatalf("peer %s query: %v", p.nick, err)
	}
	p.write(to, out)
}

func (p *ircPeer) endOTR(to string) {
	p.t.Helper()
	out, err := p.eng.end(context.Background(), to)
	if err != nil {
		p.t.Fatalf("peer %s end: %v", p.nick, err)
	}
	p.write(to, out)
}

// expectText waits for a delivered message containing sub.
func (p *ircPeer) expectText(sub string) peerText {
	p.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case pt := <-p.texts:
			if strings.Contains(pt.text, sub) {
				return pt
			}
			p.t.Logf("peer %s: skipping text %q", p.nick, pt.text)
		case <-timer.C:
			p.t.Fatalf("peer %s: timed out waiting for %q", p.nick, sub)
		}
	}
}
