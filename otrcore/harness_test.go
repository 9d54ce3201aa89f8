package otrcore

import (
	"bufio"
	"crypto/dsa"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKeys are fixed DSA-1024 keys from testdata, loaded once: generating
// parameters in every test would dominate the run time.
var testKeys = sync.OnceValues(func() ([]*dsa.PrivateKey, error) {
	f, err := os.Open("testdata/dsa_keys.txt")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var keys []*dsa.PrivateKey
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<16)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 5 {
			continue
		}
		var v [5]*big.Int
		for i, h := range fields {
			v[i], _ = new(big.Int).SetString(h, 16)
		}
		k := &dsa.PrivateKey{PublicKey: dsa.PublicKey{Parameters: dsa.Parameters{P: v[0], Q: v[1], G: v[2]}, Y: v[3]}, X: v[4]}
		keys = append(keys, k)
	}
	return keys, sc.Err()
})

// testKey returns fixture key i as a PrivateKey.
func testKey(tb testing.TB, i int) *PrivateKey {
	tb.Helper()
	keys, err := testKeys()
	if err != nil {
		tb.Fatal(err)
	}
	k, err := NewPrivateKey(keys[i%len(keys)])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// memTrust is an in-memory TrustStore.
type memTrust struct {
	trusted map[[20]byte]bool
	known   map[string][][20]byte
}

func (m *memTrust) IsTrusted(peer string, fp [20]byte) bool { return m.trusted[fp] }
func (m *memTrust) KnownFingerprints(peer string) [][20]byte {
	return m.known[peer]
}

// party is one side of an in-process conversation.
type party struct {
	name   string
	acct   *Account
	conv   *Conversation
	got    []Result // received results with text
	events []Event
}

func newParty(tb testing.TB, name string, keyIndex int, tag uint32, peer string, opts Options) *party {
	acct := &Account{Key: testKey(tb, keyIndex), InstanceTag: tag}
	return &party{name: name, acct: acct, conv: NewConversation(acct, peer, opts)}
}

// link wires two parties; lines sent by one are delivered to the other.
type link struct {
	tb   testing.TB
	now  time.Time
	a, b *party
	// wire records every line sent, in order, per direction.
	aToB, bToA []string
	// filter may drop or alter lines in flight; nil passes everything.
	filter func(from *party, line string) (string, bool)
}

func newLink(tb testing.TB, a, b *party) *link {
	return &link{tb: tb, now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), a: a, b: b}
}

func (l *link) other(p *party) *party {
	if p == l.a {
		return l.b
	}
	return l.a
}

// deliver sends every line of res from p to its peer and keeps going
// until nothing is left in flight. It fails the test after too many
// rounds (a protocol loop).
func (l *link) deliver(from *party, res Result) {
	l.tb.Helper()
	from.events = append(from.events, res.Events...)
	type item struct {
		from *party
		line string
	}
	var queue []item
	push := func(p *party, r Result) {
		for _, msg := range r.Send {
			for _, line := range msg.Lines {
				queue = append(queue, item{p, line})
			}
		}
	}
	push(from, res)
	for rounds := 0; len(queue) > 0; rounds++ {
		if rounds > 10000 {
			l.tb.Fatal("protocol loop: too many messages in flight")
		}
		it := queue[0]
		queue = queue[1:]
		line := it.line
		if l.filter != nil {
			var ok bool
			if line, ok = l.filter(it.from, line); !ok {
				continue
			}
		}
		if it.from == l.a {
			l.aToB = append(l.aToB, line)
		} else {
			l.bToA = append(l.bToA, line)
		}
		to := l.other(it.from)
		r, err := to.conv.Receive(l.now, line)
		if err != nil {
			l.tb.Fatalf("%s: Receive: %v", to.name, err)
		}
		to.events = append(to.events, r.Events...)
		if r.HasText {
			to.got = append(to.got, r)
		}
		push(to, r)
	}
}

// send has p send text and delivers everything.
func (l *link) send(p *party, text string) {
	l.tb.Helper()
	res, err := p.conv.Send(l.now, text)
	if err != nil {
		l.tb.Fatalf("%s: Send: %v", p.name, err)
	}
	l.deliver(p, res)
}

// start has p send a query and runs the AKE.
func (l *link) start(p *party) {
	l.tb.Helper()
	l.deliver(p, mustStart(p.conv, l.now))
}

// lastText returns the text of p's last received message.
func (p *party) lastText(tb testing.TB) Result {
	tb.Helper()
	if len(p.got) == 0 {
		tb.Fatalf("%s received nothing", p.name)
	}
	return p.got[len(p.got)-1]
}

// hasEvent reports whether p saw an event of kind k.
func (p *party) hasEvent(k EventKind) bool {
	for _, e := range p.events {
		if e.Kind == k {
			return true
		}
	}
	return false
}

func (p *party) countEvents(k EventKind) int {
	n := 0
	for _, e := range p.events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// missingPeer skips a test whose interop peer or tool is not installed,
// except under CI=true, where every interop peer is mandatory and its
// absence fails the test.
func missingPeer(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("interop peer missing under CI=true: "+format, args...)
	}
	tb.Skipf(format, args...)
}

// mustStart returns c.Start(now), which must succeed: the callers' policies
// all allow OTR.
func mustStart(c *Conversation, now time.Time) Result {
	res, err := c.Start(now)
	if err != nil {
		panic("Start: " + err.Error())
	}
	return res
}
