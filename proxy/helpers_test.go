package proxy

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/irc.v4"

	"otrbnc/keystore"
	"otrbnc/otrcore"
	"otrbnc/proxy/config"
	"otrbnc/proxy/ircdtest"
)

const (
	testPassword = "correct horse"
	testTimeout  = 20 * time.Second
)

// testKeys generates a few OTR keys once for the whole test binary.
var testKeys = sync.OnceValues(func() ([]*otrcore.PrivateKey, error) {
	var keys []*otrcore.PrivateKey
	for range 3 {
		k, err := otrcore.GeneratePrivateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
})

func testKey(t testing.TB, i int) *otrcore.PrivateKey {
	t.Helper()
	keys, err := testKeys()
	if err != nil {
		t.Fatalf("generating keys: %v", err)
	}
	return keys[i]
}

// testPasswordHash is a cheap bcrypt hash of testPassword.
var testPasswordHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// ---------------------------------------------------------------------
// A raw IRC client (or server-side connection) for tests.

type testConn struct {
	t    testing.TB
	nc   net.Conn
	in   chan *irc.Message
	mu   sync.Mutex
	seen []string // every raw line read
	// autoPong answers PING.
	autoPong bool
}

func newTestConn(t testing.TB, nc net.Conn, autoPong bool) *testConn {
	c := &testConn{t: t, nc: nc, in: make(chan *irc.Message, 100000), autoPong: autoPong}
	go func() {
		defer close(c.in)
		lr := newLineReader(nc, maxLineLen)
		for {
			line, err := lr.readLine()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.seen = append(c.seen, line)
			c.mu.Unlock()
			m, err := parseLine(line)
			if err != nil {
				continue
			}
			if c.autoPong && m.Command == "PING" {
				c.send("PONG :" + m.Param(0))
				continue
			}
			c.in <- m
		}
	}()
	t.Cleanup(func() { nc.Close() })
	return c
}

func dialTest(t testing.TB, addr string) *testConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return newTestConn(t, nc, true)
}

func (c *testConn) send(lines ...string) {
	for _, l := range lines {
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.nc.Write([]byte(l + "\r\n")); err != nil {
			c.t.Logf("write: %v", err)
			return
		}
	}
}

func (c *testConn) seenLines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

// expect waits for a message matching pred, discarding others.
func (c *testConn) expect(what string, pred func(m *irc.Message) bool) *irc.Message {
	c.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %s", what)
			}
			if pred(m) {
				return m
			}
		case <-timer.C:
			c.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// expectClosed waits for the connection to end.
func (c *testConn) expectClosed() {
	c.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				return
			}
		case <-timer.C:
			c.t.Fatalf("connection not closed")
		}
	}
}

func isCmd(cmd string) func(*irc.Message) bool {
	return func(m *irc.Message) bool { return m.Command == cmd }
}

// serviceSays matches a *otr line containing sub.
func serviceSays(sub string) func(*irc.Message) bool {
	return func(m *irc.Message) bool {
		return (m.Command == "PRIVMSG" || m.Command == "NOTICE") && m.Prefix.Name == serviceNick && strings.Contains(m.Trailing(), sub)
	}
}

// privmsgFrom matches a PRIVMSG from nick whose text contains sub.
func privmsgFrom(nick, sub string) func(*irc.Message) bool {
	return func(m *irc.Message) bool {
		return m.Command == "PRIVMSG" && m.Prefix.Name == nick && strings.Contains(m.Trailing(), sub)
	}
}

// registerClient logs in to otrbnc with PASS.
func registerClient(t testing.TB, addr, nick string, caps ...string) *testConn {
	t.Helper()
	return register(t, addr, nick, "test", caps)
}

// register logs in to otrbnc with PASS as nick and username user,
// requesting caps first.
func register(t testing.TB, addr, nick, user string, caps []string) *testConn {
	t.Helper()
	c := dialTest(t, addr)
	if len(caps) > 0 {
		c.send("CAP LS 302", "CAP REQ :"+strings.Join(caps, " "))
		c.expect("CAP ACK", func(m *irc.Message) bool { return m.Command == "CAP" && m.Param(1) == "ACK" })
		c.send("CAP END")
	}
	c.send("PASS :"+testPassword, "NICK "+nick, "USER "+user+" 0 * :test")
	c.expect("001", isCmd("001"))
	return c
}

// registerIRC registers a plain IRC user on a server (ngircd).
func registerIRC(t testing.TB, addr, nick string) *testConn {
	t.Helper()
	c := dialTest(t, addr)
	c.send("NICK "+nick, "USER "+nick+" 0 * :"+nick)
	c.expect("001", isCmd("001"))
	return c
}

// ---------------------------------------------------------------------
// ngIRCd

// startNgircd runs a private ngIRCd (see ircdtest.Start).
func startNgircd(t testing.TB, relaxed bool) *ircdtest.Server { return ircdtest.Start(t, relaxed) }

// freePort returns a free loopback TCP port.
func freePort(t testing.TB) int { return ircdtest.FreePort(t) }

// ---------------------------------------------------------------------
// otrbnc under test

type proxyEnv struct {
	t      testing.TB
	srv    *Server
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
	ids    KeystoreIdentities
	cfg    *config.Config
}

// testIdentities opens a keystore in a temporary directory with an
// account per network of cfg, holding one of the test keys (so that no
// test waits for key generation). The store is closed when the test ends.
func testIdentities(t testing.TB, cfg *config.Config) KeystoreIdentities {
	t.Helper()
	store, err := keystore.Open(t.TempDir(), keystore.Options{})
	if err != nil {
		t.Fatalf("keystore: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	for i, n := range cfg.Network {
		acct, err := store.Account(n.Name)
		if err != nil {
			t.Fatalf("keystore account: %v", err)
		}
		if _, err := acct.ReplaceKey(context.Background(), testKey(t, i%2).DSA()); err != nil {
			t.Fatalf("keystore key: %v", err)
		}
	}
	return KeystoreIdentities{Store: store}
}

// testConfig returns a valid config for one network at upstream.
func testConfig(upstream string) *config.Config {
	return &config.Config{
		PasswordHash: testPasswordHash(),
		Listen:       []config.ListenConfig{{Address: "127.0.0.1:0"}},
		Network: []config.NetworkConfig{{
			Name:         "test",
			Address:      "irc+insecure://" + upstream,
			Nick:         "alice",
			Pacing:       config.PacingOff,
			ReconnectMin: config.Duration{Duration: 50 * time.Millisecond},
			ReconnectMax: config.Duration{Duration: 300 * time.Millisecond},
		}},
	}
}

// startProxy runs otrbnc with cfg (defaults applied here).
func startProxy(t testing.TB, cfg *config.Config, opts Options) *proxyEnv {
	t.Helper()
	if err := cfg.ApplyDefaults(); err != nil {
		t.Fatalf("config: %v", err)
	}
	ids, _ := opts.Identities.(KeystoreIdentities)
	if opts.Identities == nil {
		ids = testIdentities(t, cfg)
		opts.Identities = ids
	}
	if opts.TickInterval == 0 {
		opts.TickInterval = 200 * time.Millisecond
	}
	if testing.Verbose() && opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	srv, err := NewServer(cfg, opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	env := &proxyEnv{t: t, srv: srv, addr: srv.Addrs()[0].String(), cancel: cancel, done: make(chan struct{}), ids: ids, cfg: cfg}
	go func() {
		defer close(env.done)
		srv.Serve(ctx)
	}()
	t.Cleanup(env.stop)
	return env
}

func (e *proxyEnv) stop() {
	e.cancel()
	select {
	case <-e.done:
	case <-time.After(15 * time.Second):
		e.t.Errorf("otrbnc did not shut down")
	}
}

func (e *proxyEnv) network() *network { return e.srv.networks[0] }

// inNetwork runs f in the network goroutine.
func (e *proxyEnv) inNetwork(f func(n *network)) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if !e.network().call(ctx, f) {
		e.t.Fatalf("network goroutine did not answer")
	}
}

// waitUp waits until the upstream is registered and past its welcome.
func (e *proxyEnv) waitUp() {
	e.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		up := false
		e.inNetwork(func(n *network) { up = n.up != nil && !n.burst && n.host != "" })
		if up {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("upstream never came up")
}

// testLogger logs through t.Logf.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// testClock is a settable clock for Options.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// advance moves the clock forward.
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
