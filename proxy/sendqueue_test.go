package proxy

import (
	"fmt"
	"slices"
	"testing"
)

// drainQueue pops everything, in order.
func drainQueue(q *sendQueue) []string {
	var out []string
	for {
		lines, _, ok := q.pop()
		if !ok {
			return out
		}
		out = append(out, lines...)
	}
}

// TestSendQueueLanes: priority lines first, then the user lane, then the
// peer lanes round-robin, whatever the order of pushes.
func TestSendQueueLanes(t *testing.T) {
	q := newSendQueue(100)
	for i := range 3 {
		q.push(batch{peer: "mallory", lines: []string{fmt.Sprintf("m%d", i)}})
	}
	q.push(batch{peer: "bob", lines: []string{"b0a", "b0b"}})
	q.push(batch{lines: []string{"u0"}})
	q.pushPriority("PONG")
	q.push(batch{peer: "bob", lines: []string{"b1"}})
	q.push(batch{lines: []string{"u1"}})
	got := drainQueue(q)
	want := []string{"PONG", "u0", "u1", "m0", "b0a", "b0b", "m1", "b1", "m2"}
	if !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
}

// TestSendQueueCoalescesAndBounds: a batch with the key of an unsent one
// replaces it in place; a peer lane keeps its newest peerLaneMax batches;
// all peer lanes together hold at most peerLanesMax, the longest giving
// way; the user lane refuses beyond its bound.
func TestSendQueueCoalescesAndBounds(t *testing.T) {
	q := newSendQueue(2)
	q.push(batch{peer: "m", key: "ake/1", lines: []string{"old"}})
	q.push(batch{peer: "m", lines: []string{"x"}})
	q.push(batch{peer: "m", key: "ake/1", lines: []string{"new"}})
	if got := drainQueue(q); !slices.Equal(got, []string{"new", "x"}) {
		t.Errorf("coalesced: %q", got)
	}

	for i := range 100 {
		q.push(batch{peer: "m", lines: []string{fmt.Sprint(i)}})
	}
	got := drainQueue(q)
	if len(got) != peerLaneMax || got[0] != fmt.Sprint(100-peerLaneMax) {
		t.Errorf("one lane kept %q", got)
	}

	for i := range peerLanesMax + 50 {
		q.push(batch{peer: fmt.Sprintf("p%d", i%300), lines: []string{fmt.Sprint(i)}})
	}
	if _, peer, dropped := q.stats(); peer != peerLanesMax || dropped < 50 {
		t.Errorf("peer lanes hold %d (dropped %d), want %d", peer, dropped, peerLanesMax)
	}
	drainQueue(q)

	if !q.push(batch{lines: []string{"a"}}) || !q.push(batch{lines: []string{"b"}}) || q.push(batch{lines: []string{"c"}}) {
		t.Errorf("user lane bound not applied")
	}
	q.close()
	drainQueue(q)
	if q.push(batch{lines: []string{"late"}}) || q.push(batch{peer: "m", lines: []string{"late"}}) {
		t.Errorf("push after close accepted")
	}
}

// FuzzSendQueue: whatever the pushes, every user batch comes out whole,
// in order, and before any peer batch pushed after it; peer lanes stay
// within their bounds.
func FuzzSendQueue(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0x81, 0x82, 5})
	f.Add([]byte("mallory floods while the user types"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		q := newSendQueue(1 << 20)
		var users []string
		for i, op := range ops {
			line := fmt.Sprint(i)
			switch {
			case op&0x80 != 0:
				lines, _, ok := q.pop()
				if ok && len(users) > 0 && lines[0] == users[0] {
					users = users[1:]
				} else if ok && len(users) > 0 {
					t.Fatalf("popped %q before user line %q", lines, users[0])
				}
			case op%4 == 0:
				q.push(batch{lines: []string{line}})
				users = append(users, line)
			default:
				q.push(batch{peer: fmt.Sprint(op % 7), key: fmt.Sprint(op % 3), lines: []string{line}})
			}
			if _, peer, _ := q.stats(); peer > peerLanesMax {
				t.Fatalf("%d peer batches", peer)
			}
		}
		for _, l := range drainQueue(q) {
			if len(users) > 0 && l == users[0] {
				users = users[1:]
			}
		}
		if len(users) > 0 {
			t.Fatalf("user lines lost: %q", users)
		}
	})
}

// TestSendQueueDirectWrites: a sender gets the socket only when nobody
// writes and nothing waits; while it holds it the writer takes nothing;
// what it leaves unwritten comes out before anything queued meanwhile,
// and the socket is free again only once the writer has caught up.
func TestSendQueueDirectWrites(t *testing.T) {
	q := newSendQueue(100)
	if !q.claimDirect() {
		t.Fatal("idle queue refused a direct write")
	}
	if q.claimDirect() {
		t.Fatal("two direct writers at once")
	}
	q.pushPriority("PING :x") // the reader's keepalive, meanwhile
	if _, _, _, ok, _ := q.take(nil); ok {
		t.Fatal("the writer took something during a direct write")
	}
	if wait, direct := q.idle(); !wait || !direct {
		t.Fatalf("idle during a direct write: wait %v direct %v", wait, direct)
	}
	q.releaseDirect([]byte("ail of batch 1\r\n"))
	select {
	case <-q.wake:
	default:
		t.Fatal("the writer was not woken for the unwritten rest")
	}
	if q.claimDirect() {
		t.Fatal("direct write allowed while a rest waits")
	}
	q.push(batch{lines: []string{"batch 2"}})
	rest, lines, _, ok, _ := q.take(nil)
	if !ok || string(rest) != "ail of batch 1\r\n" || lines != nil {
		t.Fatalf("first take: rest %q lines %q ok %v, want the rest first", rest, lines, ok)
	}
	if q.claimDirect() {
		t.Fatal("direct write allowed while the writer writes")
	}
	var got []string
	for {
		_, lines, _, ok, _ := q.take(nil)
		if !ok {
			break
		}
		got = append(got, lines...)
	}
	if !slices.Equal(got, []string{"PING :x", "batch 2"}) {
		t.Fatalf("then %q", got)
	}
	if q.claimDirect() {
		t.Fatal("direct write allowed before the writer went idle")
	}
	if wait, direct := q.idle(); !wait || direct {
		t.Fatalf("idle with nothing left: wait %v direct %v", wait, direct)
	}
	if !q.claimDirect() {
		t.Fatal("idle queue refused a direct write")
	}
	q.releaseDirect(nil)
	q.stopDirect()
	if q.claimDirect() {
		t.Fatal("direct write allowed while draining")
	}
	q.close()
	if q.claimDirect() {
		t.Fatal("direct write allowed after close")
	}
}
