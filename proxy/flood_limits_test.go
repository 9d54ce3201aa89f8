package proxy

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore/otrtest/libotrpeer"
	"otrbnc/proxy/config"
)

// floodLimitsWait bounds each wait of TestDefaultFloodLimitsAKEAndLongMessage:
// with the default pacing the whole exchange takes about 30 s.
const floodLimitsWait = 45 * time.Second

// TestDefaultFloodLimitsAKEAndLongMessage runs what a user does at the start
// of a private conversation through ngIRCd with its default flood control
// (ircdtest relaxed=false: no MaxPenaltyTime, no user mode F, so ngIRCd
// processes about three commands a second per client and makes the rest
// wait) and otrbnc with its default pacing (rate_burst and rate_interval
// unset): a few lines to a channel, then start, then one 1,500-byte message
// (several OTR fragments) as soon as the conversation is private. The libotr
// peer must read the message intact, both sides must be encrypted, and the
// upstream connection must never have been dropped: no second registration
// and no closed connection in ngIRCd's log, no disconnect notice at the
// client, no QUIT of the user seen by the peer.
//
// It looks only at what leaves otrbnc, so it holds whatever the pacer's
// internals become. ngIRCd 26 never disconnects a client for flooding (it
// only stops reading its socket while a penalty runs), so the test also
// passes with pacing off; OTRBNC_TEST_RATE="BURST/INTERVAL" (for example
// "1000000/1us") replaces the line count of otrbnc's pacing to check that.
func TestDefaultFloodLimitsAKEAndLongMessage(t *testing.T) {
	t.Parallel()
	start := time.Now()
	ircd := startNgircd(t, false)
	cfg := testConfig(ircd.Addr)
	cfg.Network[0].Pacing = "" // otrbnc's defaults (auto)
	if v := os.Getenv("OTRBNC_TEST_RATE"); v != "" {
		burst, interval, ok := strings.Cut(v, "/")
		n, err1 := strconv.Atoi(burst)
		d, err2 := time.ParseDuration(interval)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("OTRBNC_TEST_RATE=%q: want BURST/INTERVAL, e.g. 1000000/1us", v)
		}
		cfg.Network[0].RateBurst, cfg.Network[0].RateInterval = n, config.Duration{Duration: d}
		t.Logf("pacing: rate_burst %d, rate_interval %v (OTRBNC_TEST_RATE)", n, d)
	}
	env := startProxy(t, cfg, Options{})
	env.waitUp()
	eng := newLibotrEngine(t, "bob", libotrpeer.PolicyManual)
	bob := newIRCPeer(t, ircd.Addr, "bob", eng)
	bob.c.send("JOIN #flood")
	c := registerClient(t, env.addr, "alice")
	c.send("JOIN #flood")
	expectWithin(t, c, floodLimitsWait, "own JOIN", func(m *irc.Message) bool { return m.Command == "JOIN" && m.Prefix.Name == "alice" })

	// The user was talking in a channel, then starts a private
	// conversation and sends a long message as soon as it is private.
	var lines []string
	for i := range 5 {
		lines = append(lines, "PRIVMSG #flood :channel line "+strconv.Itoa(i))
	}
	c.send(append(lines, "PRIVMSG *otr :start bob")...)
	expectWithin(t, c, floodLimitsWait, "private conversation", serviceSays("private conversation with bob started"))
	secure := time.Since(start)
	long := longFloodText(1500)
	before := bob.privmsgs.Load()
	c.send("PRIVMSG bob :" + long)
	deadline := time.NewTimer(floodLimitsWait)
	defer deadline.Stop()
	for got := false; !got; {
		select {
		case pt := <-bob.texts:
			if pt.text != long {
				if strings.HasPrefix(pt.text, long[:20]) {
					t.Fatalf("the peer read a mangled message: %d bytes, want %d:\n got %q\nwant %q", len(pt.text), len(long), pt.text, long)
				}
				continue
			}
			got = true
		case <-deadline.C:
			t.Fatalf("the peer did not read the %d-byte message within %v of sending it", len(long), floodLimitsWait)
		}
	}
	t.Logf("secure after %v; the long message read after %v, %d lines at the peer since it was sent (the end of the AKE included)",
		secure.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), bob.privmsgs.Load()-before)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if st, err := eng.p.Status(ctx, "alice"); err != nil || !st.Encrypted() {
		t.Errorf("libotr peer not encrypted with alice: %+v %v", st, err)
	}
	var status string
	env.inNetwork(func(n *network) { status = n.peer("bob").conv.Status().State.String() })
	if status != "encrypted" {
		t.Errorf("otrbnc's conversation with bob is %s, want encrypted", status)
	}

	// The upstream connection stayed up.
	for _, l := range c.seenLines() {
		if strings.Contains(l, "disconnected from") {
			t.Errorf("the upstream connection was lost: the client saw %q", l)
		}
	}
	for len(bob.raw) > 0 {
		if m := <-bob.raw; m.Command == "QUIT" && m.Prefix.Name == "alice" {
			t.Errorf("the peer saw alice quit: %q", m.Trailing())
		}
	}
	log := ircd.Log()
	reg := regexp.MustCompile(`User "alice!\S*" registered \(connection (\d+)\)`)
	if all := reg.FindAllStringSubmatchIndex(log, -1); len(all) != 1 {
		t.Errorf("ngIRCd registered alice %d times, want once:\n%s", len(all), log)
	} else {
		// Connection numbers are reused: only lines after the
		// registration are about otrbnc's connection.
		id := log[all[0][2]:all[0][3]]
		closed := regexp.MustCompile(`(?m)^.*(Shutting down connection ` + id + ` |Connection ` + id + ` .* closed|unregistered \(connection ` + id + `\)).*$`)
		if lines := closed.FindAllString(log[all[0][1]:], -1); len(lines) > 0 {
			t.Errorf("ngIRCd closed otrbnc's connection: %s", strings.Join(lines, "; "))
		}
	}
	if testing.Verbose() {
		t.Logf("ngIRCd log:\n%s", log)
	}
}

// longFloodText is n bytes of readable text with its position marked, so a
// lost or reordered fragment shows.
func longFloodText(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		b.WriteString("[" + strconv.Itoa(b.Len()) + "] flood-safe text ")
	}
	return b.String()[:n]
}

// expectWithin is testConn.expect with its own time limit.
func expectWithin(t *testing.T, c *testConn, d time.Duration, what string, pred func(*irc.Message) bool) *irc.Message {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				t.Fatalf("connection closed while waiting for %s", what)
			}
			if pred(m) {
				return m
			}
		case <-timer.C:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}
