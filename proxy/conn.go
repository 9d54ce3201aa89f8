package proxy

import (
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
	// queue is the capacity of the outgoing batch queue.
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
// stops); batches given to Send are written in order, the lines of one
// batch back to back.
type ircConn struct {
	nc     net.Conn
	opts   connOptions
	in     chan *irc.Message
	out    chan []string
	prio   chan string
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
		out:    make(chan []string, opts.queue),
		prio:   make(chan string, 16),
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

// Send queues lines to be written back to back. It never blocks: it
// returns false when the connection is closed or its queue is full.
func (c *ircConn) Send(lines ...string) bool {
	if len(lines) == 0 {
		return true
	}
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.out <- lines:
		return true
	case <-c.done:
		return false
	default:
		return false
	}
}

// SendMessage queues one message.
func (c *ircConn) SendMessage(m *irc.Message) bool { return c.Send(formatMessage(m)) }

// sendPriority queues a line that skips the paced queue (PING, PONG); it
// goes out between two batches, never inside one.
func (c *ircConn) sendPriority(line string) {
	select {
	case c.prio <- line:
	case <-c.done:
	default:
	}
}

func (c *ircConn) write(line string) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.opts.writeTimeout)); err != nil {
		return err
	}
	_, err := c.nc.Write([]byte(line + "\r\n"))
	return err
}

func (c *ircConn) writeLoop() {
	defer close(c.wdone)
	writeBatch := func(b []string) bool {
		for _, l := range b {
			if c.opts.limiter != nil {
				if err := c.opts.limiter.Wait(c.ctx); err != nil {
					return false
				}
			}
			if err := c.write(l); err != nil {
				c.closeWith(err)
				return false
			}
		}
		return true
	}
	for {
		select {
		case l := <-c.prio:
			if err := c.write(l); err != nil {
				c.closeWith(err)
				return
			}
			continue
		default:
		}
		select {
		case l := <-c.prio:
			if err := c.write(l); err != nil {
				c.closeWith(err)
				return
			}
		case b := <-c.out:
			if !writeBatch(b) {
				return
			}
		case <-c.drain:
			for {
				select {
				case b := <-c.out:
					if !writeBatch(b) {
						return
					}
				default:
					return
				}
			}
		case <-c.done:
			return
		}
	}
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
