package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/irc.v4"
)

// connOptions tunes an ircConn.
type connOptions struct {
	// queue bounds the user lane of the outgoing queue (batches); see
	// sendQueue. Zero means 1024.
	queue int
	// pacer paces outgoing lines; nil means no pacing.
	pacer *pacer
	// pingInterval, when positive, makes the reader send a PING after that
	// much silence and give up after pingTimeout more.
	pingInterval, pingTimeout time.Duration
	// writeTimeout bounds one write to the socket.
	writeTimeout time.Duration
	logger       *slog.Logger
}

// ircConn is one IRC connection with exactly one reader goroutine and one
// writer goroutine. Messages read arrive on In until deliverTo names a
// function that receives them instead (In is closed when reading stops);
// batches queued with Send (or sendPeer) are written in the order
// sendQueue decides, the lines of one batch back to back: by the writer
// goroutine, or, when nothing waits and the socket takes them at once, by
// the sender itself (see Send).
type ircConn struct {
	nc     net.Conn
	opts   connOptions
	in     chan *irc.Message
	q      *sendQueue
	drain  chan struct{}
	done   chan struct{}
	wdone  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	// sink, once set, receives what the reader reads instead of in;
	// sinkSet is closed when it is set (deliverTo).
	sink    atomic.Pointer[func([]*irc.Message, <-chan struct{}) bool]
	sinkSet chan struct{}
	sinkOne sync.Once
	// raw writes to the socket without blocking (nil when the connection
	// cannot: TLS, pipes); see writeDirect. direct holds the lines of a
	// direct write and held says it holds the socket (sendQueue.claimDirect):
	// both belong to the goroutine that sends (the owner, once batch is
	// set by setOwner).
	raw    *rawSocket
	direct []byte
	held   bool
	batch  *outputBatch

	closeOnce, drainOnce sync.Once
	mu                   sync.Mutex
	err                  error
}

func newIRCConn(nc net.Conn, opts connOptions) *ircConn {
	if opts.queue <= 0 {
		opts.queue = 1024
	}
	if opts.writeTimeout <= 0 {
		opts.writeTimeout = 30 * time.Second
	}
	if opts.logger == nil {
		opts.logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &ircConn{
		nc: nc,
		// Unbuffered, so that nothing read is left in it when deliverTo
		// takes over.
		in:      make(chan *irc.Message),
		opts:    opts,
		q:       newSendQueue(opts.queue),
		drain:   make(chan struct{}),
		done:    make(chan struct{}),
		wdone:   make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
		sinkSet: make(chan struct{}),
		raw:     newRawSocket(nc),
	}
	go c.readLoop()
	go c.writeLoop()
	return c
}

// In returns the channel of messages read; it is closed when reading
// stops. After deliverTo it carries no more messages.
func (c *ircConn) In() <-chan *irc.Message { return c.in }

// deliverTo makes the reader goroutine hand every later message to f
// itself, in order, instead of sending it on In: once registration is
// over, a message goes from the socket to the network's owner goroutine
// with no goroutine in between. f gets the messages that arrived together
// (at least one); it must not keep the slice. f returning false makes the
// reader stop (the network is shutting down). If f has to wait, it must
// give up when closed is closed (the connection is closing: a raw
// socket's reader delivers from inside RawConn.Read, which Close waits
// for). Only the goroutine that was receiving from In may call deliverTo,
// once it has stopped receiving; In is closed when the reader stops.
func (c *ircConn) deliverTo(f func(ms []*irc.Message, closed <-chan struct{}) bool) {
	c.sinkOne.Do(func() {
		c.sink.Store(&f)
		close(c.sinkSet)
	})
}

// deliver hands ms to the sink, or one by one to whoever receives from In.
func (c *ircConn) deliver(ms []*irc.Message) bool {
	for len(ms) > 0 {
		if f := c.sink.Load(); f != nil {
			return (*f)(ms, c.done)
		}
		select {
		case c.in <- ms[0]:
			ms = ms[1:]
		case <-c.sinkSet:
		case <-c.done:
			return false
		}
	}
	return true
}

// Done is closed once the connection is closed.
func (c *ircConn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, once it has.
func (c *ircConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// RemoteAddr returns the peer's address.
func (c *ircConn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

func (c *ircConn) closeWith(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
		c.q.close()
		c.cancel()
		close(c.done)
		c.nc.Close()
	})
}

// Close closes the connection at once, dropping queued output.
func (c *ircConn) Close() { c.closeWith(errors.New("closed")) }

// Shutdown writes what is queued (for at most timeout), then closes.
func (c *ircConn) Shutdown(timeout time.Duration) {
	c.drainOnce.Do(func() { close(c.drain) })
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.wdone:
	case <-t.C:
	}
	c.closeWith(errors.New("shut down"))
}

// Send queues lines in the user lane, to be written back to back. It
// never blocks: it returns false when the connection is closed or the
// user lane is full.
//
// When nothing waits in the queue, the writer goroutine is idle and the
// pacer lets the lines go at once, Send writes them itself (see
// writeDirect), saving the hand-off to the writer goroutine.
func (c *ircConn) Send(lines ...string) bool {
	if c.writeDirect(lines, false) {
		return true
	}
	return c.q.push(batch{lines: lines})
}

// SendMessage queues one message in the user lane.
func (c *ircConn) SendMessage(m *irc.Message) bool { return c.Send(formatMessage(m)) }

// sendPeer queues lines in the lane of peer (see sendQueue), replacing an
// unsent batch of that peer with the same non-empty key.
func (c *ircConn) sendPeer(peer, key string, lines []string) bool {
	if c.peerWait(lines) == 0 && c.writeDirect(lines, false) {
		return true
	}
	return c.q.push(batch{lines: lines, peer: peer, key: key})
}

// sendPriority queues a line that skips the paced queue (PING, PONG); it
// goes out between two batches, never inside one.
func (c *ircConn) sendPriority(line string) {
	if c.writeDirect([]string{line}, true) {
		return
	}
	c.q.pushPriority(line)
}

// outputBatch is the output an owner goroutine produced while handling one
// event: the connections holding lines written directly (writeDirect),
// flushed with one system call each when the event is done.
type outputBatch struct{ conns []*ircConn }

// flush writes what every connection holds.
func (b *outputBatch) flush() {
	for i, c := range b.conns {
		c.flushHeld()
		b.conns[i] = nil
	}
	b.conns = b.conns[:0]
}

// setOwner hands the connection to the goroutine that flushes b: from now
// on only that goroutine calls Send, sendPeer and sendPriority, and what
// they write directly is held until b.flush.
func (c *ircConn) setOwner(b *outputBatch) { c.batch = b }

// Direct writes: when the socket is free (the writer goroutine holds no
// unwritten line and nothing is queued) and the pacer, unless prio, has a
// token for every line now, lines are written from the caller's goroutine
// with one non-blocking system call, in place of a hand-off to the writer
// goroutine (in closed loop the cost of a message is mostly such
// hand-offs). A connection with an owner (setOwner) holds them in a
// buffer until the owner's flush, so that all the owner wrote while
// handling one event leaves in one call. Whatever the socket does not take
// at once goes to the writer goroutine, which writes it before anything
// queued; so the order of the lines never changes, the lines of a batch
// stay together, and no sender ever waits for the socket: a slow reader
// fills the queue and is dropped as before.
const (
	// directFlushAt flushes a held buffer early when it grows this big.
	directFlushAt = 16 << 10
	// directBufMax bounds the buffer a connection keeps between writes.
	directBufMax = 4096
)

// writeDirect takes lines for a direct write, or reports false (then the
// caller queues them). Without an owner it may be called concurrently:
// the claim on the socket (sendQueue.claimDirect) makes the claimant the
// only user of held and direct until it releases it.
func (c *ircConn) writeDirect(lines []string, prio bool) bool {
	if c.raw == nil || len(lines) == 0 {
		return false
	}
	paced := !prio && c.opts.pacer != nil
	if c.batch != nil && c.held {
		// The owner adds to what it holds.
		if paced && !c.opts.pacer.allow(lines) {
			// These wait for the pacer, behind what is held.
			c.flushHeld()
			return false
		}
		if prio {
			c.opts.pacer.take(lines) // unpaced, but the server counts it
		}
		c.appendLines(lines)
		if len(c.direct) >= directFlushAt {
			c.flushHeld()
		}
		return true
	}
	if !c.q.claimDirect() {
		return false
	}
	if paced && !c.opts.pacer.allow(lines) {
		c.q.releaseDirect(nil)
		return false
	}
	if prio {
		c.opts.pacer.take(lines)
	}
	c.held = true
	c.appendLines(lines)
	if c.batch == nil || len(c.direct) >= directFlushAt {
		c.flushHeld()
		return true
	}
	c.batch.conns = append(c.batch.conns, c)
	return true
}

// appendLines adds lines, CRLF-terminated, to what the connection holds.
func (c *ircConn) appendLines(lines []string) {
	for _, l := range lines {
		c.direct = append(c.direct, l...)
		c.direct = append(c.direct, '\r', '\n')
	}
}

// flushHeld writes what the connection holds and frees the socket; the
// writer goroutine gets what the socket did not take.
func (c *ircConn) flushHeld() {
	if !c.held {
		return
	}
	c.held = false
	buf := c.direct
	n, err := c.raw.write(buf)
	var rest []byte
	if n < len(buf) && err == nil {
		rest = append([]byte(nil), buf[n:]...)
	}
	if cap(buf) <= directBufMax {
		c.direct = buf[:0]
	} else {
		c.direct = nil
	}
	c.q.releaseDirect(rest)
	if err != nil {
		c.closeWith(fmt.Errorf("writing: %w", err))
	}
}

// userReserve is how many full lines of the pacer's room protocol
// replies to peers the user is not talking to (peer lanes) must leave: a
// message the user sends next (one OTR data message is usually two lines)
// goes out at once instead of waiting for room a hostile nick's key
// exchanges took.
const userReserve = 3

// peerWait reports how long a peer-lane batch must wait so that the pacer
// still has room for userReserve lines after it (or, for a batch too large
// for that, full buckets): 0 when it may leave now or nothing is paced.
func (c *ircConn) peerWait(lines []string) time.Duration {
	return c.opts.pacer.reserveWait(lines, userReserve)
}

// setQueueLimit changes the bound of the user lane.
func (c *ircConn) setQueueLimit(n int) { c.q.setUserMax(n) }

// writeLoop writes what the queue hands out, through a buffer that is
// flushed whenever the writer would wait (for the pacer or for more
// lines), so that a burst costs one system call and a lone line is not
// delayed.
func (c *ircConn) writeLoop() {
	defer close(c.wdone)
	bw := bufio.NewWriterSize(deadlineWriter{c}, 4096)
	flush := func() bool {
		if bw.Buffered() == 0 {
			return true
		}
		if err := bw.Flush(); err != nil {
			c.closeWith(err)
			return false
		}
		return true
	}
	write := func(line string) bool {
		bw.WriteString(line)
		bw.WriteString("\r\n")
		return bw.Buffered() < 3072 || flush()
	}
	// pace waits until the first lines of a batch may leave and returns
	// how many: all of them, or one at a time for a batch larger than the
	// pacer's buckets (see pacing.go).
	pace := func(lines []string) (int, bool) {
		for {
			d, count := c.opts.pacer.next(lines)
			if d <= 0 {
				c.opts.pacer.take(lines[:count])
				return count, true
			}
			if !flush() {
				return 0, false
			}
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return 0, false
			}
		}
	}
	draining, drain := false, c.drain
	for {
		gate := peerGate(c.peerWait)
		if draining {
			gate = nil // what remains goes out at the pacer's rate
		}
		rest, lines, prio, ok, peerWait := c.q.take(gate)
		if !ok {
			if !flush() {
				return
			}
			if peerWait > 0 {
				// Only peer replies wait, for tokens beyond the user's
				// reserve; anything the user sends meanwhile wakes us.
				t := time.NewTimer(peerWait)
				select {
				case <-t.C:
				case <-c.q.wake:
				case <-drain:
					draining, drain = true, nil
					c.q.stopDirect()
				case <-c.done:
					t.Stop()
					return
				}
				t.Stop()
				continue
			}
			wait, direct := c.q.idle()
			if !wait {
				continue
			}
			if draining && !direct {
				return
			}
			select {
			case <-c.q.wake:
			case <-drain:
				draining, drain = true, nil
				c.q.stopDirect()
			case <-c.done:
				return
			}
			continue
		}
		if rest != nil {
			// The tail of a direct write: finish that batch first.
			bw.Write(rest)
			if bw.Buffered() >= 3072 && !flush() {
				return
			}
			continue
		}
		if prio {
			c.opts.pacer.take(lines) // unpaced, but the server counts it
		}
		for len(lines) > 0 {
			count := len(lines)
			if !prio {
				var ok bool
				if count, ok = pace(lines); !ok {
					return
				}
			}
			for _, l := range lines[:count] {
				if !write(l) {
					return
				}
			}
			lines = lines[count:]
			// A PING or PONG waiting goes out between batches only.
		}
	}
}

// deadlineWriter writes to the connection with the write timeout, and
// clears the deadline afterwards: a direct write (rawSocket.write) made
// later, when the writer goroutine has given the socket back, must not
// find it expired.
type deadlineWriter struct{ c *ircConn }

func (w deadlineWriter) Write(b []byte) (int, error) {
	if err := w.c.nc.SetWriteDeadline(time.Now().Add(w.c.opts.writeTimeout)); err != nil {
		return 0, err
	}
	n, err := w.c.nc.Write(b)
	if err == nil {
		err = w.c.nc.SetWriteDeadline(time.Time{})
	}
	return n, err
}

// readBatchMax bounds the messages the reader hands over at once.
const readBatchMax = 32

// readLoop reads, parses and delivers lines. The messages of lines that
// arrived together are delivered together, at most readBatchMax at a
// time, and always before the reader waits for the socket again.
func (c *ircConn) readLoop() {
	defer close(c.in)
	awaitingPong := false
	// The silence deadline moves with every line, but is set again only
	// when a quarter of it has passed (setting it costs a timer update):
	// a PING goes out after between ¾ and all of pingInterval of silence.
	var deadline time.Time
	var deadlineFor time.Duration
	setDeadline := func(d time.Duration) {
		if d <= 0 {
			return
		}
		now := time.Now()
		if d == deadlineFor && deadline.Sub(now) > d-d/4 {
			return
		}
		deadline, deadlineFor = now.Add(d), d
		_ = c.nc.SetReadDeadline(deadline)
	}
	setDeadline(c.opts.pingInterval)
	var ready []*irc.Message
	var r lineHandler
	r = lineHandler{
		line: func(line string) bool {
			awaitingPong = false
			setDeadline(c.opts.pingInterval)
			m, perr := parseLine(line)
			if perr != nil {
				if !errors.Is(perr, irc.ErrZeroLengthMessage) {
					c.opts.logger.Debug("discarded an unparsable line", "err", perr)
				}
				return true
			}
			ready = append(ready, m)
			return len(ready) < readBatchMax || r.flush()
		},
		tooLong: func() { c.opts.logger.Warn("discarded an over-long line", "limit", maxLineLen) },
		// err says whether reading goes on after err.
		err: func(err error) bool {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout() && c.opts.pingInterval > 0 && !awaitingPong:
				awaitingPong = true
				// Queued, never written directly: the connection's owner
				// may be writing.
				c.q.pushPriority("PING :otrbnc")
				setDeadline(c.opts.pingTimeout)
				return true
			case errors.As(err, &ne) && ne.Timeout() && awaitingPong:
				err = errors.New("ping timeout: the connection is dead")
			}
			c.closeWith(err)
			return false
		},
	}
	r.flush = func() bool {
		if len(ready) == 0 {
			return true
		}
		ok := c.deliver(ready)
		clear(ready)
		ready = ready[:0]
		return ok
	}
	if c.raw != nil {
		c.raw.readLines(r)
		return
	}
	lr := newLineReader(c.nc, maxLineLen)
	for {
		if !lr.hasLine() && !r.flush() {
			return
		}
		line, err := lr.readLine()
		switch {
		case errors.Is(err, errLineTooLong):
			r.tooLong()
		case err != nil:
			if !r.err(err) {
				return
			}
		case !r.line(line):
			return
		}
	}
}

// lineHandler is what a connection's reader does with what it reads.
type lineHandler struct {
	// line handles one line; false stops reading.
	line func(line string) bool
	// tooLong reports a line over maxLineLen, discarded.
	tooLong func()
	// flush is called when no whole line is left to read before waiting
	// for the socket; false stops reading.
	flush func() bool
	// err handles a read error; false stops reading.
	err func(error) bool
}
