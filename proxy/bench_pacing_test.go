//go:build linux

package proxy_test

import (
	"context"
	"crypto/dsa"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore/otrtest/libotrpeer"
	"otrbnc/otrcore/otrtest/potrpeer"
	"otrbnc/proxy/ircdtest"
)

// BenchmarkPacingFirstMessage measures what each bouncer's DEFAULT upstream
// flood control costs the start of a private conversation (issue 15): how
// long from the moment the user types "start" until the conversation is
// private and until the first message, typed together with "start", is
// readable at the peer; then how 20 messages of 100 bytes typed at once are
// delivered, and how fast a conversation flows where each message waits
// for the peer's answer. ZNC and otrbnc run side by side, at the same
// time, on the same ngIRCd, each with its own user and peer.
//
// Setup, all on loopback:
//   - ngIRCd 26 with its default flood control (ircd=default: ircdtest's
//     configuration with relaxed=false, i.e. no MaxPenaltyTime and no user
//     mode F: three commands per pass, then a one-second penalty; it never
//     disconnects for flooding) and, as a second sub-benchmark, relaxed
//     (ircd=relaxed: no penalties); TCP_NODELAY on its sockets
//     (startNgircdNoDelayLog), so that delayed ACKs do not add ~40 ms to
//     back-to-back lines.
//   - otrbnc: the binary from cmd/otrbnc (buildOtrbnc), no rate_burst nor
//     rate_interval in its file (its default pacing, whatever it is),
//     policy from OTRBNC_PACING_POLICY, default "always": only under
//     "always" does otrbnc queue a message typed before the session is
//     private; under "manual" (its default policy) the first message goes
//     out in clear while the AKE runs, and the benchmark reports that as an
//     error. The user is a plain IRC client of otrbnc that types
//     "PRIVMSG *otr :start PEER" and "PRIVMSG PEER :text" at once; "secure"
//     on its side is the *otr line "private conversation with PEER started".
//     A second otrbnc user ("otrbnc msg only") types the first message
//     without start, which under "always" starts the conversation by
//     itself: start followed by a queued message makes otrbnc send two
//     queries, and the peer answers both.
//   - ZNC 1.8.2 (Debian) with its default flood control (no FloodRate nor
//     FloodBurst lines). znc-otr is not packaged in Debian, so the OTR side
//     of the ZNC run is libotr 4.1.1 (the libotrpeer C process, policy
//     OTRL_POLICY_DEFAULT and max message size 400 like znc-otr) driven by
//     the benchmark over the client's connection to ZNC: the same libotr
//     lines znc-otr would send to the server, and they go through ZNC's
//     flood control the same way (znc-otr sends them with PutIRC, into
//     ZNC's send queue). libotr's query message is cut to one line, as
//     znc-otr does. The first message is held by the client until libotr
//     reports the session secure, then sent ("secure" on this side is
//     libotr's gone_secure).
//   - The peer of each user: python-potr 1.0.2 (potrpeer, OTRv2, max
//     message size 400) on its own connection to ngIRCd, answering queries
//     automatically and every "r …" message with an encrypted "ack r …";
//     "peer secure" is potr's state change to encrypted.
//
// Before the scenarios, each bouncer's pacer is calibrated on a relaxed
// ngIRCd: after an idle period (OTRBNC_PACING_CAL_IDLE, default 30 s) the
// client sends 16 short channel lines at once; the lines that arrive within
// 150 ms of the first are the burst B, the median spacing of the rest the
// interval I, and B×I the time an empty bucket needs to be full again (the
// refill time). Each scenario waits refill + 3 s after the last of its
// setup lines reached the peer (OTRBNC_PACING_IDLE overrides), so that the
// bucket is full, then:
//   - start=full: the user types start and the first message at once;
//   - start=empty: the user first sends 8 short lines to a channel the peer
//     is in, then immediately types start and the first message.
//
// Phases of a scenario, each bounded (3 minutes): (1) start → secure at the
// user and at the peer, start → first message decrypted at the peer; (2)
// right after, 20 × 100-byte messages typed at once: delivery latency at the
// peer from the moment they were typed, p50 and p99; (3) for
// OTRBNC_PACING_STEADY (default 30 s) the user sends a 100-byte message,
// waits for the peer's answer, sends the next: answered messages per second.
// Then whether the bouncer's upstream connection was dropped: ngIRCd's log
// (a second registration of the user's nick, or its connection closed) and
// the bouncer's own notices ("disconnected from" from *otr, "Disconnected"
// from ZNC's *status). It must be "no"; a drop, a message in clear or a
// phase not finished in time fails the benchmark.
//
// Metrics per sub-benchmark ircd=…/start=…, prefixed znc-, otrbnc- or
// otrbnc-msgonly-: secure-s, peer-secure-s, first-s, burst-p50-s,
// burst-p99-s, steady-msg/s, drops. The calibration and the whole table go
// to the standard output (a parent benchmark's log is shown only with -v).
//
// Run (about 11 minutes; needs ngircd, znc, libotr5-dev and a C compiler,
// python3-potr and python3-pycryptodome):
//
//	go test ./proxy -run '^$' -bench PacingFirstMessage -benchtime 1x
//
// Only the realistic server: -bench 'PacingFirstMessage/ircd=default'.
func BenchmarkPacingFirstMessage(b *testing.B) {
	ircdtest.Path(b)
	zncPath(b)
	libotrpeer.Require(b)
	potrpeer.Require(b)
	policy := os.Getenv("OTRBNC_PACING_POLICY")
	if policy == "" {
		policy = "always"
	}
	steady := envDuration(b, "OTRBNC_PACING_STEADY", 30*time.Second)
	bin := buildOtrbnc(b)
	potrKey := benchKey(b).DSA()

	// A benchmark with sub-benchmarks shows its own log only with -v (and
	// a sub-benchmark's only its first ten lines), so the calibration and
	// the table go to the standard output.
	shapes := calibratePacers(b, bin, policy, envDuration(b, "OTRBNC_PACING_CAL_IDLE", 30*time.Second))
	idle := map[string]time.Duration{}
	for _, name := range []string{"otrbnc", "znc"} {
		s := shapes[name]
		idle[name] = envDuration(b, "OTRBNC_PACING_IDLE", s.refill+3*time.Second)
		fmt.Printf("%s pacer: %s; scenarios wait %v idle before starting\n", name, s, idle[name].Round(time.Millisecond))
	}

	var results []pacingResult
	scenario := 0
	for _, ircdMode := range []string{"default", "relaxed"} {
		b.Run("ircd="+ircdMode, func(b *testing.B) {
			ircd, ircdLog := startNgircdNoDelayLog(b, ircdMode == "relaxed")
			for _, state := range []string{"full", "empty"} {
				b.Run("start="+state, func(b *testing.B) {
					scenario++
					sides := []*pacingSide{
						setupZNCSide(b, ircd, scenario, potrKey),
						setupOtrbncSide(b, bin, policy, ircd, scenario, potrKey, false),
						setupOtrbncSide(b, bin, policy, ircd, scenario, potrKey, true),
					}
					b.Logf("load average before: %s", loadAvg())
					res := make([]pacingResult, len(sides))
					var wg sync.WaitGroup
					for i, s := range sides {
						wg.Go(func() {
							res[i] = s.run(state, idle[s.pacer], steady)
						})
					}
					wg.Wait()
					for i, s := range sides {
						r := &res[i]
						r.ircd = ircdMode
						r.drops = append(r.drops, s.user.side().dropNotes()...)
						r.drops = append(r.drops, ircdDrops(ircdLog, s.userNick)...)
						if r.err != nil {
							b.Errorf("%s, start=%s: %v", s.name, state, r.err)
						}
						if len(r.drops) > 0 {
							b.Errorf("%s, start=%s: upstream connection dropped: %s", s.name, state, strings.Join(r.drops, "; "))
						}
						r.report(b)
						b.Logf("%s", r.detail())
						if testing.Verbose() || r.err != nil || len(r.drops) > 0 {
							for _, n := range s.user.side().serviceLines() {
								b.Logf("%s service line: %s", s.name, n)
							}
						}
					}
					results = append(results, res...)
					b.Logf("load average after: %s", loadAvg())
				})
			}
		})
	}
	fmt.Printf("\n%s\n", pacingTable(results, shapes, policy))
}

// ---------------------------------------------------------------------
// Pacer calibration

// pacerShape is what a bouncer's pacer looks like from outside.
type pacerShape struct {
	sent     int             // lines sent at once
	arrivals []time.Duration // arrival of each, from the first
	burst    int             // lines that arrived within 150 ms of the first
	interval time.Duration   // median spacing of the others
	refill   time.Duration   // burst × interval
}

func (s pacerShape) String() string {
	var at []string
	for _, a := range s.arrivals {
		at = append(at, fmt.Sprintf("%.2f", a.Seconds()))
	}
	return fmt.Sprintf("%d of %d lines at once, then one every %v: an empty bucket is full after %v (arrivals, s: %s)",
		s.burst, s.sent, s.interval.Round(time.Millisecond), s.refill.Round(time.Millisecond), strings.Join(at, " "))
}

// calibratePacers measures both bouncers' pacers on a relaxed ngIRCd (so
// that its own penalties do not blur the picture): after idle, 16 short
// lines to a channel at once, timed at a receiver.
func calibratePacers(b *testing.B, bin, policy string, idle time.Duration) map[string]pacerShape {
	b.Helper()
	const lines = 16
	ircd := startNgircdNoDelay(b, true)
	recv := registerIRCUser(b, ircd, "calrecv")
	recv.send("JOIN #cal")
	recv.expect("JOIN #cal", benchWait, func(m *irc.Message) bool { return m.Command == "JOIN" })
	o := startOtrbnc(b, bin, otrbncConfig{upstream: ircd, nick: "calo", policy: policy})
	z := startZNCFlood(b, ircd, "calz", true)
	clients := map[string]*ircConn{}
	for _, bnc := range []*bouncer{o, z} {
		c := attachClient(b, bnc)
		joinAndProbe(b, c, "#cal", recv, bnc.nick)
		clients[bnc.nick] = c
	}
	fmt.Printf("calibration: waiting %v for the pacers to fill up\n", idle)
	time.Sleep(idle)
	var mu sync.Mutex
	at := map[string][]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for im := range recv.in {
			if im.m.Command == "PRIVMSG" && strings.HasPrefix(im.m.Trailing(), "cal ") {
				mu.Lock()
				at[im.m.Prefix.Name] = append(at[im.m.Prefix.Name], im.at)
				n := len(at["calo"]) + len(at["calz"])
				mu.Unlock()
				if n == 2*lines {
					return
				}
			}
		}
	}()
	for _, c := range clients {
		var ls []string
		for i := range lines {
			ls = append(ls, fmt.Sprintf("PRIVMSG #cal :cal %d", i))
		}
		c.send(ls...)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
	}
	mu.Lock()
	defer mu.Unlock()
	shapes := map[string]pacerShape{}
	for name, nick := range map[string]string{"otrbnc": "calo", "znc": "calz"} {
		ts := at[nick]
		if len(ts) < lines {
			b.Fatalf("calibration: %d of %d lines from %s arrived within 3 minutes", len(ts), lines, name)
		}
		shapes[name] = shapeOf(ts, lines)
	}
	for _, c := range clients {
		c.send("QUIT :calibrated")
	}
	return shapes
}

func shapeOf(ts []time.Time, sent int) pacerShape {
	s := pacerShape{sent: sent}
	for _, t := range ts {
		s.arrivals = append(s.arrivals, t.Sub(ts[0]))
	}
	for _, a := range s.arrivals {
		if a < 150*time.Millisecond {
			s.burst++
		}
	}
	var gaps []time.Duration
	for i := s.burst; i < len(ts); i++ {
		gaps = append(gaps, ts[i].Sub(ts[i-1]))
	}
	if len(gaps) > 0 {
		slices.Sort(gaps)
		s.interval = gaps[len(gaps)/2]
	}
	s.refill = time.Duration(s.burst) * s.interval
	return s
}

// joinAndProbe joins channel from c (a bouncer's client) and sends probes
// to it until recv, already in the channel, sees one from nick: the bouncer
// is connected and passes lines. A probe goes every 5 s at most, so that
// a pacer cannot pile them up; once one arrived, the ones still queued are
// awaited until none came for 3 s. It returns when the last one arrived:
// the last line the bouncer sent that the benchmark knows of.
func joinAndProbe(tb testing.TB, c *ircConn, channel string, recv *ircConn, nick string) time.Time {
	tb.Helper()
	deadline := time.Now().Add(2 * benchWait)
	var last time.Time
	isProbe := func(im inMsg) bool {
		return im.m.Command == "PRIVMSG" && im.m.Prefix.Name == nick && strings.HasPrefix(im.m.Trailing(), "probe ")
	}
	for i := 0; last.IsZero(); i++ {
		if time.Now().After(deadline) {
			var seen []string
			for len(c.in) > 0 {
				im := <-c.in
				seen = append(seen, im.m.String())
			}
			tb.Fatalf("%s never reached %s; its client got:\n%s", nick, channel, strings.Join(seen, "\n"))
		}
		if i%4 == 0 {
			c.send("JOIN " + channel)
		}
		c.send(fmt.Sprintf("PRIVMSG %s :probe %d", channel, i))
		timer := time.NewTimer(5 * time.Second)
	wait:
		for {
			select {
			case im := <-recv.in:
				if isProbe(im) {
					last = im.at
					timer.Stop()
					break wait
				}
			case <-timer.C:
				break wait
			}
		}
	}
	for {
		select {
		case im := <-recv.in:
			if isProbe(im) {
				last = im.at
			}
		case <-time.After(3 * time.Second):
			return last
		}
	}
}

// ---------------------------------------------------------------------
// The peer: python-potr

// potrOTR is python-potr in its driver process, as an otrEngine that also
// records when the session became encrypted and what it received.
type potrOTR struct {
	p        *potrpeer.Peer
	mu       sync.Mutex
	secureAt time.Time
	queries  int
	// clear counts texts delivered that were not OTR data messages.
	clear int
	lines int // private lines handled
	errs  []string
}

func newPotrOTR(tb testing.TB, account string, key *dsa.PrivateKey) *potrOTR {
	tb.Helper()
	p, err := potrpeer.Start(context.Background(), potrpeer.Options{Account: account, Key: key, MaxMessageSize: 400})
	if err != nil {
		tb.Fatalf("starting the potr peer: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return &potrOTR{p: p}
}

func (e *potrOTR) recv(from, line string) (string, bool, []string) {
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	r, err := e.p.Recv(ctx, from, line)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines++
	if isOTRQuery(line) {
		e.queries++
	}
	if err != nil {
		e.errs = append(e.errs, err.Error())
	}
	if r.Delivered && !strings.HasPrefix(line, "?OTR") {
		e.clear++
	}
	for _, ev := range r.Events {
		if ev.Name == "state" && ev.Args["to"] == "encrypted" && e.secureAt.IsZero() {
			e.secureAt = time.Now()
		}
	}
	return r.Text, r.Delivered, r.Out
}

func (e *potrOTR) send(to, text string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	r, err := e.p.Send(ctx, to, text)
	if err != nil {
		e.mu.Lock()
		e.errs = append(e.errs, err.Error())
		e.mu.Unlock()
	}
	return r.Out
}

func (e *potrOTR) query(to string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	r, _ := e.p.Query(ctx, to)
	return r.Out
}

func (e *potrOTR) end(to string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	r, _ := e.p.End(ctx, to)
	return r.Out
}

func (e *potrOTR) encrypted(to string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	st, err := e.p.Status(ctx, to)
	return err == nil && st.MsgState == "encrypted"
}

// isOTRQuery reports whether line is an OTR query message ("?OTR?",
// "?OTRv23?", …), not a protocol message ("?OTR:", "?OTR|", "?OTR,").
func isOTRQuery(line string) bool {
	return strings.HasPrefix(line, "?OTR?") || strings.HasPrefix(line, "?OTRv")
}

// ---------------------------------------------------------------------
// The user

// pacingUser is the user at a bouncer's client.
type pacingUser interface {
	side() *userSide
	// start types "start" and first at once; it returns when they were
	// typed.
	start(first string) time.Time
	// say types texts (to the peer) at once.
	say(texts ...string) time.Time
	// raw sends IRC lines at once, untouched.
	raw(lines ...string) time.Time
}

// userSide is what the user's client saw.
type userSide struct {
	mu      sync.Mutex
	secure  time.Time
	texts   map[string]time.Time // first two words of each text from the peer
	acks    chan string          // the keys of "ack …" texts as they come
	drops   []string
	service []string
}

func newUserSide() userSide {
	return userSide{texts: map[string]time.Time{}, acks: make(chan string, 1000)}
}

func (u *userSide) secureAt() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.secure
}

func (u *userSide) setSecure(at time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.secure.IsZero() {
		u.secure = at
	}
}

func (u *userSide) gotText(text string, at time.Time) {
	if rest, ok := strings.CutPrefix(text, "ack "); ok {
		k := msgKey(rest)
		u.mu.Lock()
		u.texts["ack "+k] = at
		u.mu.Unlock()
		select {
		case u.acks <- k:
		default:
		}
	}
}

func (u *userSide) serviceLine(at time.Time, text string, drop bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.service = append(u.service, at.Format("15:04:05.000")+" "+text)
	if drop {
		u.drops = append(u.drops, text)
	}
}

func (u *userSide) dropNotes() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.drops)
}

func (u *userSide) serviceLines() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.service)
}

// msgKey is the first two words of a benchmark text ("b 7", "r 3").
func msgKey(text string) string {
	f := strings.Fields(text)
	if len(f) < 2 {
		return text
	}
	return f[0] + " " + f[1]
}

// otrbncUser is a plain IRC client of otrbnc: otrbnc does the OTR.
type otrbncUser struct {
	userSide
	c    *ircConn
	peer string
	// msgOnly: start types the first message alone, without "start".
	msgOnly bool
}

func (u *otrbncUser) side() *userSide { return &u.userSide }

func (u *otrbncUser) run() {
	started := "private conversation with " + u.peer + " started"
	for im := range u.c.in {
		m := im.m
		if (m.Command == "PRIVMSG" || m.Command == "NOTICE") && m.Prefix.Name == "*otr" {
			t := m.Trailing()
			if strings.Contains(t, started) {
				u.setSecure(im.at)
			}
			u.serviceLine(im.at, t, strings.Contains(t, "disconnected from"))
			continue
		}
		if m.Command == "PRIVMSG" && m.Prefix.Name == u.peer {
			u.gotText(m.Trailing(), im.at)
		}
	}
}

func (u *otrbncUser) start(first string) time.Time {
	if u.msgOnly {
		return u.say(first)
	}
	t := time.Now()
	u.c.send("PRIVMSG *otr :start "+u.peer, "PRIVMSG "+u.peer+" :"+first)
	return t
}

func (u *otrbncUser) say(texts ...string) time.Time {
	var lines []string
	for _, t := range texts {
		lines = append(lines, "PRIVMSG "+u.peer+" :"+t)
	}
	return u.raw(lines...)
}

func (u *otrbncUser) raw(lines ...string) time.Time {
	t := time.Now()
	u.c.send(lines...)
	return t
}

// zncUser is a client of ZNC that does OTR itself with libotr, as
// znc-otr would inside ZNC: every line libotr produces goes to the server
// through ZNC.
type zncUser struct {
	userSide
	c    *ircConn
	peer string
	lmu  sync.Mutex // libotr and pending
	lib  *libotrpeer.Peer
	// pending holds what the user typed before the session was secure.
	pending []string
	errs    []string
}

func (u *zncUser) side() *userSide { return &u.userSide }

func (u *zncUser) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), benchWait)
}

func (u *zncUser) run() {
	for im := range u.c.in {
		m := im.m
		if m.Prefix.Name == "*status" {
			t := m.Trailing()
			u.serviceLine(im.at, t, strings.Contains(strings.ToLower(t), "disconnected"))
			continue
		}
		if m.Command != "PRIVMSG" || m.Prefix.Name != u.peer {
			continue
		}
		ctx, cancel := u.ctx()
		u.lmu.Lock()
		r, err := u.lib.Recv(ctx, u.peer, m.Trailing())
		if err != nil {
			u.errs = append(u.errs, err.Error())
		}
		out := r.Out
		if slices.ContainsFunc(r.Events, func(e libotrpeer.Event) bool { return e.Name == libotrpeer.EventGoneSecure }) {
			u.setSecure(time.Now())
			for _, text := range u.pending {
				s, err := u.lib.Send(ctx, u.peer, text)
				if err != nil {
					u.errs = append(u.errs, err.Error())
				}
				out = append(out, s.Out...)
			}
			u.pending = nil
		}
		u.lmu.Unlock()
		cancel()
		u.write(out)
		if r.Delivered {
			u.gotText(r.Text, time.Now())
		}
	}
}

// write sends lines to the peer, libotr's multi-line query cut to its
// first line plus a one-line explanation, as znc-otr does.
func (u *zncUser) write(out []string) {
	var lines []string
	for _, l := range out {
		if first, _, ok := strings.Cut(l, "\n"); ok {
			l = first + " Requesting an off-the-record private conversation. However, you do not have a plugin to support that. See https://otr.cypherpunks.ca/ for more information."
		}
		lines = append(lines, "PRIVMSG "+u.peer+" :"+l)
	}
	if len(lines) > 0 {
		u.c.send(lines...)
	}
}

func (u *zncUser) start(first string) time.Time {
	t := time.Now()
	ctx, cancel := u.ctx()
	defer cancel()
	u.lmu.Lock()
	r, err := u.lib.Query(ctx, u.peer)
	if err != nil {
		u.errs = append(u.errs, err.Error())
	}
	u.pending = append(u.pending, first)
	u.lmu.Unlock()
	u.write(r.Out)
	return t
}

func (u *zncUser) say(texts ...string) time.Time {
	t := time.Now()
	ctx, cancel := u.ctx()
	defer cancel()
	var out []string
	u.lmu.Lock()
	for _, text := range texts {
		r, err := u.lib.Send(ctx, u.peer, text)
		if err != nil {
			u.errs = append(u.errs, err.Error())
		}
		out = append(out, r.Out...)
	}
	u.lmu.Unlock()
	u.write(out)
	return t
}

func (u *zncUser) raw(lines ...string) time.Time {
	t := time.Now()
	u.c.send(lines...)
	return t
}

// ---------------------------------------------------------------------
// A scenario

// pacingSide is one bouncer's user and peer in a scenario.
type pacingSide struct {
	name               string // "znc", "otrbnc" or "otrbnc-msgonly"
	pacer              string // "znc" or "otrbnc"
	userNick, peerNick string
	channel            string
	user               pacingUser
	eng                *potrOTR
	peer               *echoPeer
	// got records when the peer had decrypted each benchmark text (by
	// msgKey), linesAt how many lines it had received then.
	mu      sync.Mutex
	got     map[string]time.Time
	linesAt map[string]int
	// setupDone is when the client last sent a line during the setup.
	setupDone time.Time
}

// peerGot is the echo peer's onText hook, called once potr has returned
// the text: the time of decryption, not of the line's arrival, so that it
// compares with potr's state change to encrypted.
func (s *pacingSide) peerGot(from, text string, _ time.Time) {
	now := time.Now()
	if from != s.userNick {
		return
	}
	s.eng.mu.Lock()
	n := s.eng.lines
	s.eng.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := msgKey(text)
	if _, ok := s.got[k]; !ok {
		s.got[k] = now
		s.linesAt[k] = n
	}
}

// linesAtKey returns how many lines the peer had received when it read k.
func (s *pacingSide) linesAtKey(k string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.linesAt[k]
}

// peerLines returns how many private lines the peer received so far.
func (s *pacingSide) peerLines() int {
	s.eng.mu.Lock()
	defer s.eng.mu.Unlock()
	return s.eng.lines
}

func (s *pacingSide) gotAt(k string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.got[k]
	return t, ok
}

// startPeer connects the potr peer to ngIRCd and joins channel.
func startPacingPeer(tb testing.TB, ircd string, s *pacingSide, key *dsa.PrivateKey) *ircConn {
	tb.Helper()
	pc := registerIRCUser(tb, ircd, s.peerNick)
	pc.send("JOIN " + s.channel)
	pc.expect("JOIN "+s.channel, benchWait, func(m *irc.Message) bool { return m.Command == "JOIN" && m.Prefix.Name == s.peerNick })
	s.eng = newPotrOTR(tb, s.peerNick, key)
	s.got, s.linesAt = map[string]time.Time{}, map[string]int{}
	return pc
}

// runPeer starts answering as the peer on pc.
func (s *pacingSide) runPeer(pc *ircConn) {
	s.peer = &echoPeer{nick: s.peerNick, c: pc, eng: s.eng, done: make(chan struct{})}
	s.peer.answer.Store(true)
	s.peer.onText = s.peerGot
	go s.peer.run()
}

// setupOtrbncSide sets up an otrbnc user and its peer; with msgOnly the
// user types the first message without "start" (under policy always the
// message alone starts the conversation).
func setupOtrbncSide(tb testing.TB, bin, policy, ircd string, n int, key *dsa.PrivateKey, msgOnly bool) *pacingSide {
	tb.Helper()
	s := &pacingSide{name: "otrbnc", pacer: "otrbnc", userNick: fmt.Sprintf("ob%d", n), peerNick: fmt.Sprintf("pob%d", n), channel: fmt.Sprintf("#pob%d", n)}
	if msgOnly {
		s.name, s.userNick, s.peerNick, s.channel = "otrbnc-msgonly", fmt.Sprintf("om%d", n), fmt.Sprintf("pom%d", n), fmt.Sprintf("#pom%d", n)
	}
	pc := startPacingPeer(tb, ircd, s, key)
	o := startOtrbnc(tb, bin, otrbncConfig{upstream: ircd, nick: s.userNick, policy: policy})
	c := attachClient(tb, o)
	s.setupDone = joinAndProbe(tb, c, s.channel, pc, s.userNick)
	s.runPeer(pc)
	u := &otrbncUser{userSide: newUserSide(), c: c, peer: s.peerNick, msgOnly: msgOnly}
	go u.run()
	s.user = u
	return s
}

func setupZNCSide(tb testing.TB, ircd string, n int, key *dsa.PrivateKey) *pacingSide {
	tb.Helper()
	s := &pacingSide{name: "znc", pacer: "znc", userNick: fmt.Sprintf("zn%d", n), peerNick: fmt.Sprintf("pzn%d", n), channel: fmt.Sprintf("#pzn%d", n)}
	pc := startPacingPeer(tb, ircd, s, key)
	lib, err := libotrpeer.Start(context.Background(), libotrpeer.Options{Account: s.userNick, Dir: tb.TempDir(),
		Policy: libotrpeer.PolicyDefault, MaxMessageSize: 400})
	if err != nil {
		tb.Fatalf("starting the libotr client: %v", err)
	}
	tb.Cleanup(func() { lib.Close() })
	z := startZNCFlood(tb, ircd, s.userNick, true)
	c := attachClient(tb, z)
	s.setupDone = joinAndProbe(tb, c, s.channel, pc, s.userNick)
	s.runPeer(pc)
	u := &zncUser{userSide: newUserSide(), c: c, peer: s.peerNick, lib: lib}
	go u.run()
	s.user = u
	return s
}

// pacingResult is one bouncer's figures in one scenario.
type pacingResult struct {
	bouncer, ircd, state string
	// From the moment start was typed: secure at the user's side, at the
	// peer, the first message readable at the peer.
	secure, peerSecure, first time.Duration
	// queries is how many OTR query messages the peer received; clear
	// how many texts it got unencrypted (must be 0).
	queries, clear int
	// akeLines is how many lines the peer received from the user until
	// the first message was readable.
	akeLines int
	// burst is the delivery latency of each of the 20 messages typed at
	// once; burstLines the lines they took at the peer.
	burst        []time.Duration
	burstMissing int
	burstLines   int
	// steadyN messages were answered in steadyDur; the peer received
	// steadyLines lines meanwhile.
	steadyN, steadyLines int
	steadyDur            time.Duration
	drops                []string
	notes                []string
	err                  error
}

// pad makes a benchmark text of exactly n bytes starting with prefix.
func pad(prefix string, n int) string {
	if len(prefix) >= n {
		return prefix
	}
	return prefix + " " + strings.Repeat("x", n-len(prefix)-1)
}

// waitFor polls cond every 5 ms until it holds or d passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// run plays the scenario; it is called from its own goroutine, so it
// reports problems in the result rather than failing the benchmark.
func (s *pacingSide) run(state string, idle, steady time.Duration) (r pacingResult) {
	const phaseWait = 3 * time.Minute
	r = pacingResult{bouncer: s.name, state: state}
	u := s.user.side()
	defer func() {
		s.eng.mu.Lock()
		r.notes = append(r.notes, s.eng.errs...)
		r.queries = s.eng.queries
		r.clear = s.eng.clear
		s.eng.mu.Unlock()
		if r.clear > 0 && r.err == nil {
			r.err = fmt.Errorf("%d messages reached the peer in clear", r.clear)
		}
		if zu, ok := s.user.(*zncUser); ok {
			zu.lmu.Lock()
			r.notes = append(r.notes, zu.errs...)
			zu.lmu.Unlock()
		}
	}()
	time.Sleep(time.Until(s.setupDone.Add(idle)))
	if state == "empty" {
		var lines []string
		for i := range pacingChanLines {
			lines = append(lines, fmt.Sprintf("PRIVMSG %s :channel line %d", s.channel, i))
		}
		s.user.raw(lines...)
	}
	first := pad("f 0 first message", pacingMsgBytes)
	n0 := s.peerLines()
	t0 := s.user.start(first)
	ok := waitFor(phaseWait, func() bool {
		_, got := s.gotAt("f 0")
		s.eng.mu.Lock()
		peerSecure := !s.eng.secureAt.IsZero()
		s.eng.mu.Unlock()
		return got && peerSecure && !u.secureAt().IsZero()
	})
	if at := u.secureAt(); !at.IsZero() {
		r.secure = at.Sub(t0)
	}
	s.eng.mu.Lock()
	if !s.eng.secureAt.IsZero() {
		r.peerSecure = s.eng.secureAt.Sub(t0)
	}
	s.eng.mu.Unlock()
	if firstAt, ok := s.gotAt("f 0"); ok {
		r.first = firstAt.Sub(t0)
		r.akeLines = s.linesAtKey("f 0") - n0
	}
	if !ok {
		r.err = fmt.Errorf("phase 1 not done within %v: secure at user %v, at peer %v, first message %v",
			phaseWait, r.secure, r.peerSecure, r.first)
		return r
	}

	// Phase 2: 20 messages typed at once.
	var texts []string
	for i := range pacingBurstMsgs {
		texts = append(texts, pad(fmt.Sprintf("b %d", i), pacingMsgBytes))
	}
	lines0 := s.peerLines()
	tb := s.user.say(texts...)
	waitFor(phaseWait, func() bool {
		_, ok := s.gotAt(fmt.Sprintf("b %d", pacingBurstMsgs-1))
		return ok
	})
	now := time.Now()
	for i := range pacingBurstMsgs {
		if at, ok := s.gotAt(fmt.Sprintf("b %d", i)); ok {
			r.burst = append(r.burst, at.Sub(tb))
		} else {
			r.burst = append(r.burst, now.Sub(tb))
			r.burstMissing++
		}
	}
	r.burstLines = s.linesAtKey(fmt.Sprintf("b %d", pacingBurstMsgs-1)) - lines0
	if r.burstMissing > 0 {
		r.err = fmt.Errorf("%d of %d messages typed at once not delivered within %v", r.burstMissing, pacingBurstMsgs, phaseWait)
		return r
	}

	// Phase 3: a conversation where each message waits for the answer.
	start := time.Now()
	steady0 := s.peerLines()
	var lastAck time.Time
	for seq := 0; time.Since(start) < steady; seq++ {
		k := fmt.Sprintf("r %d", seq)
		s.user.say(pad(k, pacingMsgBytes))
		timer := time.NewTimer(phaseWait)
	wait:
		for {
			select {
			case got := <-u.acks:
				if got == k {
					timer.Stop()
					break wait
				}
			case <-timer.C:
				r.err = fmt.Errorf("no answer to steady message %d within %v", seq, phaseWait)
				return r
			}
		}
		u.mu.Lock()
		lastAck = u.texts["ack "+k]
		u.mu.Unlock()
		r.steadyN++
	}
	r.steadyDur = lastAck.Sub(start)
	r.steadyLines = s.peerLines() - steady0
	select {
	case <-s.peer.done:
		r.drops = append(r.drops, "the peer's connection to ngIRCd closed")
	default:
	}
	return r
}

const (
	pacingChanLines = 8
	pacingBurstMsgs = 20
	pacingMsgBytes  = 100
)

func (r *pacingResult) steadyRate() float64 {
	if r.steadyDur <= 0 {
		return 0
	}
	return float64(r.steadyN) / r.steadyDur.Seconds()
}

func (r *pacingResult) report(b *testing.B) {
	p := r.bouncer + "-"
	b.ReportMetric(r.secure.Seconds(), p+"secure-s")
	b.ReportMetric(r.peerSecure.Seconds(), p+"peer-secure-s")
	b.ReportMetric(r.first.Seconds(), p+"first-s")
	b.ReportMetric(percentile(r.burst, 0.5).Seconds(), p+"burst-p50-s")
	b.ReportMetric(percentile(r.burst, 0.99).Seconds(), p+"burst-p99-s")
	b.ReportMetric(r.steadyRate(), p+"steady-msg/s")
	b.ReportMetric(float64(len(r.drops)), p+"drops")
}

func (r *pacingResult) detail() string {
	var lat []string
	for _, d := range r.burst {
		lat = append(lat, fmt.Sprintf("%.1f", d.Seconds()))
	}
	s := fmt.Sprintf("%s ircd=%s start=%s: secure %.2f s (peer %.2f s), first message %.2f s after %d lines at the peer, %d OTR queries; "+
		"20 messages typed at once took %d lines, delivered after (s) %s; steady: %d messages answered in %.1f s, %d lines at the peer",
		r.bouncer, r.ircd, r.state, r.secure.Seconds(), r.peerSecure.Seconds(), r.first.Seconds(), r.akeLines, r.queries,
		r.burstLines, strings.Join(lat, " "), r.steadyN, r.steadyDur.Seconds(), r.steadyLines)
	if len(r.notes) > 0 {
		s += "; notes: " + strings.Join(r.notes, "; ")
	}
	return s
}

// ircdDrops looks in ngIRCd's log for trouble with nick's connection: a
// second registration (a reconnect), or its connection closed after the
// registration (connection numbers are reused, so earlier lines are about
// other connections).
func ircdDrops(log *procLog, nick string) []string {
	text := log.tail()
	reg := regexp.MustCompile(`User "` + regexp.QuoteMeta(nick) + `!\S*" registered \(connection (\d+)\)`)
	all := reg.FindAllStringSubmatchIndex(text, -1)
	switch {
	case len(all) == 0:
		return []string{"ngIRCd: no registration of " + nick + " in its log"}
	case len(all) > 1:
		return []string{fmt.Sprintf("ngIRCd: %s registered %d times", nick, len(all))}
	}
	id := text[all[0][2]:all[0][3]]
	closed := regexp.MustCompile(`(?m)^.*(Shutting down connection ` + id + ` |Connection ` + id + ` .* closed|unregistered \(connection ` + id + `\)).*$`)
	var drops []string
	for _, l := range closed.FindAllString(text[all[0][1]:], -1) {
		drops = append(drops, "ngIRCd: "+l)
	}
	return drops
}

// pacingTable formats the results like issue 15's table, one column per
// bouncer and starting state.
func pacingTable(results []pacingResult, shapes map[string]pacerShape, policy string) string {
	var b strings.Builder
	for _, name := range []string{"znc", "otrbnc"} {
		sh := shapes[name]
		fmt.Fprintf(&b, "%s pacer (calibrated on a relaxed ngIRCd): %d lines at once, then one every %v; refill %v\n",
			name, sh.burst, sh.interval.Round(time.Millisecond), sh.refill.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "otrbnc policy %q; \"otrbnc msg only\": the first message typed without start\n", policy)
	order := map[string]int{"znc": 0, "otrbnc": 1, "otrbnc-msgonly": 2}
	for _, ircd := range []string{"default", "relaxed"} {
		var cols []pacingResult
		for _, r := range results {
			if r.ircd == ircd {
				cols = append(cols, r)
			}
		}
		if len(cols) == 0 {
			continue
		}
		slices.SortStableFunc(cols, func(x, y pacingResult) int {
			if x.state != y.state {
				return -strings.Compare(x.state, y.state) // full before empty
			}
			return order[x.bouncer] - order[y.bouncer]
		})
		fmt.Fprintf(&b, "\nngIRCd flood control: %s\n", ircd)
		row := func(label string, f func(r pacingResult) string) {
			fmt.Fprintf(&b, "| %-46s |", label)
			for _, r := range cols {
				fmt.Fprintf(&b, " %-15s |", f(r))
			}
			b.WriteString("\n")
		}
		row("bucket", func(r pacingResult) string { return r.state })
		row("", func(r pacingResult) string {
			return map[string]string{"znc": "ZNC+libotr", "otrbnc": "otrbnc", "otrbnc-msgonly": "otrbnc msg only"}[r.bouncer]
		})
		row("---", func(pacingResult) string { return "---" })
		secs := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
		row("start typed → secure (user side)", func(r pacingResult) string { return secs(r.secure) })
		row("start typed → secure (peer side)", func(r pacingResult) string { return secs(r.peerSecure) })
		row("start typed → first message decrypted at peer", func(r pacingResult) string { return secs(r.first) })
		row("20 × 100 B typed at once: p50 / p99 delivery", func(r pacingResult) string {
			return fmt.Sprintf("%.1f / %.1f s", percentile(r.burst, 0.5).Seconds(), percentile(r.burst, 0.99).Seconds())
		})
		row("steady conversation", func(r pacingResult) string { return fmt.Sprintf("%.2f msg/s", r.steadyRate()) })
		row("upstream connection dropped", func(r pacingResult) string {
			switch {
			case len(r.drops) > 0:
				return fmt.Sprintf("YES (%d)", len(r.drops))
			case r.err != nil:
				return "no (run failed)"
			}
			return "no"
		})
		row("OTR queries received by the peer", func(r pacingResult) string { return fmt.Sprint(r.queries) })
		row("lines at the peer until the first message", func(r pacingResult) string { return fmt.Sprint(r.akeLines) })
		row("lines for the 20 messages", func(r pacingResult) string { return fmt.Sprint(r.burstLines) })
	}
	return b.String()
}
