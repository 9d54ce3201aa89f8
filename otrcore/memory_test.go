package otrcore

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// hostileFragment is a v3 fragment from tag to us, as a peer may craft it.
func hostileFragment(from, to uint32, k, n int, piece string) string {
	return fmt.Sprintf("?OTR|%08x|%08x,%d,%d,%s,", from, to, k, n, piece)
}

// TestReassemblyGrowsWithData: a first fragment announcing 65535 pieces
// makes the engine hold about what it received, not what was announced.
func TestReassemblyGrowsWithData(t *testing.T) {
	_, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	now := time.Unix(2e9, 0)
	before := a.conv.MemoryUse()
	piece := strings.Repeat("A", 300)
	if res, _ := a.conv.Receive(now, hostileFragment(b.acct.InstanceTag, a.acct.InstanceTag, 1, 65535, piece)); len(res.Events) != 0 {
		t.Fatalf("events %v", res.Events)
	}
	if grown := a.conv.MemoryUse() - before; grown > 2*len(piece) {
		t.Fatalf("one %d-byte piece announcing 65535 made the conversation grow by %d bytes", len(piece), grown)
	}
	// Growth stays within twice what was received, and within the cap.
	for k := 2; k <= 300; k++ {
		res, _ := a.conv.Receive(now, hostileFragment(b.acct.InstanceTag, a.acct.InstanceTag, k, 65535, piece))
		received := k * len(piece)
		held := a.conv.MemoryUse() - before
		if received <= maxReassembled && (held > 2*received || held > maxReassembled) {
			t.Fatalf("after %d bytes the conversation holds %d more", received, held)
		}
		if received > maxReassembled {
			if !hasKind(res.Events, EventTooLarge) || held != 0 {
				t.Fatalf("over the cap: events %v, %d bytes still held", res.Events, held)
			}
			break
		}
	}
}

// TestPartialMessageExpires: a partial fragmented message that receives
// no piece for fragmentTimeout is forgotten by Tick; a slow but steady
// one is not.
func TestPartialMessageExpires(t *testing.T) {
	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual, MaxMessageSize: 100})
	res, err := b.conv.Send(l.now, strings.Repeat("slow ", 40))
	if err != nil {
		t.Fatal(err)
	}
	lines := res.Send[0].Lines
	base := a.conv.MemoryUse()
	now := l.now
	// One piece a minute arrives: nothing expires.
	for _, line := range lines[:len(lines)-1] {
		now = now.Add(time.Minute)
		a.conv.Tick(now)
		if r, _ := a.conv.Receive(now, line); r.HasText || len(r.Events) != 0 {
			t.Fatalf("piece: %+v", r)
		}
	}
	if a.conv.MemoryUse() <= base {
		t.Fatal("nothing held for the partial message")
	}
	// Then silence: the partial message is forgotten.
	a.conv.Tick(now.Add(fragmentTimeout - time.Second))
	if a.conv.MemoryUse() <= base {
		t.Fatal("partial message forgotten too early")
	}
	now = now.Add(fragmentTimeout)
	a.conv.Tick(now)
	if got := a.conv.MemoryUse(); got != base {
		t.Fatalf("after %v of silence the conversation holds %d bytes, %d before the message", fragmentTimeout, got, base)
	}
	if r, _ := a.conv.Receive(now, lines[len(lines)-1]); r.HasText {
		t.Fatal("a message completed from an expired start")
	}
}

// TestShedAndLastActivity: a peer inventing instances, each with an AKE
// and a partial message, grows MemoryUse; Shed returns it to what the
// session needs, and the session still works. LastActivity follows
// traffic, not Tick.
func TestShedAndLastActivity(t *testing.T) {
	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	now := l.now.Add(time.Minute)
	base := a.conv.MemoryUse()
	// Every instance slot but the session's gets an AKE, then a partial
	// message (an unfragmented message would end the partial ones).
	for i := range maxInstances - 1 {
		commit := dhCommitMsg{msgHeader: msgHeader{version: protocolV3, msgType: msgDHCommit, senderTag: uint32(0x5000 + i)},
			encGx: make([]byte, 196), hashGx: make([]byte, hashedGxLen)}
		a.conv.Receive(now, encodeEnvelope(commit.marshal()))
	}
	for i := range maxInstances - 1 {
		a.conv.Receive(now, hostileFragment(uint32(0x5000+i), a.acct.InstanceTag, 1, 2, strings.Repeat("B", 400)))
	}
	if grown := a.conv.MemoryUse() - base; grown < (maxInstances-1)*(instanceBytes+akeBytes+400) {
		t.Fatalf("hostile instances counted as %d bytes: %+v", grown, a.conv.Status().Instances)
	}
	if got := a.conv.LastActivity(); !got.Equal(now) {
		t.Fatalf("LastActivity %v, want %v", got, now)
	}
	a.conv.Tick(now.Add(time.Hour))
	if got := a.conv.LastActivity(); !got.Equal(now) {
		t.Fatalf("Tick moved LastActivity to %v", got)
	}
	a.conv.Shed()
	if got := a.conv.MemoryUse(); got != base {
		t.Fatalf("after Shed: %d bytes, %d before", got, base)
	}
	l.send(b, "still here")
	if got := a.lastText(t); got.Text != "still here" || !got.Encrypted {
		t.Fatalf("session after Shed: %+v", got)
	}
}

// TestHeartbeatsDoNotPingPong: two engines idling for hours after one
// message exchange only send a bounded number of heartbeats; a heartbeat
// is never answered with a heartbeat.
func TestHeartbeatsDoNotPingPong(t *testing.T) {
	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	l.send(a, "hello")
	l.send(b, "hello back")
	sent := len(l.aToB) + len(l.bToA)
	for i := 0; i < 6*60*3; i++ { // three hours, a Tick every 10 s
		l.now = l.now.Add(10 * time.Second)
		l.deliver(a, a.conv.Tick(l.now))
		l.deliver(b, b.conv.Tick(l.now))
	}
	if n := len(l.aToB) + len(l.bToA) - sent; n > 2 {
		t.Fatalf("%d messages exchanged while idle for three hours", n)
	}
	// Heartbeats still follow received text (at once, after a long
	// silence).
	before := len(l.bToA)
	l.send(a, "are you there")
	l.now = l.now.Add(2 * time.Minute)
	l.deliver(b, b.conv.Tick(l.now))
	if len(l.bToA) != before+1 {
		t.Fatalf("%d heartbeats after text, want 1", len(l.bToA)-before)
	}
}

// TestIdleCompact: Tick drops the expanded cipher state of a session idle
// for idleCompact, not earlier, MemoryUse shows it, and the session
// carries on both ways; Shed drops the same state at once.
func TestIdleCompact(t *testing.T) {
	a, b := benchPair(t, 0)
	now := time.Unix(1e9, 0)
	expanded := func(c *Conversation) bool {
		in, err := c.sendTarget()
		if err != nil {
			t.Fatal(err)
		}
		ks := in.keys
		for _, p := range ks.pairs {
			if p.send != nil || p.recv != nil {
				return true
			}
		}
		return ks.work != nil
	}
	for i := 0; i < 3; i++ {
		for _, d := range [][2]*Conversation{{a, b}, {b, a}} {
			res, err := d[0].Send(now, "before")
			if err != nil {
				t.Fatal(err)
			}
			if r, _ := d[1].Receive(now, res.Send[0].Lines[0]); r.Text != "before" {
				t.Fatal("message lost")
			}
		}
	}
	// alice received last: her Tick sends a heartbeat a minute later.
	now = now.Add(heartbeatInterval)
	for _, d := range [][2]*Conversation{{a, b}, {b, a}} {
		for _, m := range d[0].Tick(now).Send {
			d[1].Receive(now, m.Lines[0])
		}
	}
	var active [2]int
	for i, c := range []*Conversation{a, b} {
		c.Tick(now.Add(idleCompact - time.Second))
		if !expanded(c) {
			t.Fatal("compacted before the session was idle long enough")
		}
		active[i] = c.MemoryUse()
	}
	later := now.Add(idleCompact)
	for i, c := range []*Conversation{a, b} {
		if res := c.Tick(later); len(res.Send) > 0 || len(res.Events) > 0 {
			t.Fatalf("idle Tick produced %+v", res)
		}
		if expanded(c) {
			t.Fatal("idle session kept its expanded cipher state")
		}
		if idle := c.MemoryUse(); idle > active[i]-directionBytes-dataWorkBytes {
			t.Fatalf("MemoryUse %d when idle, %d when active", idle, active[i])
		}
	}
	for i := 0; i < 3; i++ {
		for _, d := range [][2]*Conversation{{a, b}, {b, a}, {a, b}} {
			res, err := d[0].Send(later, "after")
			if err != nil {
				t.Fatal(err)
			}
			if r, _ := d[1].Receive(later, res.Send[0].Lines[0]); r.Text != "after" {
				t.Fatal("message lost after compaction")
			}
		}
	}
	// Shed compacts at once; MemoryUse follows the state both ways.
	for _, c := range []*Conversation{a, b} {
		if !expanded(c) {
			t.Fatal("no expanded state after messages")
		}
		before := c.MemoryUse()
		c.Shed()
		if expanded(c) || c.MemoryUse() >= before {
			t.Fatalf("Shed kept the expanded cipher state (MemoryUse %d, %d before)", c.MemoryUse(), before)
		}
	}
	res, err := a.Send(later, "after Shed")
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := b.Receive(later, res.Send[0].Lines[0]); r.Text != "after Shed" {
		t.Fatal("message lost after Shed")
	}
}
