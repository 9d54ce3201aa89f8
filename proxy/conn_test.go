package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/irc.v4"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-done
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestConnDeliverToKeepsOrder: messages read before deliverTo go to In,
// every later one to the function, none lost, none reordered, including
// those the reader had already read when the switch happened; In is
// closed when reading stops.
func TestConnDeliverToKeepsOrder(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	c := newIRCConn(a, connOptions{})
	t.Cleanup(c.Close)
	const total = 3000
	var all strings.Builder
	for i := range total {
		fmt.Fprintf(&all, "PRIVMSG alice :%d\r\n", i)
	}
	go b.Write([]byte(all.String()))

	var got []string
	for range 5 {
		select {
		case m := <-c.In():
			got = append(got, m.Trailing())
		case <-time.After(testTimeout):
			t.Fatal("nothing on In")
		}
	}
	var mu sync.Mutex
	batches := 0
	c.deliverTo(func(ms []*irc.Message, _ <-chan struct{}) bool {
		mu.Lock()
		defer mu.Unlock()
		batches++
		for _, m := range ms {
			got = append(got, m.Trailing())
		}
		return true
	})
	deadline := time.Now().Add(testTimeout)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d messages", n, total)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Close()
	select {
	case _, ok := <-c.In():
		if ok {
			t.Fatal("a message reached In after deliverTo")
		}
	case <-time.After(testTimeout):
		t.Fatal("In not closed when reading stopped")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, s := range got {
		if s != fmt.Sprint(i) {
			t.Fatalf("message %d is %q (lost or reordered)", i, s)
		}
	}
	if batches >= total-5 {
		t.Errorf("%d deliveries for %d messages written at once: lines read together are not handed over together", batches, total-5)
	}
}

// TestConnDirectWritesKeepOrderAndNeverBlock: an owner sending to a peer
// that does not read never waits: lines go out directly while the socket
// takes them, then to the queue behind what the socket did not take, until
// the queue refuses. Priority lines pushed meanwhile by another goroutine
// land between batches only. Once the peer reads, every accepted line
// arrives, in order, each batch whole.
func TestConnDirectWritesKeepOrderAndNeverBlock(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	c := newIRCConn(a, connOptions{queue: 64})
	t.Cleanup(c.Close)
	if c.raw == nil {
		t.Skip("no raw socket on this platform")
	}
	var out outputBatch
	c.setOwner(&out)
	stopPings := make(chan struct{})
	pingsDone := make(chan struct{})
	go func() { // the reader's keepalive PINGs, from another goroutine
		defer close(pingsDone)
		for i := 0; ; i++ {
			select {
			case <-stopPings:
				return
			case <-time.After(time.Millisecond):
				c.q.pushPriority(fmt.Sprintf("PING :p%d", i))
			}
		}
	}()
	pad := strings.Repeat("x", 400)
	accepted := 0
	start := time.Now()
	for i := 0; ; i++ {
		ok := c.Send(fmt.Sprintf("PRIVMSG bob :%d a %s", i, pad), fmt.Sprintf("PRIVMSG bob :%d b %s", i, pad))
		if i%3 == 0 {
			out.flush()
		}
		if !ok {
			break
		}
		accepted++
		if time.Since(start) > testTimeout {
			t.Fatalf("still accepting after %d batches to a peer that does not read", accepted)
		}
	}
	out.flush()
	close(stopPings)
	<-pingsDone
	if accepted < 64 {
		t.Fatalf("only %d batches accepted before the queue was full", accepted)
	}

	br := bufio.NewReader(b)
	b.SetReadDeadline(time.Now().Add(testTimeout))
	next := 0
	half := ""
	for next < accepted {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d of %d batches: %v", next, accepted, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "PING :p") {
			if half != "" {
				t.Fatalf("PING %q inside batch %d", line, next)
			}
			continue
		}
		var n int
		var part string
		if _, err := fmt.Sscanf(line, "PRIVMSG bob :%d %s", &n, &part); err != nil {
			t.Fatalf("unexpected line %q", line)
		}
		switch {
		case half == "" && part == "a" && n == next:
			half = "a"
		case half == "a" && part == "b" && n == next:
			half = ""
			next++
		default:
			t.Fatalf("got %d %s, want batch %d after half %q (lost, reordered or split)", n, part, next, half)
		}
	}
}

// TestConnSlowPeerIsDropped: a peer that stops reading is disconnected
// when a write has waited the write timeout, while the sender never
// waits.
func TestConnSlowPeerIsDropped(t *testing.T) {
	t.Parallel()
	a, _ := tcpPair(t)
	c := newIRCConn(a, connOptions{writeTimeout: 200 * time.Millisecond})
	t.Cleanup(c.Close)
	var out outputBatch
	c.setOwner(&out)
	line := "PRIVMSG bob :" + strings.Repeat("y", 450)
	deadline := time.Now().Add(testTimeout)
	for c.Send(line) {
		out.flush()
		if time.Now().After(deadline) {
			t.Fatal("a peer that does not read was never dropped")
		}
		select {
		case <-c.Done():
		default:
			continue
		}
		break
	}
	select {
	case <-c.Done():
	case <-time.After(testTimeout):
		t.Fatal("connection not closed")
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("closed with %v, want a write timeout", err)
	}
}

// TestConnCloseWhileOwnerBusy: closing a connection whose reader is
// waiting for a busy owner (its event channel full) returns at once and
// stops the reader. A raw socket's reader delivers from inside
// RawConn.Read, which Close waits for; the wait must end with the close.
func TestConnCloseWhileOwnerBusy(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	c := newIRCConn(a, connOptions{})
	n := &network{events: make(chan any), stopped: make(chan struct{})} // nobody receives
	entered := make(chan struct{}, 1)
	c.deliverTo(func(ms []*irc.Message, closed <-chan struct{}) bool {
		select {
		case entered <- struct{}{}:
		default:
		}
		return n.postUnless(context.Background(), evUpstreamMsg{uc: c, m: ms[0]}, closed)
	})
	b.Write([]byte("PING :1\r\n"))
	select {
	case <-entered:
	case <-time.After(testTimeout):
		t.Fatal("the reader never delivered")
	}
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("Close blocked behind a reader waiting for the owner")
	}
	select {
	case _, ok := <-c.In():
		if ok {
			t.Fatal("message on In")
		}
	case <-time.After(testTimeout):
		t.Fatal("the reader did not stop")
	}
}

// TestConnDirectWriteAfterPacedWrite: a direct write long after the writer
// goroutine wrote (paced lines) must not inherit the writer's expired
// write deadline. It did, and the first direct write more than
// writeTimeout after a paced one closed the upstream connection with an
// i/o timeout (seen under the flood benchmark with default pacing).
func TestConnDirectWriteAfterPacedWrite(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	lim := newPacer(pacing{burst: 1, interval: 50 * time.Millisecond}, nil)
	c := newIRCConn(a, connOptions{writeTimeout: 100 * time.Millisecond, pacer: lim})
	t.Cleanup(c.Close)
	var out outputBatch
	c.setOwner(&out)
	// Two lines with one token: the second waits for the pacer, so the
	// writer goroutine writes it (with a write deadline).
	c.Send("PRIVMSG bob :one")
	c.Send("PRIVMSG bob :two")
	out.flush()
	r := bufio.NewReader(b)
	b.SetReadDeadline(time.Now().Add(testTimeout))
	for _, want := range []string{"one", "two"} {
		l, err := r.ReadString('\n')
		if err != nil || !strings.Contains(l, want) {
			t.Fatalf("read %q, %v; want %q", l, err, want)
		}
	}
	// Past the writer's deadline, with tokens again: a direct write.
	time.Sleep(300 * time.Millisecond)
	if !c.Send("PRIVMSG bob :three") {
		t.Fatal("Send refused")
	}
	out.flush()
	l, err := r.ReadString('\n')
	if err != nil || !strings.Contains(l, "three") {
		t.Fatalf("read %q, %v; want three", l, err)
	}
	select {
	case <-c.Done():
		t.Fatalf("connection closed: %v", c.Err())
	default:
	}
}

// TestConnPeerRepliesLeaveTheUserTokens: protocol replies to peers the
// user is not talking to never take the pacer's last userReserve tokens,
// so the user's next message leaves at once however many replies wait
// (issue 11: a nick flooding key exchanges made the user's messages wait
// behind its replies for tokens). The pacer here does not refill during
// the test, so what leaves is decided by the tokens alone.
func TestConnPeerRepliesLeaveTheUserTokens(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	lim := newPacer(pacing{burst: 5, interval: time.Hour}, nil)
	c := newIRCConn(a, connOptions{pacer: lim})
	t.Cleanup(c.Close)
	var out outputBatch
	c.setOwner(&out)
	for i := range 10 {
		c.sendPeer(fmt.Sprintf("mallory%d", i), "", []string{fmt.Sprintf("PRIVMSG mallory%d :reply", i)})
		out.flush()
	}
	c.Send("PRIVMSG bob :user-1", "PRIVMSG bob :user-2")
	out.flush()
	r := bufio.NewReader(b)
	b.SetReadDeadline(time.Now().Add(testTimeout))
	var got []string
	for len(got) == 0 || !strings.Contains(got[len(got)-1], "user-2") {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v (the user's message did not leave)", got, err)
		}
		got = append(got, strings.TrimSpace(l))
	}
	peers := len(got) - 2
	if want := 5 - userReserve; peers != want {
		t.Errorf("%d replies to peers left before the user's message, want %d: %q", peers, want, got)
	}
}

// TestConnSeesCloseAfterLastLine: a server that sends a last line and
// closes at once (ERROR, then close) is seen to close at once. The raw
// socket reader took a short read for "drained" and waited for the
// poller, but the end of the stream had arrived with the line and no new
// readiness event ever came: otrbnc noticed the close only at its next
// ping timeout.
func TestConnSeesCloseAfterLastLine(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	b.Write([]byte("ERROR :Closing Link: host (Excess Flood)\r\n"))
	b.Close()
	time.Sleep(50 * time.Millisecond) // both the line and the end have arrived
	c := newIRCConn(a, connOptions{})
	t.Cleanup(c.Close)
	m, ok := <-c.In()
	if !ok || m.Command != "ERROR" {
		t.Fatalf("read %v, %v; want the ERROR line", m, ok)
	}
	expectConnClosed(t, c)
}

// expectConnClosed fails t unless c sees its connection close in time.
func expectConnClosed(t *testing.T, c *ircConn) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(testTimeout):
		t.Fatal("the close was not seen")
	}
}

// TestConnReadsLinesInPieces: lines that arrive in pieces, with the
// reader waiting for the poller between them (each piece is read whole and
// the socket is then empty), come out whole and in order, and a close that
// follows the last piece is seen.
func TestConnReadsLinesInPieces(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	c := newIRCConn(a, connOptions{})
	t.Cleanup(c.Close)
	pieces := []string{"PRIVMSG bob :he", "llo\r", "\nPRIVMSG bob :two\r\nPRIV", "MSG bob :three\r\n", "PRIVMSG bob :four\r\n"}
	for i, p := range pieces {
		if _, err := b.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
		if i < len(pieces)-1 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	b.Close()
	for _, want := range []string{"hello", "two", "three", "four"} {
		select {
		case m, ok := <-c.In():
			if !ok || m.Command != "PRIVMSG" || m.Trailing() != want {
				t.Fatalf("read %v, %v; want PRIVMSG %q", m, ok, want)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%q did not arrive", want)
		}
	}
	expectConnClosed(t, c)
}

// TestConnBatchLeavesWhole: the fragments of one OTR message leave
// together once the pacer has room for all of them, rather than the first
// at once and the rest as tokens come (which left the peer holding half a
// message while the server's limit allowed the whole).
func TestConnBatchLeavesWhole(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	const interval = 300 * time.Millisecond
	c := newIRCConn(a, connOptions{pacer: newPacer(pacing{burst: 3, interval: interval}, nil)})
	t.Cleanup(c.Close)
	c.Send("PRIVMSG bob :one")
	c.Send("PRIVMSG bob :two") // one token left
	start := time.Now()
	c.Send("PRIVMSG bob :frag-1", "PRIVMSG bob :frag-2")
	r := bufio.NewReader(b)
	b.SetReadDeadline(time.Now().Add(testTimeout))
	arrived := map[string]time.Duration{}
	for len(arrived) < 4 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (got %v)", err, arrived)
		}
		arrived[strings.TrimSpace(l[strings.LastIndexByte(l, ':')+1:])] = time.Since(start)
	}
	if f1 := arrived["frag-1"]; f1 < interval*3/4 {
		t.Errorf("the first fragment left after %v, before there was room for both (%v)", f1, interval)
	}
	if gap := arrived["frag-2"] - arrived["frag-1"]; gap > interval/3 {
		t.Errorf("the second fragment left %v after the first", gap)
	}
}
