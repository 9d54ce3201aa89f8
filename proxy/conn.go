package proxy

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"gopkg.in/irc.v4"
)

// connOptions tunes an ircConn.
type connOptions struct {
	// queue bounds the user lane of the outgoing queue (batches); see
	// sendQueue. Zero means 1024.
	queue int
	// limiter paces outgoing lines; nil means no pacing.
	limiter *rate.Limiter
	// pingInterval, when positive, makes the reader send a PING after that
	// much silence and give up after pingTimeout more.
	pingInterval, pingTimeout time.Duration
	// writeTimeout bounds one write to the socket.
	writeTimeout time.Duration
	logger       *slog.Logger
}

// ircConn is one IRC connection with exactly one reader goroutine and one
// writer goroutine. Messages read arrive on In (closed when reading
// stops); batches queued with Send (or sendPeer) are written by the
// writer in the order sendQueue decides, the lines of one batch back to
// back.
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
		nc:     nc,
		opts:   opts,
		in:     make(chan *irc.Message, 64),
		q:      newSendQueue(opts.queue),
		drain:  make(chan struct{}),
		done:   make(chan struct{}),
		wdone:  make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
	}
	go c.readLoop()
	go c.writeLoop()
	return c
}

// In returns the channel of messages read; it is closed when the
// connection ends.
func (c *ircConn) In() <-chan *irc.Message { return c.in }

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
func (c *ircConn) Send(lines ...string) bool { return c.q.push(batch{lines: lines}) }

// SendMessage queues one message in the user lane.
func (c *ircConn) SendMessage(m *irc.Message) bool { return c.Send(formatMessage(m)) }

// sendPeer queues lines in the lane of peer (see sendQueue), replacing an
// unsent batch of that peer with the same non-empty key.
func (c *ircConn) sendPeer(peer, key string, lines []string) bool {
	return c.q.push(batch{lines: lines, peer: peer, key: key})
}

// sendPriority queues a line that skips the paced queue (PING, PONG); it
// goes out between two batches, never inside one.
func (c *ircConn) sendPriority(line string) { c.q.pushPriority(line) }

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
	pace := func() bool {
		if c.opts.limiter == nil {
			return true
		}
		r := c.opts.limiter.Reserve()
		d := r.Delay()
		if d <= 0 {
			return true
		}
		if !flush() {
			return false
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-c.ctx.Done():
			r.Cancel()
			return false
		}
	}
	draining := false
	for {
		lines, prio, ok := c.q.pop()
		if !ok {
			if !flush() || draining {
				return
			}
			select {
			case <-c.q.wake:
			case <-c.drain:
				draining = true
			case <-c.done:
				return
			}
			continue
		}
		for _, l := range lines {
			if !prio && !pace() {
				return
			}
			if !write(l) {
				return
			}
			// A PING or PONG waiting goes out between batches only.
		}
	}
}

// deadlineWriter writes to the connection with the write timeout.
type deadlineWriter struct{ c *ircConn }

func (w deadlineWriter) Write(b []byte) (int, error) {
	if err := w.c.nc.SetWriteDeadline(time.Now().Add(w.c.opts.writeTimeout)); err != nil {
		return 0, err
	}
	return w.c.nc.Write(b)
}

func (c *ircConn) readLoop() {
	defer close(c.in)
	lr := newLineReader(c.nc, maxLineLen)
	awaitingPong := false
	setDeadline := func(d time.Duration) {
		if d > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(d))
		}
	}
	setDeadline(c.opts.pingInterval)
	for {
		line, err := lr.readLine()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, errLineTooLong):
				c.opts.logger.Warn("discarded an over-long line", "limit", maxLineLen)
				continue
			case errors.As(err, &ne) && ne.Timeout() && c.opts.pingInterval > 0 && !awaitingPong:
				awaitingPong = true
				c.sendPriority("PING :otrbnc")
				setDeadline(c.opts.pingTimeout)
				continue
			case errors.As(err, &ne) && ne.Timeout() && awaitingPong:
				err = errors.New("ping timeout: the connection is dead")
			}
			c.closeWith(err)
			return
		}
		awaitingPong = false
		setDeadline(c.opts.pingInterval)
		m, perr := parseLine(line)
		if perr != nil {
			if !errors.Is(perr, irc.ErrZeroLengthMessage) {
				c.opts.logger.Debug("discarded an unparsable line", "err", perr)
			}
			continue
		}
		select {
		case c.in <- m:
		case <-c.done:
			return
		}
	}
}
