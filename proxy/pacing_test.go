package proxy

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/proxy/config"
)

func linesOf(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strings.Repeat("x", size-2) // CRLF makes size
	}
	return out
}

// A batch leaves whole or not at all, and only when both buckets have
// room for it.
func TestPacerBatchLeavesWhole(t *testing.T) {
	clk := newTestClock()
	// Lines: 4, one a second. Lag: 20 s, a second per started 100 bytes.
	p := newPacer(pacing{burst: 4, interval: time.Second, penalty: time.Second, penaltyBytes: 100, lagMax: 20 * time.Second}, clk.now)
	if !p.allow(linesOf(3, 102)) { // 100 bytes without CRLF: 2 s each
		t.Fatal("3 lines refused with full buckets")
	}
	// One line token and 14 s of lag left: two lines do not fit.
	if p.allow(linesOf(2, 50)) {
		t.Fatal("2 lines allowed with one line token left")
	}
	if d, n := p.next(linesOf(2, 50)); n != 2 || d != time.Second {
		t.Fatalf("next = %v, %d; want 1s, 2", d, n)
	}
	clk.advance(time.Second)
	if !p.allow(linesOf(2, 50)) {
		t.Fatal("2 lines refused after a second")
	}
	clk.advance(20 * time.Second) // both full
	// Four lines of 450 bytes cost 5 s of lag each: 20 s, all of it.
	if !p.allow(linesOf(4, 452)) {
		t.Fatal("20 s of lag refused with a full 20 s bucket")
	}
	clk.advance(4 * time.Second) // 4 line tokens, 4 s of lag
	if d, _ := p.next(linesOf(1, 452)); d != time.Second {
		t.Fatalf("a 5 s line with 4 s of lag left waits %v, want 1s", d)
	}
	// WHO counts two lines.
	p.take([]string{"PING a", "PING b"}) // 2 line tokens and 2 s of lag left
	if d, _ := p.next([]string{"WHO alice"}); d != 0 {
		t.Fatalf("a WHO with 2 tokens waits %v", d)
	}
	if d, _ := p.next([]string{"WHO alice", "PRIVMSG x :y"}); d != time.Second {
		t.Fatalf("a WHO and a line (3 tokens) with 2 tokens wait %v, want 1s", d)
	}
}

// A batch larger than a bucket leaves line by line instead of never.
func TestPacerLargeBatchLineByLine(t *testing.T) {
	clk := newTestClock()
	p := newPacer(pacing{burst: 2, interval: time.Second}, clk.now)
	big := linesOf(5, 50)
	d, n := p.next(big)
	if d != 0 || n != 1 {
		t.Fatalf("next(5 lines, burst 2) = %v, %d; want 0, 1", d, n)
	}
	p.take(big[:1])
	p.take(big[1:2])
	if d, n := p.next(big[2:]); d != time.Second || n != 1 {
		t.Fatalf("third line: next = %v, %d; want 1s, 1", d, n)
	}
}

// The peer lanes' gate leaves room for userReserve full lines.
func TestPacerReserve(t *testing.T) {
	clk := newTestClock()
	p := newPacer(pacing{burst: 10, interval: time.Second, penalty: time.Second, penaltyBytes: 100, lagMax: 40 * time.Second}, clk.now)
	one := linesOf(1, 102) // 2 s
	if d := p.reserveWait(one, userReserve); d != 0 {
		t.Fatalf("full buckets: reserveWait = %v", d)
	}
	p.take(linesOf(6, 402)) // 4 lines and 40-30 = 10 s of lag left
	// One more line (2 s) plus 3 full lines (6 s each) needs 20 s.
	if d := p.reserveWait(one, userReserve); d != 10*time.Second {
		t.Fatalf("reserveWait = %v, want 10s", d)
	}
}

// Slowing down halves the line rate and the burst and doubles the lag,
// down to a floor.
func TestPacingSlowed(t *testing.T) {
	p := pacing{burst: 8, interval: time.Second, penalty: time.Second, penaltyBytes: 90, lagMax: 40 * time.Second}
	got := p.slowed(2)
	want := pacing{burst: 3, interval: 4 * time.Second, penalty: 4 * time.Second, penaltyBytes: 90, lagMax: 40 * time.Second}
	if got != want {
		t.Fatalf("slowed(2) = %+v, want %+v", got, want)
	}
	if p := (pacing{burst: 2, interval: time.Second}).slowed(3); p.burst != 2 {
		t.Fatalf("a burst of 2 slowed to %d", p.burst)
	}
}

// Each server family gets its profile; an unknown one the strict one.
func TestServerPacing(t *testing.T) {
	for version, want := range map[string]pacing{
		"solanum-1.0-dev":        solanumPacing,
		"ircd-hybrid-8.2.43":     solanumPacing,
		"hybrid-7.2.2+oftc1.7.3": solanumPacing,
		"InspIRCd-3":             inspircdPacing,
		"ngircd-26.1":            ngircdPacing,
		"UnrealIRCd-6.1.4":       unrealPacing,
		"":                       strictPacing,
		"SomethingElse-1.0":      strictPacing,
	} {
		if got, _ := serverPacing(version, false); got != want {
			t.Errorf("serverPacing(%q) = %+v, want %+v", version, got, want)
		}
	}
	if got, _ := serverPacing("UnrealIRCd-6.1.4", true); got != unrealKnownPacing {
		t.Errorf("UnrealIRCd with SASL: %+v", got)
	}
}

// set keeps what the buckets hold, up to their new sizes.
func TestPacerSetKeepsDebt(t *testing.T) {
	clk := newTestClock()
	p := newPacer(pacing{burst: 8, interval: time.Second}, clk.now)
	p.take(linesOf(7, 10))
	p.set(pacing{burst: 4, interval: 2 * time.Second}, false)
	if d, _ := p.next(linesOf(2, 10)); d != 2*time.Second {
		t.Fatalf("after set: next = %v, want 2s (one token left, one more every 2s)", d)
	}
}

func TestIsFloodText(t *testing.T) {
	for text, want := range map[string]bool{
		"Closing Link: 127.0.0.1 (Excess Flood)":                                true,
		"Closing connection: alice[127.0.0.1] (Receive buffer space exhausted)": true,
		"RecvQ exceeded": true,
		"Closing Link: host (Max SendQ exceeded)":        false,
		"Closing Link: host (Ping timeout: 240 seconds)": false,
		"Closing Link: host (Quit: bye)":                 false,
	} {
		if got := isFloodText(text); got != want {
			t.Errorf("isFloodText(%q) = %v, want %v", text, got, want)
		}
	}
}

// welcomeUpstream plays a server's side of registration on s.
func welcomeUpstream(s *testConn) {
	s.expect("CAP LS", hasParam("CAP", "LS"))
	s.send(":srv CAP * LS :")
	s.expect("USER", isCmd("USER"))
	s.send(":srv 001 alice :Welcome alice!~alice@host.test", ":srv 376 alice :End of MOTD")
}

// pacedNet is otrbnc on a fake server that never names its software,
// with a line count of 8 lines, then one a second.
type pacedNet struct {
	env   *proxyEnv
	s, c  *testConn // the server's side, the user's client
	conns chan *testConn
	want  pacing // the pacing before any slow-down
}

func startPacedNet(t *testing.T) *pacedNet {
	addr, conns := fakeServer(t, nil)
	cfg := testConfig(addr)
	cfg.Network[0].Pacing = config.PacingAuto
	cfg.Network[0].RateBurst = 8
	cfg.Network[0].RateInterval = config.Duration{Duration: time.Second}
	env := startProxy(t, cfg, Options{})
	s := nextConn(t, conns)
	welcomeUpstream(s)
	c := registerClient(t, env.addr, "alice")
	env.waitUp()
	return &pacedNet{env: env, s: s, c: c, conns: conns, want: pacingFor(&cfg.Network[0], "", false, 0)}
}

// pacingNow is the pacing of the upstream connection.
func (e *proxyEnv) pacingNow() (p pacing) {
	e.inNetwork(func(n *network) { p = n.up.opts.pacer.settings() })
	return p
}

// A network that closes the connection for flooding gets a slower pacing,
// at most maxSlowdown times, and the user is told once per step.
func TestFloodCloseSlowsDown(t *testing.T) {
	t.Parallel()
	f := startPacedNet(t)
	env, s, c, conns, want := f.env, f.s, f.c, f.conns, f.want
	if got := env.pacingNow(); got != want {
		t.Fatalf("pacing %+v, want %+v", got, want)
	}
	for step := 1; step <= maxSlowdown+1; step++ {
		s.send(":srv ERROR :Closing Link: host.test (Excess Flood)")
		s.nc.Close()
		if step <= maxSlowdown {
			c.expect("told", serviceSays("closed the connection because otrbnc sent too fast"))
		} else {
			c.expect("told again", serviceSays("closed the connection for flooding again"))
		}
		s = nextConn(t, conns)
		welcomeUpstream(s)
		c.expect("reconnected", serviceSays("connected to test as alice"))
		env.waitUp()
		if got, want := env.pacingNow(), want.slowed(min(step, maxSlowdown)); got != want {
			t.Fatalf("after %d flood closes: pacing %+v, want %+v", step, got, want)
		}
	}
	told := 0
	for _, l := range c.seenLines() {
		if strings.Contains(l, "sent too fast") {
			told++
		}
	}
	if told != maxSlowdown {
		t.Errorf("told %d times about slowing down, want %d", told, maxSlowdown)
	}
}

// A server's notice about flooding slows the running connection down; the
// same words from a nick do nothing.
func TestFloodWarningSlowsDown(t *testing.T) {
	t.Parallel()
	f := startPacedNet(t)
	env, s, c, want := f.env, f.s, f.c, f.want
	s.send(":mallory!m@evil.test NOTICE alice :you are flooding, Excess Flood")
	c.expect("the nick's notice", func(m *irc.Message) bool { return m.Command == "NOTICE" && m.Prefix.Name == "mallory" })
	if got := env.pacingNow(); got != want {
		t.Fatalf("a nick's notice changed the pacing to %+v", got)
	}
	s.send(":srv.test NOTICE alice :*** You are sending too fast: Excess Flood warning")
	c.expect("told", serviceSays("warned that otrbnc sends too fast"))
	if got := env.pacingNow(); got != want.slowed(1) {
		t.Fatalf("after a server's warning: pacing %+v, want %+v", got, want.slowed(1))
	}
}

// The server's RPL_MYINFO picks the pacing, with full buckets, and status
// says which.
func TestServerVersionPicksPacing(t *testing.T) {
	t.Parallel()
	addr, conns := fakeServer(t, nil)
	cfg := testConfig(addr)
	cfg.Network[0].Pacing = config.PacingAuto
	env := startProxy(t, cfg, Options{})
	s := nextConn(t, conns)
	s.expect("CAP LS", hasParam("CAP", "LS"))
	s.send(":srv CAP * LS :")
	s.expect("USER", isCmd("USER"))
	s.send(":srv 001 alice :Welcome alice!~alice@host.test")
	s.expect("WHO after registration", isCmd("WHO"))
	if got := env.pacingNow(); got != strictPacing {
		t.Fatalf("before RPL_MYINFO: %+v, want the strict pacing", got)
	}
	s.send(":srv 004 alice srv.test InspIRCd-3 iosw biklmnopstv :bklov", ":srv 376 alice :End of MOTD")
	env.waitUp()
	c := registerClient(t, env.addr, "alice")
	if got := env.pacingNow(); got != inspircdPacing {
		t.Fatalf("after RPL_MYINFO InspIRCd-3: %+v, want %+v", got, inspircdPacing)
	}
	c.send("PRIVMSG *otr :status")
	c.expect("status", serviceSays("paced for InspIRCd: 8 lines at once, then one every 1s"))
}

// solanumModel is the flood control of solanum with its shipped defaults,
// as docs/configuration.md describes it: five lines parsed at once, then
// two a second; more than 20 lines waiting unparsed is "Excess Flood".
type solanumModel struct {
	credit  float64 // lines that may be parsed now
	waiting int     // lines received, not parsed yet
	last    time.Time
	maxWait int
}

// arrive accounts for a line received at t and reports false when the
// server would close the connection for flooding.
func (m *solanumModel) arrive(t time.Time) bool {
	if !m.last.IsZero() {
		m.credit = min(5, m.credit+2*t.Sub(m.last).Seconds())
	}
	m.last = t
	for m.waiting > 0 && m.credit >= 1 {
		m.waiting--
		m.credit--
	}
	if m.credit >= 1 {
		m.credit--
	} else {
		m.waiting++
	}
	m.maxWait = max(m.maxWait, m.waiting)
	return m.waiting <= 20
}

// TestPacingKeepsSolanumHappy: a user pastes 40 lines into a channel on a
// server that names itself solanum; a server enforcing solanum's flood
// control never has reason to disconnect otrbnc. With pacing off the same
// paste is "Excess Flood" (the test fails: OTRBNC_TEST_PACING=off).
func TestPacingKeepsSolanumHappy(t *testing.T) {
	t.Parallel()
	addr, conns := fakeServer(t, nil)
	cfg := testConfig(addr)
	cfg.Network[0].Pacing = config.PacingAuto
	if v := os.Getenv("OTRBNC_TEST_PACING"); v != "" {
		cfg.Network[0].Pacing = v
	}
	env := startProxy(t, cfg, Options{})
	s := nextConn(t, conns)
	s.expect("CAP LS", hasParam("CAP", "LS"))
	s.send(":srv CAP * LS :")
	s.expect("USER", isCmd("USER"))
	s.send(":srv 001 alice :Welcome alice!~alice@host.test",
		":srv 004 alice srv.test solanum-1.0-dev DGIMQRSZaghilopsuwz CFILMPQRSTbcefgijklmnopqrstuvz :bkloveqjfI",
		":srv 376 alice :End of MOTD")
	env.waitUp()
	c := registerClient(t, env.addr, "alice")
	var paste []string
	for i := range 40 {
		paste = append(paste, fmt.Sprintf("PRIVMSG #chan :pasted line %02d", i))
	}
	m := &solanumModel{credit: 5}
	c.send(paste...)
	got := 0
	deadline := time.After(60 * time.Second)
	for got < len(paste) {
		select {
		case msg, ok := <-s.in:
			if !ok {
				t.Fatal("otrbnc closed the connection")
			}
			if msg.Command != "PRIVMSG" || msg.Param(0) != "#chan" {
				m.arrive(time.Now())
				continue
			}
			if !m.arrive(time.Now()) {
				t.Fatalf("Excess Flood: %d lines waiting at the server after %d of the paste", m.waiting, got+1)
			}
			got++
		case <-deadline:
			t.Fatalf("only %d of %d pasted lines reached the server in 60 s", got, len(paste))
		}
	}
	t.Logf("most lines waiting at the server: %d (limit 20)", m.maxWait)
}
