package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"otrbnc/proxy/config"

	"gopkg.in/irc.v4"
)

// fakeServer accepts connections and hands them to the test.
func fakeServer(t *testing.T, tc *tls.Config) (string, chan *testConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan *testConn, 16)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- newTestConn(t, nc, false)
		}
	}()
	return ln.Addr().String(), conns
}

func nextConn(t *testing.T, conns chan *testConn) *testConn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(testTimeout):
		t.Fatal("otrbnc did not connect")
		return nil
	}
}

func hasParam(cmd, p0 string) func(*irc.Message) bool {
	return func(m *irc.Message) bool { return m.Command == cmd && (p0 == "" || m.Param(0) == p0) }
}

func TestUpstreamSASLPlainNickFallbackAndFiltering(t *testing.T) {
	t.Parallel()
	addr, conns := fakeServer(t, nil)
	cfg := testConfig(addr)
	cfg.Network[0].SASL = config.SASLConfig{Mechanism: "plain", Username: "acct", Password: "s3cret"}
	env := startProxy(t, cfg, Options{})
	s := nextConn(t, conns)
	s.expect("CAP LS", hasParam("CAP", "LS"))
	s.expect("NICK alice", hasParam("NICK", "alice"))
	s.expect("USER", isCmd("USER"))
	s.send(":srv CAP * LS * :multi-prefix", ":srv CAP * LS :sasl=PLAIN,EXTERNAL chghost", ":srv 433 * alice :Nickname is already in use")
	req := s.expect("CAP REQ", hasParam("CAP", "REQ"))
	s.expect("fallback nick", hasParam("NICK", "alice_"))
	if !strings.Contains(req.Trailing(), "sasl") {
		t.Fatalf("CAP REQ %q lacks sasl", req.Trailing())
	}
	s.send(":srv CAP * ACK :" + req.Trailing())
	s.expect("AUTHENTICATE PLAIN", hasParam("AUTHENTICATE", "PLAIN"))
	s.send("AUTHENTICATE +")
	m := s.expect("SASL payload", isCmd("AUTHENTICATE"))
	raw, _ := base64.StdEncoding.DecodeString(m.Param(0))
	if string(raw) != "acct\x00acct\x00s3cret" {
		t.Fatalf("SASL payload %q", raw)
	}
	s.send(":srv 903 alice_ :SASL authentication successful")
	s.expect("CAP END", hasParam("CAP", "END"))
	s.send(":srv 001 alice_ :Welcome alice_!~u@real.host", ":srv 005 alice_ CHANTYPES=# CASEMAPPING=ascii :are supported", ":srv 376 alice_ :End of MOTD")
	s.expect("WHO on ourselves", hasParam("WHO", "alice_"))
	s.send(":srv 352 alice_ * ~u visible.host srv alice_ H :0 u", ":srv 315 alice_ alice_ :End of WHO")
	env.waitUp()

	c := registerClient(t, env.addr, "someone", "znc.in/self-message")
	env.inNetwork(func(n *network) {
		if n.nick != "alice_" || n.user != "~u" || n.host != "visible.host" || n.casemap != caseASCII {
			t.Errorf("learnt %s!%s@%s casemap %d", n.nick, n.user, n.host, n.casemap)
		}
		n.peer("carol") // a conversation that exists before our host changes
	})
	// Our host changes: the fragment budget follows.
	s.send(":srv 396 alice_ "+strings.Repeat("c", 60)+" :is now your displayed host", ":alice_!~u@x CHGHOST ~vv "+strings.Repeat("h", 63))
	s.send(
		"@a ", // parses to nothing; must not hurt
		":"+strings.Repeat("x", 9000)+" PRIVMSG alice_ :over-long line",
		":alice_!~u@h PRIVMSG bob :?OTR:AAMDechoofourciphertext.", // our own echo
		":*otr!evil@h PRIVMSG alice_ :I am not the service",       // fake service
		":alice_!~u@h PRIVMSG bob :plaintext echo from elsewhere", // self-message, plain
		":srv NOTICE alice_ :server notice",
		":bob!b@h NOTICE alice_ :notice in clear",
		":bob!b@h PRIVMSG alice_ :\x01VERSION\x01",
		":bob!b@h PRIVMSG #chan :channel text",
	)
	c.expect("plain self-message", privmsgFrom("alice_", "plaintext echo"))
	c.expect("server notice", func(m *irc.Message) bool { return m.Command == "NOTICE" && m.Trailing() == "server notice" })
	c.expect("notice", func(m *irc.Message) bool { return m.Command == "NOTICE" && m.Trailing() == "notice in clear" })
	c.expect("CTCP in clear", privmsgFrom("bob", "\x01VERSION\x01"))
	c.expect("channel text", privmsgFrom("bob", "channel text"))
	for _, l := range c.seenLines() {
		if strings.Contains(l, "?OTR") || strings.Contains(l, "not the service") || strings.Contains(l, "over-long") {
			t.Errorf("client saw %q", l)
		}
	}
	env.inNetwork(func(n *network) {
		if n.user != "~vv" || len(n.host) != 63 {
			t.Errorf("CHGHOST not applied: %s@%s", n.user, n.host)
		}
		if got, want := n.decidePolicy("bob").fragSize, fragmentSize("alice_", "~vv", strings.Repeat("h", 63), "bob"); got != want {
			t.Errorf("fragSize = %d, want %d", got, want)
		}
		// An existing conversation learnt it when the host changed, not on
		// its next use.
		if got, want := n.otr.peers["carol"].fragSize, fragmentSize("alice_", "~vv", strings.Repeat("h", 63), "carol"); got != want {
			t.Errorf("carol's fragment size = %d, want %d", got, want)
		}
	})
	// Server PING is answered.
	s.send("PING :tok")
	s.expect("PONG", func(m *irc.Message) bool { return m.Command == "PONG" && m.Trailing() == "tok" })
}

func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der
}

func TestUpstreamTLSVerificationAndPinning(t *testing.T) {
	t.Parallel()
	cert, der := selfSigned(t)
	addr, conns := fakeServer(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	go func() {
		for c := range conns {
			go func() { <-c.in }() // let handshakes complete
		}
	}()
	sum := sha256.Sum256(der)
	good := hex.EncodeToString(sum[:])
	bad := strings.Repeat("00", 32)
	cases := []struct {
		name, pin string
		ok        bool
	}{
		{"CA verification refuses a self-signed certificate", "", false},
		{"matching pin", good, true},
		{"matching pin with colons", strings.ToUpper(good[:2]) + ":" + good[2:], true},
		{"wrong pin", bad, false},
	}
	for _, c := range cases {
		cfg := config.NetworkConfig{Address: "ircs://" + addr, Nick: "alice", TLSFingerprint: c.pin}
		if err := cfg.ApplyDefaults(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		uc, err := dialUpstream(ctx, &cfg, pacingFor(&cfg, "", false, 0), nil)
		cancel()
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
		if uc != nil {
			uc.Close()
		}
	}
}

// pipeConn returns an ircConn on one end of a loopback TCP pair and a
// testConn on the other.
func pipeConn(t *testing.T, opts connOptions) (*ircConn, *testConn) {
	t.Helper()
	a, b := tcpPair(t)
	uc := newIRCConn(a, opts)
	t.Cleanup(uc.Close)
	return uc, newTestConn(t, b, false)
}

func TestUpstreamSASLExternal(t *testing.T) {
	t.Parallel()
	uc, s := pipeConn(t, connOptions{})
	cfg := config.NetworkConfig{Address: "irc+insecure://x", Nick: "alice", TLSClientCert: "c", TLSClientKey: "k", SASL: config.SASLConfig{Mechanism: "external"}}
	if err := cfg.ApplyDefaults(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		reg *registration
		err error
	}
	res := make(chan result, 1)
	go func() {
		reg, err := registerUpstream(context.Background(), uc, &cfg)
		res <- result{reg, err}
	}()
	s.expect("CAP LS", hasParam("CAP", "LS"))
	s.send(":srv CAP * LS :sasl")
	s.expect("CAP REQ", hasParam("CAP", "REQ"))
	s.send(":srv CAP * ACK :sasl")
	s.expect("AUTHENTICATE EXTERNAL", hasParam("AUTHENTICATE", "EXTERNAL"))
	s.send("AUTHENTICATE +")
	s.expect("empty response", hasParam("AUTHENTICATE", "+"))
	s.send(":srv 904 alice :SASL authentication failed")
	r := <-res
	if r.err == nil || !strings.Contains(r.err.Error(), "SASL") {
		t.Fatalf("SASL failure not reported: %v", r.err)
	}
}

func TestConnPingTimeout(t *testing.T) {
	t.Parallel()
	uc, s := pipeConn(t, connOptions{pingInterval: 100 * time.Millisecond, pingTimeout: 100 * time.Millisecond})
	go func() { // what is read must be taken for reading to go on
		for range uc.In() {
		}
	}()
	s.expect("keepalive PING", isCmd("PING"))
	s.send("PONG :otrbnc") // any traffic keeps it alive
	s.expect("second PING", isCmd("PING"))
	select {
	case <-uc.Done():
		if !strings.Contains(uc.Err().Error(), "ping timeout") {
			t.Errorf("closed with %v", uc.Err())
		}
	case <-time.After(testTimeout):
		t.Fatal("dead connection not detected")
	}
}

func TestConnBatchesAtomicAndPaced(t *testing.T) {
	t.Parallel()
	const interval = 5 * time.Millisecond
	uc, s := pipeConn(t, connOptions{pacer: newPacer(pacing{burst: 1, interval: interval}, nil)})
	batch := func(tag string) []string {
		var b []string
		for i := range 8 {
			b = append(b, "PRIVMSG bob :"+tag+string(rune('0'+i)))
		}
		return b
	}
	start := time.Now()
	done := make(chan bool, 2)
	go func() { done <- uc.Send(batch("A")...) }()
	go func() { done <- uc.Send(batch("B")...) }()
	time.Sleep(2 * interval)
	uc.sendPriority("PONG :x")
	if !<-done || !<-done {
		t.Fatal("Send refused")
	}
	var order []string
	for len(order) < 17 {
		m := s.expect("line", func(*irc.Message) bool { return true })
		order = append(order, m.Trailing())
	}
	if time.Since(start) < 14*interval {
		t.Errorf("16 paced lines took only %v", time.Since(start))
	}
	joined := strings.Join(order, " ")
	for _, tag := range []string{"A", "B"} {
		i := strings.Index(joined, tag+"0")
		want := tag + "0 " + tag + "1 " + tag + "2 " + tag + "3 " + tag + "4 " + tag + "5 " + tag + "6 " + tag + "7"
		if i < 0 || !strings.HasPrefix(joined[i:], want) {
			t.Errorf("batch %s interleaved: %s", tag, joined)
		}
	}
	// Shutdown flushes what is queued.
	uc.Send(batch("C")...)
	uc.Shutdown(time.Second)
	for i := range 8 {
		m := s.expect("flushed line", isCmd("PRIVMSG"))
		if m.Trailing() != "C"+string(rune('0'+i)) {
			t.Fatalf("flushed %q", m.Trailing())
		}
	}
	if uc.Send("PRIVMSG bob :late") {
		t.Error("Send after close accepted")
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff(time.Second, 8*time.Second)
	for i, base := range []time.Duration{1, 2, 4, 8, 8, 8} {
		d := b.next()
		base *= time.Second
		if d < base || d > base+base/4 {
			t.Errorf("attempt %d: %v not in [%v, %v]", i, d, base, base+base/4)
		}
	}
	b.reset()
	if d := b.next(); d > time.Second+time.Second/4 {
		t.Errorf("after reset: %v", d)
	}
}

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestShutdownIsNotADisconnect checks that an orderly shutdown, which
// closes the upstream connection itself, is not logged as a lost
// connection to be retried. It drives upstreamLoop the way run does: the
// network's context ends, shutdown closes the connection, and only then
// is the connector's context cancelled.
func TestShutdownIsNotADisconnect(t *testing.T) {
	t.Parallel()
	addr, conns := fakeServer(t, nil)
	cfg := testConfig(addr)
	if err := cfg.ApplyDefaults(); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	srv, err := NewServer(cfg, Options{Identities: testIdentities(t, cfg), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n := srv.networks[0]
	stopping, stop := context.WithCancel(context.Background())
	defer stop()
	n.ctx = stopping // as run sets it
	connCtx, cancelConn := context.WithCancel(context.Background())
	defer cancelConn()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.upstreamLoop(connCtx)
	}()
	fn := &fakeNet{t: t, s: nextConn(t, conns), peers: map[string]*fakePeer{}, other: make(chan *irc.Message, 100)}
	go fn.serve()
	var uc *ircConn
	for timeout := time.After(testTimeout); uc == nil; {
		select {
		case ev := <-n.events:
			if up, ok := ev.(evUpstreamUp); ok {
				uc = up.uc
			}
		case <-timeout:
			t.Fatal("the upstream never registered")
		}
	}

	stop()
	uc.Send("QUIT :otrbnc shutting down")
	uc.Shutdown(time.Second)
	waitFor := time.Now().Add(testTimeout)
	for !strings.Contains(logs.String(), "upstream closed") && !strings.Contains(logs.String(), "upstream disconnected") {
		if time.Now().After(waitFor) {
			t.Fatalf("nothing logged about the closed upstream:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancelConn()
	<-done
	out := logs.String()
	if strings.Contains(out, "upstream disconnected") || strings.Contains(out, "retry_in") {
		t.Errorf("shutdown logged as a disconnect:\n%s", out)
	}
	if !strings.Contains(out, `level=INFO msg="upstream closed: otrbnc is shutting down"`) {
		t.Errorf("the closed upstream is not logged as part of the shutdown:\n%s", out)
	}
}
