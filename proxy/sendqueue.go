package proxy

import (
	"sync"
	"time"
)

// The outgoing queue of a connection. Writing to a network is paced (a
// token bucket), so what waits in front of a line decides when it leaves:
// a hostile nick must not be able to fill that line with protocol replies
// and stall the user (doc.go, "Output"). Batches therefore wait in lanes:
//
//   - the priority lane: PING and PONG, written between two batches
//     without pacing;
//   - the user lane: the user's own traffic (client commands, channel and
//     private messages, *otr command results) and replies to peers the
//     user is talking to, first in, first out;
//   - one peer lane per other nick: OTR protocol replies (key exchanges,
//     errors, heartbeats) to peers the user is not talking to, served
//     round-robin after the user lane, at most peerLaneMax batches per
//     peer and peerLanesMax in all (the oldest batch of the longest lane
//     gives way). A peer batch also leaves only when the pacer keeps
//     userReserve tokens after it (ircConn.peerWait), so that the user's
//     next message never waits behind protocol replies for tokens. A batch with a coalescing key replaces an unsent batch
//     of the same peer with the same key: a newer AKE message supersedes
//     an older one.
//
// The lines of one batch (the fragments of one OTR message) are written
// back to back. The queue is safe for concurrent use: the owner goroutine
// pushes, the connection's writer pops.
//
// The queue also says who writes to the socket: nobody, the writer
// goroutine (from the moment it takes something until it has flushed it
// and found the queue empty), or a sender writing directly, which it may
// only do when nobody writes and nothing waits (claimDirect). What a
// direct write leaves unwritten is the first thing the writer takes.

const (
	// peerLaneMax bounds the batches waiting for one peer.
	peerLaneMax = 8
	// peerLanesMax bounds the batches waiting in all peer lanes.
	peerLanesMax = 512
)

// batch is lines written back to back.
type batch struct {
	lines []string
	// peer, when set, puts the batch in that peer's lane (folded nick).
	peer string
	// key coalesces batches of one peer lane: a batch replaces an unsent
	// one with the same key.
	key string
}

// peerLane is the queue of one peer.
type peerLane struct {
	peer    string
	batches []batch
}

// sendQueue holds a connection's unsent batches.
type sendQueue struct {
	mu sync.Mutex
	// wake has a token when something was pushed since the writer last
	// looked.
	wake chan struct{}
	// userMax bounds the user lane (batches); see setUserMax.
	userMax int

	prio      []string
	user      []batch
	lanes     []*peerLane // round-robin order: the next to serve first
	peerCount int
	closed    bool
	// dropped counts peer-lane batches dropped for lack of room.
	dropped int

	// writer says who writes to the socket (see above).
	writer socketWriter
	// rest is what a direct write left unwritten.
	rest []byte
	// noDirect refuses direct writes (the connection is draining), and
	// makes the end of one in progress wake the writer.
	noDirect bool
}

// socketWriter says who is writing to a connection's socket.
type socketWriter uint8

const (
	writerNone      socketWriter = iota
	writerGoroutine              // the connection's writer goroutine
	writerDirect                 // a sender, in writeDirect
)

func newSendQueue(userMax int) *sendQueue {
	return &sendQueue{wake: make(chan struct{}, 1), userMax: userMax}
}

func (q *sendQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// setUserMax changes the bound of the user lane (a client gets a larger
// one once it has authenticated).
func (q *sendQueue) setUserMax(n int) {
	q.mu.Lock()
	q.userMax = n
	q.mu.Unlock()
}

// pushPriority queues a line for the priority lane; false when closed or
// full.
func (q *sendQueue) pushPriority(line string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.prio) >= 16 {
		return false
	}
	q.prio = append(q.prio, line)
	q.signal()
	return true
}

// push queues b: in the user lane, or in its peer's lane when b.peer is
// set. It returns false when the queue is closed, or when the user lane is
// full (the caller decides: a client that does not read is dropped, a
// user's message is reported as not sent). A peer lane never refuses: it
// drops its own oldest batches instead.
func (q *sendQueue) push(b batch) bool {
	if len(b.lines) == 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	if b.peer == "" {
		if len(q.user) >= q.userMax {
			return false
		}
		q.user = append(q.user, b)
		q.signal()
		return true
	}
	lane := q.findLane(b.peer)
	if lane != nil && b.key != "" {
		for i := range lane.batches {
			if lane.batches[i].key == b.key {
				lane.batches[i].lines = b.lines
				return true
			}
		}
	}
	if lane != nil && len(lane.batches) >= peerLaneMax {
		lane.batches = lane.batches[1:]
		q.peerCount--
		q.dropped++
	} else {
		for q.peerCount >= peerLanesMax {
			q.dropFromLongest()
		}
		lane = q.lane(b.peer)
	}
	lane.batches = append(lane.batches, b)
	q.peerCount++
	q.signal()
	return true
}

// findLane returns the lane of peer, or nil.
func (q *sendQueue) findLane(peer string) *peerLane {
	for _, l := range q.lanes {
		if l.peer == peer {
			return l
		}
	}
	return nil
}

// lane returns the lane of peer, adding it last in the round.
func (q *sendQueue) lane(peer string) *peerLane {
	if l := q.findLane(peer); l != nil {
		return l
	}
	l := &peerLane{peer: peer}
	q.lanes = append(q.lanes, l)
	return l
}

// dropFromLongest drops the oldest batch of the longest peer lane.
func (q *sendQueue) dropFromLongest() {
	longest := -1
	for i, l := range q.lanes {
		if longest < 0 || len(l.batches) > len(q.lanes[longest].batches) {
			longest = i
		}
	}
	l := q.lanes[longest]
	l.batches = l.batches[1:]
	q.peerCount--
	q.dropped++
	if len(l.batches) == 0 {
		q.lanes = append(q.lanes[:longest], q.lanes[longest+1:]...)
	}
}

// pop returns the next thing to write: a priority line (prio true, one
// line), or the next batch of the user lane, or the next peer lane's
// batch in round-robin order. ok is false when nothing waits.
func (q *sendQueue) pop() (lines []string, prio, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.popLocked()
}

// peerGate says whether a peer-lane batch of lines may leave now: 0 if
// so, otherwise how long until it may (see ircConn.peerWait).
type peerGate func(lines []string) time.Duration

// take is pop for the writer goroutine: first what a direct write left
// unwritten (rest), then what pop returns; nothing while a direct write is
// in progress. A peer-lane batch is taken only when gate (nil: always)
// lets it; when only such batches wait and gate holds them back, take
// returns nothing and peerWait is how long until the first may leave.
// When it returns something the writer goroutine owns the socket until
// idle.
func (q *sendQueue) take(gate peerGate) (rest []byte, lines []string, prio, ok bool, peerWait time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.writer == writerDirect {
		return nil, nil, false, false, 0
	}
	if q.rest != nil {
		rest, q.rest = q.rest, nil
		q.writer = writerGoroutine
		return rest, nil, false, true, 0
	}
	if gate != nil && len(q.prio) == 0 && len(q.user) == 0 && len(q.lanes) > 0 {
		if w := gate(q.lanes[0].batches[0].lines); w > 0 {
			return nil, nil, false, false, w
		}
	}
	lines, prio, ok = q.popLocked()
	if ok {
		q.writer = writerGoroutine
	}
	return nil, lines, prio, ok, 0
}

// idle is called by the writer goroutine once it has written everything
// it took: wait is true when it may wait for a signal, in which case the
// socket is free for direct writes; direct reports that a direct write is
// in progress (its end signals when it leaves something or the connection
// drains).
func (q *sendQueue) idle() (wait, direct bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.writer == writerDirect {
		return true, true
	}
	if q.rest != nil || q.queuedLocked() {
		return false, false
	}
	q.writer = writerNone
	return true, false
}

// queuedLocked reports whether any batch or priority line waits.
func (q *sendQueue) queuedLocked() bool {
	return len(q.prio) > 0 || len(q.user) > 0 || len(q.lanes) > 0
}

// claimDirect gives the caller the socket for a direct write when nobody
// writes, nothing waits and the queue is open; releaseDirect gives it back.
func (q *sendQueue) claimDirect() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.noDirect || q.writer != writerNone || q.rest != nil || q.queuedLocked() {
		return false
	}
	q.writer = writerDirect
	return true
}

// releaseDirect ends a direct write; rest, when not empty, is what it
// left unwritten, for the writer goroutine to write first.
func (q *sendQueue) releaseDirect(rest []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.writer = writerNone
	if len(rest) > 0 {
		q.rest = rest
	}
	// Something pushed meanwhile (a PING from the reader) waits for the
	// writer too.
	if q.rest != nil || q.queuedLocked() || q.noDirect {
		q.signal()
	}
}

// stopDirect refuses direct writes from now on (the connection drains:
// the writer goroutine writes what remains and stops).
func (q *sendQueue) stopDirect() {
	q.mu.Lock()
	q.noDirect = true
	q.mu.Unlock()
}

func (q *sendQueue) popLocked() (lines []string, prio, ok bool) {
	switch {
	case len(q.prio) > 0:
		line := q.prio[0]
		q.prio = q.prio[1:]
		return []string{line}, true, true
	case len(q.user) > 0:
		b := q.user[0]
		q.user[0] = batch{}
		q.user = q.user[1:]
		return b.lines, false, true
	case len(q.lanes) > 0:
		l := q.lanes[0]
		b := l.batches[0]
		l.batches = l.batches[1:]
		q.peerCount--
		q.lanes = q.lanes[1:]
		if len(l.batches) > 0 {
			q.lanes = append(q.lanes, l)
		}
		return b.lines, false, true
	}
	return nil, false, false
}

// popPriority returns a waiting priority line, if any.
func (q *sendQueue) popPriority() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.prio) == 0 {
		return "", false
	}
	line := q.prio[0]
	q.prio = q.prio[1:]
	return line, true
}

// close makes every later push fail.
func (q *sendQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// stats reports what waits and how many peer batches were dropped.
func (q *sendQueue) stats() (user, peer, dropped int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.user), q.peerCount, q.dropped
}
