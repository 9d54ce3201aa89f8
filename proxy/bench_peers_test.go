//go:build linux

package proxy_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"otrbnc/otrcore"
	"otrbnc/otrcore/otrtest/libotrpeer"
	"otrbnc/proxy/ircdtest"
)

// otrEngine is the OTR implementation of a benchmark peer.
type otrEngine interface {
	// recv handles a line from `from`: what to show, and what to send back.
	recv(from, line string) (text string, delivered bool, out []string)
	// send encrypts (or not) text for `to`.
	send(to, text string) []string
	// query asks `to` for a private conversation.
	query(to string) []string
	// end ends the private conversation with `to`.
	end(to string) []string
	// encrypted reports whether the conversation with `to` is encrypted.
	encrypted(to string) bool
}

// goOTR is an in-process otrcore engine: one Conversation per peer name.
type goOTR struct {
	mu    sync.Mutex
	acct  *otrcore.Account
	convs map[string]*otrcore.Conversation
}

func newGoOTR(tb testing.TB, key *otrcore.PrivateKey, tag uint32) *goOTR {
	tb.Helper()
	if key == nil {
		key = benchKey(tb)
	}
	return &goOTR{acct: &otrcore.Account{Key: key, InstanceTag: tag}, convs: map[string]*otrcore.Conversation{}}
}

// benchKey generates a DSA key (9 ms to 200 ms).
func benchKey(tb testing.TB) *otrcore.PrivateKey {
	tb.Helper()
	k, err := otrcore.GeneratePrivateKey(rand.Reader)
	if err != nil {
		tb.Fatalf("generating a DSA key: %v", err)
	}
	return k
}

func (e *goOTR) conv(peer string) *otrcore.Conversation {
	c := e.convs[peer]
	if c == nil {
		c = otrcore.NewConversation(e.acct, peer, otrcore.Options{Policy: otrcore.PolicyManual, MaxMessageSize: 400})
		e.convs[peer] = c
	}
	return c
}

func flatLines(res otrcore.Result) []string {
	var out []string
	for _, b := range res.Send {
		out = append(out, b.Lines...)
	}
	return out
}

func (e *goOTR) recv(from, line string) (string, bool, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, _ := e.conv(from).Receive(time.Now(), line)
	return res.Text, res.HasText, flatLines(res)
}

func (e *goOTR) send(to, text string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, _ := e.conv(to).Send(time.Now(), text)
	return flatLines(res)
}

func (e *goOTR) query(to string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, err := e.conv(to).Start(time.Now())
	if err != nil {
		return nil
	}
	return flatLines(res)
}

func (e *goOTR) end(to string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return flatLines(e.conv(to).End(time.Now()))
}

func (e *goOTR) encrypted(to string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conv(to).Status().State == otrcore.StateEncrypted
}

// cOTR is libotr 4.1.1 in its C peer process (stdin/stdout pipes).
type cOTR struct {
	tb testing.TB
	p  *libotrpeer.Peer
}

func newCOTR(tb testing.TB, account string) *cOTR {
	tb.Helper()
	libotrpeer.Require(tb)
	p, err := libotrpeer.Start(context.Background(), libotrpeer.Options{Account: account, Dir: tb.TempDir(),
		Policy: libotrpeer.PolicyManual, MaxMessageSize: 400})
	if err != nil {
		tb.Fatalf("starting the libotr peer: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return &cOTR{tb: tb, p: p}
}

func (e *cOTR) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), benchWait)
}

func (e *cOTR) recv(from, line string) (string, bool, []string) {
	ctx, cancel := e.ctx()
	defer cancel()
	r, err := e.p.Recv(ctx, from, line)
	if err != nil {
		e.tb.Logf("libotr recv: %v", err)
	}
	return r.Text, r.Delivered, r.Out
}

func (e *cOTR) send(to, text string) []string {
	ctx, cancel := e.ctx()
	defer cancel()
	r, err := e.p.Send(ctx, to, text)
	if err != nil {
		e.tb.Logf("libotr send: %v", err)
	}
	return r.Out
}

func (e *cOTR) query(to string) []string {
	ctx, cancel := e.ctx()
	defer cancel()
	r, _ := e.p.Query(ctx, to)
	return r.Out
}

func (e *cOTR) end(to string) []string {
	ctx, cancel := e.ctx()
	defer cancel()
	r, _ := e.p.End(ctx, to)
	return r.Out
}

func (e *cOTR) encrypted(to string) bool {
	ctx, cancel := e.ctx()
	defer cancel()
	st, err := e.p.Status(ctx, to)
	return err == nil && st.Encrypted()
}

// echoPeer is an OTR user on the IRC server that answers every delivered
// message whose text starts with "r " with an (encrypted) "ack " + text. It
// records when it delivered each message and counts order errors.
type echoPeer struct {
	nick string
	c    *ircConn
	eng  otrEngine
	// onText, when set, is called for every delivered text (before the
	// answer is sent) with the time the line was read.
	onText func(from, text string, at time.Time)
	// answer is whether "r " messages are acknowledged.
	answer atomic.Bool
	done   chan struct{}
}

func startEchoPeer(tb testing.TB, ircAddr, nick string, eng otrEngine) *echoPeer {
	tb.Helper()
	p := &echoPeer{nick: nick, c: registerIRCUser(tb, ircAddr, nick), eng: eng, done: make(chan struct{})}
	p.answer.Store(true)
	return p
}

// run handles the peer's traffic until the connection closes.
func (p *echoPeer) run() {
	defer close(p.done)
	for im := range p.c.in {
		m := im.m
		if m.Command != "PRIVMSG" || !strings.EqualFold(m.Param(0), p.nick) {
			continue
		}
		from := m.Prefix.Name
		text, delivered, out := p.eng.recv(from, m.Trailing())
		var lines []string
		for _, l := range out {
			lines = append(lines, "PRIVMSG "+from+" :"+l)
		}
		if delivered && p.onText != nil {
			p.onText(from, text, im.at)
		}
		if delivered && strings.HasPrefix(text, "r ") && p.answer.Load() {
			for _, l := range p.eng.send(from, "ack "+text) {
				lines = append(lines, "PRIVMSG "+from+" :"+l)
			}
		}
		if len(lines) > 0 {
			p.c.send(lines...)
		}
	}
}

// ---------------------------------------------------------------------
// ngIRCd with TCP_NODELAY

// nodelayShim is an LD_PRELOAD library that sets TCP_NODELAY on every
// socket ngIRCd accepts (ngIRCd 26 sets only SO_REUSEADDR and IP_TOS, so
// its writes are subject to Nagle's algorithm).
const nodelayShim = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd) {
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int accept(int s, struct sockaddr *a, socklen_t *l) {
	static int (*real)(int, struct sockaddr *, socklen_t *);
	if (!real)
		real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
	int fd = real(s, a, l);
	nodelay(fd);
	return fd;
}

int accept4(int s, struct sockaddr *a, socklen_t *l, int flags) {
	static int (*real)(int, struct sockaddr *, socklen_t *, int);
	if (!real)
		real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
	int fd = real(s, a, l, flags);
	nodelay(fd);
	return fd;
}
`

// startNgircdNoDelay runs ngIRCd like ircdtest.Start(tb, relaxed), with
// TCP_NODELAY on its client sockets (through nodelayShim; the system C
// compiler builds it). It returns the server's address.
func startNgircdNoDelay(tb testing.TB, relaxed bool) string {
	tb.Helper()
	addr, _ := startNgircdNoDelayLog(tb, relaxed)
	return addr
}

// startNgircdNoDelayLog is startNgircdNoDelay that also returns ngIRCd's
// log (it logs every registration and closed connection to its standard
// output in the foreground).
func startNgircdNoDelayLog(tb testing.TB, relaxed bool) (string, *procLog) {
	tb.Helper()
	bin := ircdtest.Path(tb)
	cc, err := exec.LookPath("cc")
	if err != nil {
		tb.Skip("no C compiler for the TCP_NODELAY shim of ngIRCd")
	}
	dir := tb.TempDir()
	os.Chmod(dir, 0o755)
	src, so := filepath.Join(dir, "nodelay.c"), filepath.Join(dir, "nodelay.so")
	if err := os.WriteFile(src, []byte(nodelayShim), 0o644); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-O2", "-o", so, src, "-ldl").CombinedOutput(); err != nil {
		tb.Fatalf("building the TCP_NODELAY shim: %v\n%s", err, out)
	}
	port := ircdtest.FreePort(tb)
	conf := ircdtest.Config(port, relaxed)
	path := filepath.Join(dir, "ngircd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-f", path)
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+so)
	log := newProcLog()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting ngircd: %v", err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(tb, "ngircd", addr, log)
	return addr, log
}
