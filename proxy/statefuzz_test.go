package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/keystore"
	"otrbnc/otrcore"
)

// A stateful fuzz test of the whole proxy (docs/security.md): random
// sequences of upstream lines (from the server and from peers, including
// valid OTR traffic from an engine-driven peer) interleaved with client
// messages and *otr commands. Every client message carries a unique
// token; after every step the test checks, on everything otrbnc wrote to
// the network and to the client:
//
//	I1  a token typed while its target was guarded never left in clear;
//	I2  no *otr line shows text a peer or the server chose, except
//	    inside quotes after otrbnc's own words;
//	I3  every line of clear text a peer sent while guarded is marked.
//
// "Guarded" is decided by the test's own model of what the user asked
// (policies, ignore masks) plus the engine's session state, read before
// the step: the routing under test cannot vouch for itself.
//
// The network runs without its goroutines: the test calls handleEvent
// itself and drains the connections' queues, so a run is fast and
// deterministic but for the randomness of key generation.

// fuzzIdentities is one keystore shared by all runs in a process (opening
// one per run would dominate the cost).
var fuzzIdentities = sync.OnceValues(func() (KeystoreIdentities, error) {
	dir, err := os.MkdirTemp("", "otrbnc-statefuzz-")
	if err != nil {
		return KeystoreIdentities{}, err
	}
	store, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		return KeystoreIdentities{}, err
	}
	return KeystoreIdentities{Store: store}, nil
})

// detachedConn is an ircConn with no goroutines: what is queued stays in
// its sendQueue until the test pops it.
func detachedConn() *ircConn {
	a, b := net.Pipe()
	b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	return &ircConn{nc: a, in: make(chan *irc.Message), q: newSendQueue(1 << 16), drain: make(chan struct{}),
		done: make(chan struct{}), wdone: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// stateFuzz is one run.
type stateFuzz struct {
	t     *testing.T
	n     *network
	up    *ircConn
	dc    *downstream
	clock time.Time

	bob      *otrcore.Conversation
	bobNick  string
	bobInbox []string // lines bob sent, not yet delivered to otrbnc

	// The model of what the user asked.
	defaultAlways bool
	nickPolicy    map[string]string // folded nick → policy set with *otr
	ignores       []string

	seq       int
	trace     []string        // what happened, for failure reports
	protected map[string]bool // token → must never leave in clear
	clearSent map[string]bool // clear-text id from a peer → must be marked
	upLines   []string
}

func newStateFuzz(t *testing.T) *stateFuzz {
	ids, err := fuzzIdentities()
	if err != nil {
		t.Fatal(err)
	}
	acct, err := ids.Store.Account("fuzz")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acct.ReplaceKey(context.Background(), testKey(t, 0).DSA()); err != nil {
		t.Fatal(err)
	}
	f := &stateFuzz{t: t, clock: time.Unix(1_800_000_000, 0), nickPolicy: map[string]string{}, ignores: []string{"*serv"},
		protected: map[string]bool{}, clearSent: map[string]bool{}, bobNick: "bob"}
	cfg := testConfig("127.0.0.1:1")
	cfg.Network[0].Name = "fuzz"
	if err := cfg.ApplyDefaults(); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(cfg, Options{Identities: ids, StateDir: t.TempDir(), Now: func() time.Time { return f.clock }})
	if err != nil {
		t.Fatal(err)
	}
	f.n = srv.networks[0]
	f.up = detachedConn()
	f.n.handleEvent(evUpstreamUp{uc: f.up, reg: &registration{nick: "alice", user: "~alice", host: "host.test",
		welcome: []*irc.Message{msg("srv", "001", "alice", "Welcome alice!~alice@host.test")}, caps: map[string]bool{"server-time": true, "batch": true}}})
	f.server(":srv 005 alice CHANTYPES=# CASEMAPPING=rfc1459 :are supported", ":srv 376 alice :End of MOTD")
	f.dc = &downstream{conn: detachedConn(), id: 1, nick: "alice", caps: map[string]bool{}, logger: f.n.logger, now: func() time.Time { return f.clock }}
	f.n.handleEvent(evDownstreamAttach{dc: f.dc})
	f.bob = otrcore.NewConversation(&otrcore.Account{Key: testKey(t, 1), InstanceTag: 0x2002}, "alice", otrcore.Options{Policy: otrcore.PolicyManual, MaxMessageSize: 400})
	f.drain()
	return f
}

// server feeds lines from the network.
func (f *stateFuzz) server(lines ...string) {
	for _, l := range lines {
		f.trace = append(f.trace, "S: "+l)
		m, err := parseLine(l)
		if err != nil {
			continue
		}
		f.n.handleEvent(evUpstreamMsg{uc: f.up, m: m})
	}
}

// client feeds a line from the client.
func (f *stateFuzz) client(line string) {
	f.trace = append(f.trace, "C: "+line)
	m, err := parseLine(line)
	if err != nil {
		f.t.Fatalf("bad client line %q", line)
	}
	f.n.handleEvent(evDownstreamMsg{dc: f.dc, m: m})
}

// bobSends queues what bob's engine produced for delivery.
func (f *stateFuzz) bobSends(res otrcore.Result) {
	for _, b := range res.Send {
		for _, l := range b.Lines {
			f.bobInbox = append(f.bobInbox, ":"+f.bobNick+"!bob@peer.test PRIVMSG alice :"+l)
		}
	}
}

// fold is otrbnc's folding under the network's current case mapping.
func (f *stateFuzz) fold(nick string) string { return f.n.casemap.fold(nick) }

// modelGuarded is the test's own view of whether text to or from nick
// must stay private: the engine's session state, or an "always" the user
// set that no ignore mask overrides.
func (f *stateFuzz) modelGuarded(nick string) bool {
	if strings.HasPrefix(nick, "#") {
		return false
	}
	for _, cm := range []casemapping{caseRFC1459, caseASCII, caseStrictRFC1459} {
		if p := f.n.otr.peers[cm.fold(nick)]; p != nil && p.sessionGuarded() {
			return true
		}
	}
	if strings.HasPrefix(nick, "*") {
		return false
	}
	for _, m := range f.ignores {
		if matchMask(f.fold(m), f.fold(nick)) {
			return false
		}
	}
	if pol, ok := f.nickPolicy[f.fold(nick)]; ok {
		return pol == "always"
	}
	return f.defaultAlways
}

// drain pops everything otrbnc queued, routes bob's lines to bob's engine
// and checks the invariants.
func (f *stateFuzz) drain() {
	for {
		lines, _, ok := f.up.q.pop()
		if !ok {
			break
		}
		for _, l := range lines {
			f.upLines = append(f.upLines, l)
			f.trace = append(f.trace, "U: "+l)
			for tok, prot := range f.protected {
				if prot && strings.Contains(l, tok) {
					f.fail("I1: %s left in clear: %q", tok, l)
				}
			}
			m, err := parseLine(l)
			if err != nil || m.Command != "PRIVMSG" || f.fold(m.Param(0)) != f.fold(f.bobNick) {
				continue
			}
			res, _ := f.bob.Receive(f.clock, m.Param(1))
			f.bobSends(res)
		}
	}
	for {
		lines, _, ok := f.dc.conn.q.pop()
		if !ok {
			break
		}
		for _, l := range lines {
			f.checkClientLine(l)
		}
	}
}

// fail reports a broken invariant with the steps that led to it.
func (f *stateFuzz) fail(format string, args ...any) {
	f.t.Helper()
	tail := f.trace
	if len(tail) > 60 {
		tail = tail[len(tail)-60:]
	}
	f.t.Fatalf(format+"\nlast steps:\n  %s", append(args, strings.Join(tail, "\n  "))...)
}

// checkClientLine applies I2 and I3 to a line the client receives.
func (f *stateFuzz) checkClientLine(l string) {
	m, err := parseLine(l)
	if err == nil && strings.Contains(l, "FORGED") && m.Command != "PRIVMSG" && m.Command != "NOTICE" {
		if strings.EqualFold(m.Prefix.Name, serverName) || !strings.HasPrefix(m.Trailing(), "(from the server) ") {
			f.fail("I2: a server line passes for otrbnc's own: %q", l)
		}
		return
	}
	if err != nil || len(m.Params) < 2 || (m.Command != "PRIVMSG" && m.Command != "NOTICE") {
		return
	}
	text := m.Trailing()
	if m.Prefix.Name == serviceNick {
		for _, w := range []string{"FORGED", "CLEAR", "ENC"} {
			i := strings.Index(text, w)
			if i < 0 {
				continue
			}
			if q := strings.IndexAny(text, "\"“"); q < 0 || q > i {
				f.fail("I2: *otr line shows peer text unquoted: %q", text)
			}
		}
		return
	}
	if _, body, ok := parseCTCP(text); ok {
		text = body
	}
	for id, mustMark := range f.clearSent {
		if !mustMark || !strings.Contains(text, id) {
			continue
		}
		if !strings.HasPrefix(text, "[NOT ENCRYPTED] ") && !strings.Contains(text, "] [NOT ENCRYPTED] ") {
			f.fail("I3: clear text from a guarded conversation not marked: %q", l)
		}
	}
}

var (
	fuzzTargets  = []string{"bob", "Bob", "carol", "#chan", "bobserv", "BOB", "dave"}
	fuzzCommands = []string{
		"start bob", "finish bob", "policy bob always", "policy bob manual", "policy bob never",
		"policy default always", "policy default manual", "ignore add bob*", "ignore del bob*",
		"set whitespace_tags off", "refresh bob", "auth bob secret", "release bob", "discard bob",
		"status bob", "list", "finish *", "policy bobserv always", "start bobserv", "trust bob",
		"plain bob PLAINTEXT-ok", "policy carol always", "fingerprint bob",
	}
	fuzzNicks = []string{"bobserv", "Bob", "carol", "b0b", "bob", "*status", "bobby"}
)

// step runs one operation chosen by op and arg.
func (f *stateFuzz) step(op, arg byte) {
	f.seq++
	tok := fmt.Sprintf("SECRET-%d-x", f.seq)
	switch op % 12 {
	case 0, 1: // the user writes to someone
		target := fuzzTargets[int(arg)%len(fuzzTargets)]
		if arg&0x80 != 0 {
			target = f.bobNick
		}
		f.protected[tok] = f.modelGuarded(target)
		f.client("PRIVMSG " + target + " :hello " + tok)
	case 2: // a notice, CTCP or action
		target := fuzzTargets[int(arg)%len(fuzzTargets)]
		f.protected[tok] = f.modelGuarded(target)
		switch arg % 3 {
		case 0:
			f.client("NOTICE " + target + " :note " + tok)
		case 1:
			f.client("PRIVMSG " + target + " :\x01VERSION " + tok + "\x01")
		case 2:
			f.client("PRIVMSG " + target + " :\x01ACTION waves " + tok + "\x01")
		}
	case 3: // an *otr command
		c := fuzzCommands[int(arg)%len(fuzzCommands)]
		f.client("PRIVMSG *otr :" + c)
		f.model(c)
	case 4, 5: // bob's messages reach otrbnc
		k := int(arg%3) + 1
		for i := 0; i < k && len(f.bobInbox) > 0; i++ {
			l := f.bobInbox[0]
			f.bobInbox = f.bobInbox[1:]
			if arg&0x40 != 0 {
				continue // lost on the way
			}
			f.server(l)
		}
	case 6: // bob's engine acts
		f.trace = append(f.trace, fmt.Sprintf("B: bob acts %d", arg%5))
		var res otrcore.Result
		switch arg % 5 {
		case 0:
			res, _ = f.bob.Start(f.clock)
		case 1:
			res, _ = f.bob.Send(f.clock, fmt.Sprintf("ENC-%d secret words", f.seq))
		case 2:
			res = f.bob.End(f.clock)
		case 3:
			res, _ = f.bob.StartSMP(f.clock, strings.Repeat("q", int(arg)%300)+"[bob] private conversation with bob started (OTRv3, verified). FORGED", true, "s")
		case 4:
			res = f.bob.Tick(f.clock.Add(2 * time.Minute))
		}
		f.bobSends(res)
	case 7: // bob (or the server, as bob) writes in clear
		// Terminated like the secret tokens: CLEAR5 is a prefix of
		// CLEAR53, and an unmarked CLEAR53 sent after the guard was
		// lifted would pass for CLEAR5 (a false alarm the 30-minute
		// fuzz run found).
		id := fmt.Sprintf("CLEAR%d-c", f.seq)
		f.clearSent[id] = f.modelGuarded(f.bobNick)
		text := strings.Repeat(id+" ", 1+int(arg)%120)
		p := ":" + f.bobNick + "!bob@peer.test "
		switch arg % 6 {
		case 0:
			f.server(p + "PRIVMSG alice :" + text)
		case 1:
			f.server(p + "PRIVMSG alice :\x01ACTION " + text + "\x01")
		case 2:
			f.server(p + "NOTICE alice :" + text)
		case 3:
			f.server("@time=2020-01-01T00:00:00.000Z " + p + "PRIVMSG alice :" + text)
		case 4:
			f.server("BATCH +h chathistory alice", "@batch=h "+p+"PRIVMSG alice :"+text, "BATCH -h")
		case 5:
			f.server(p + "PRIVMSG alice :" + text + " \t  \t\t\t\t \t \t \t    \t\t  \t\t")
		}
	case 8: // bob tries to put words in *otr's mouth
		forged := "[bob] private conversation with bob started (OTRv3, verified). FORGED"
		pad := strings.Repeat("x", int(arg)*2%420)
		p := ":" + f.bobNick + "!bob@peer.test "
		switch arg % 6 {
		case 4:
			f.server(":srv 404 alice " + f.bobNick + " :OTR: " + forged)
		case 5:
			f.server(":otrbnc 404 alice " + f.bobNick + " :OTR: " + forged)
		case 0:
			f.server(p + "PRIVMSG alice :?OTR Error: " + pad + forged)
		case 1:
			f.server(":*otr!otr@otrbnc PRIVMSG alice :" + forged)
		case 2:
			f.server(p + "PRIVMSG alice :?OTR" + string(rune(arg%32)) + "v23? " + forged)
		case 3:
			f.server(p + "PRIVMSG alice :?OTR|" + pad + "," + forged)
		}
	case 9: // the server changes the rules
		if arg >= 248 { // names its software, or complains of flooding
			switch arg % 4 {
			case 0:
				f.server(":srv 004 alice srv.test UnrealIRCd-6.1.4 iowx biklmnopstv :bklov")
			case 1:
				f.server(":srv 004 alice srv.test ngircd-26.1 iowx biklmnopstv :bklov")
			case 2:
				f.server(":srv NOTICE alice :*** You are flooding: Excess Flood")
			case 3:
				f.server("ERROR :Closing Link: host.test (Excess Flood)")
			}
			break
		}
		switch arg % 5 {
		case 0:
			f.server(":srv 005 alice CHANTYPES=#abcdefghijklmnopqrstuvwxyz :are supported")
		case 1:
			f.server(":srv 005 alice STATUSMSG=bc CHANTYPES=#b :are supported")
		case 2:
			f.server(":srv 005 alice CASEMAPPING=ascii :are supported")
		case 3:
			f.server(":srv 005 alice CASEMAPPING=rfc1459 CHANTYPES=# :are supported")
		case 4:
			f.server("PING :x")
		}
	case 10: // bob changes nick, or is renamed
		nick := fuzzNicks[int(arg)%len(fuzzNicks)]
		f.server(":" + f.bobNick + "!bob@peer.test NICK :" + nick)
		f.bobNick = nick
	case 11: // time passes
		f.trace = append(f.trace, fmt.Sprintf("T: +%ds", arg))
		f.clock = f.clock.Add(time.Duration(arg) * time.Second)
		f.n.otrTick()
	}
	f.drain()
}

// model records what an *otr command asks for.
func (f *stateFuzz) model(c string) {
	w := strings.Fields(c)
	switch {
	case w[0] == "policy" && w[1] == "default":
		f.defaultAlways = w[2] == "always"
	case w[0] == "policy":
		f.nickPolicy[f.fold(w[1])] = w[2]
	case w[0] == "ignore" && w[1] == "add":
		f.ignores = append(f.ignores, w[2])
	case w[0] == "ignore" && w[1] == "del":
		for i, m := range f.ignores {
			if m == w[2] {
				f.ignores = append(f.ignores[:i], f.ignores[i+1:]...)
				break
			}
		}
	}
}

// FuzzProxySequences runs sequences of steps, two bytes each.
func FuzzProxySequences(f *testing.F) {
	for _, seed := range [][]byte{
		{6, 0, 4, 2, 4, 2, 4, 2, 4, 2, 0, 0, 7, 0, 9, 0, 0, 1},                    // bob starts, AKE, CHANTYPES
		{3, 2, 6, 0, 4, 2, 4, 2, 4, 2, 4, 2, 10, 0, 0, 0x80, 4, 2, 6, 1, 4, 2},    // always, AKE, rename into *serv
		{6, 0, 4, 2, 4, 2, 4, 2, 4, 2, 7, 3, 7, 4, 7, 1, 7, 2, 8, 0, 8, 1, 8, 2},  // clear text and forgeries
		{3, 5, 0, 2, 6, 0, 4, 2, 4, 2, 4, 2, 4, 2, 6, 3, 4, 2, 4, 2, 3, 11, 0, 0}, // default always, SMP question
		{6, 0, 4, 2, 4, 2, 4, 2, 4, 2, 3, 1, 0, 0, 2, 0, 2, 1, 2, 2, 11, 200},     // finish, notices
		{3, 7, 6, 0, 4, 2, 4, 2, 4, 2, 4, 2, 10, 5, 0, 0x80, 9, 2, 10, 1, 0, 1},   // ignore bob*, renames
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			ops = ops[:400]
		}
		sf := newStateFuzz(t)
		watchdog := time.AfterFunc(30*time.Second, func() {
			panic("statefuzz: one input ran for 30 s; last steps:\n" + strings.Join(sf.trace[max(0, len(sf.trace)-30):], "\n"))
		})
		defer watchdog.Stop()
		for i := 0; i+1 < len(ops); i += 2 {
			sf.step(ops[i], ops[i+1])
		}
	})
}

// TestProxySequencesRandom runs a few long random sequences in the normal
// test run, beyond the seed corpus.
func TestProxySequencesRandom(t *testing.T) {
	t.Parallel()
	rnd := uint64(20261203)
	next := func() byte {
		rnd ^= rnd << 13
		rnd ^= rnd >> 7
		rnd ^= rnd << 17
		return byte(rnd)
	}
	for range 4 {
		sf := newStateFuzz(t)
		for range 150 {
			sf.step(next(), next())
		}
	}
}
