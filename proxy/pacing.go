package proxy

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"otrbnc/proxy/config"
)

// Pacing of the lines sent to a network (docs/configuration.md,
// "Pacing"). An IRC server parses a client's lines at a bounded rate and
// keeps what it has not parsed yet in a receive queue; a client whose
// queue overflows, or whose penalty grows too large, is disconnected for
// flooding. The pacer models that queue with two token buckets, one
// counting lines and one counting bytes: a line leaves only when both
// have room for it, so what waits unparsed at the server never exceeds
// the buckets' sizes.
//
// The pacer knows batches: the lines of one batch (the fragments of one
// OTR message) leave together once the buckets have room for all of them,
// so that a peer never holds half a message while the rest waits; a batch
// too large for the buckets leaves line by line, at the buckets' rate.

// ircLineMax is the longest line a client may send, CRLF included.
const ircLineMax = 512

// pacing is what a pacer enforces.
type pacing struct {
	// burst lines at once, then one line per interval.
	burst    int
	interval time.Duration
	// burstBytes bytes at once (CRLF included), then bytesPerSec; zero
	// burstBytes counts no bytes.
	burstBytes  int
	bytesPerSec int
}

// slowed returns p slowed down by level steps (after the network
// disconnected otrbnc for flooding): each step halves the rates and the
// bursts, down to one line and one line's worth of bytes.
func (p pacing) slowed(level int) pacing {
	for range level {
		p.interval *= 2
		p.burst = max(1, p.burst/2)
		if p.burstBytes > 0 {
			p.burstBytes = max(ircLineMax, p.burstBytes/2)
			p.bytesPerSec = max(1, p.bytesPerSec/2)
		}
	}
	return p
}

// off reports whether p paces nothing.
func (p pacing) off() bool { return p.interval <= 0 && p.burstBytes <= 0 }

// bucket is a token bucket: it holds at most burst tokens and gains
// perSec tokens a second.
type bucket struct {
	perSec, burst float64
	tokens        float64
	last          time.Time
}

func newBucket(perSec, burst float64, now time.Time) bucket {
	return bucket{perSec: perSec, burst: burst, tokens: burst, last: now}
}

// fill adds what the time since the last fill earned.
func (b *bucket) fill(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSec)
		b.last = now
	}
}

// wait returns how long until the bucket holds n tokens (n at most burst).
func (b *bucket) wait(n float64) time.Duration {
	n = min(n, b.burst)
	if b.tokens >= n {
		return 0
	}
	if b.perSec <= 0 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(math.Ceil((n - b.tokens) / b.perSec * float64(time.Second)))
}

// pacer paces one connection's lines (see above). It is safe for
// concurrent use: the owner goroutine writes directly, the writer
// goroutine writes what waited.
type pacer struct {
	mu    sync.Mutex
	now   func() time.Time
	lines bucket
	bytes bucket // unused when cfg.burstBytes is 0
	cfg   pacing
}

// newPacer returns a pacer for p with full buckets, or nil when p paces
// nothing.
func newPacer(p pacing, now func() time.Time) *pacer {
	if p.off() {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	t := now()
	pc := &pacer{now: now, cfg: p}
	if p.interval > 0 {
		pc.lines = newBucket(float64(time.Second)/float64(p.interval), float64(max(1, p.burst)), t)
	} else {
		pc.lines = newBucket(math.Inf(1), math.Inf(1), t)
	}
	if p.burstBytes > 0 {
		pc.bytes = newBucket(float64(p.bytesPerSec), float64(p.burstBytes), t)
	}
	return pc
}

// cost returns what lines cost in each bucket.
func cost(lines []string) (n, size float64) {
	for _, l := range lines {
		size += float64(len(l) + 2)
	}
	return float64(len(lines)), size
}

// waitLocked is how long until the buckets hold n lines and size bytes
// (each capped to its bucket's size).
func (p *pacer) waitLocked(n, size float64) time.Duration {
	now := p.now()
	p.lines.fill(now)
	d := p.lines.wait(n)
	if p.cfg.burstBytes > 0 {
		p.bytes.fill(now)
		d = max(d, p.bytes.wait(size))
	}
	return d
}

func (p *pacer) takeLocked(n, size float64) {
	p.lines.tokens -= n
	if p.cfg.burstBytes > 0 {
		p.bytes.tokens -= size
	}
}

// fits reports whether lines can leave together: no bucket is too small
// for them.
func (p *pacer) fitsLocked(n, size float64) bool {
	return n <= p.lines.burst && (p.cfg.burstBytes == 0 || size <= p.bytes.burst)
}

// allow takes the tokens for lines and reports true when the buckets have
// room for all of them now; otherwise it takes nothing.
func (p *pacer) allow(lines []string) bool {
	if p == nil {
		return true
	}
	n, size := cost(lines)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.fitsLocked(n, size) || p.waitLocked(n, size) > 0 {
		return false
	}
	p.takeLocked(n, size)
	return true
}

// next returns how long the writer must wait before lines may start to
// leave, and how many of them may then leave together: all of them once
// the buckets hold them, or, for a batch larger than the buckets, one.
// It takes nothing (see take).
func (p *pacer) next(lines []string) (wait time.Duration, count int) {
	if p == nil {
		return 0, len(lines)
	}
	n, size := cost(lines)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.fitsLocked(n, size) {
		lines = lines[:1]
		n, size = cost(lines)
	}
	return p.waitLocked(n, size), len(lines)
}

// take takes the tokens for lines, which may leave the buckets in debt (a
// line longer than the byte bucket, or a writer that did not wait).
func (p *pacer) take(lines []string) {
	if p == nil {
		return
	}
	n, size := cost(lines)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waitLocked(n, size) // fills
	p.takeLocked(n, size)
}

// reserveWait returns how long until a batch of lines could leave and
// still leave reserve lines (and as many full-length lines' bytes) for
// the user: the gate of the peer lanes (see sendQueue). Nothing is
// taken.
func (p *pacer) reserveWait(lines []string, reserve int) time.Duration {
	if p == nil {
		return 0
	}
	n, size := cost(lines)
	n += float64(reserve)
	size += float64(reserve * ircLineMax)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitLocked(n, size)
}

// settings returns what the pacer enforces.
func (p *pacer) settings() pacing {
	if p == nil {
		return pacing{}
	}
	return p.cfg
}

// Slowing down. A server that closes the connection because otrbnc sent
// too fast ("Excess Flood"), or warns that it will, has limits stricter
// than the configured pacing: otrbnc halves its pacing for that network
// (maxSlowdown times at most, until otrbnc restarts), tells the user once
// per step, and reconnects without resetting its reconnect delay, so
// that a server that keeps closing the connection gets ever slower
// reconnects rather than a loop.

// maxSlowdown bounds how many times a network's pacing is halved.
const maxSlowdown = 3

// isFloodText reports whether text, from an ERROR or a server's notice,
// says that the client sent too fast. "SendQ" is the server's queue
// towards the client: a slow reader, not a flood.
func isFloodText(text string) bool {
	t := strings.ToLower(text)
	if strings.Contains(t, "sendq") {
		return false
	}
	for _, s := range floodWords {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}

// floodWords are what servers say when they close a connection or warn
// for flooding (docs/configuration.md, "Pacing").
var floodWords = [...]string{"flood", "recvq", "receive buffer", "too many lines", "sending too fast"}

// networkPacing returns the pacing configured for cfg.
func networkPacing(cfg *config.NetworkConfig) pacing {
	return pacing{
		burst:       cfg.RateBurst,
		interval:    cfg.RateInterval.Duration,
		burstBytes:  cfg.RateBurstBytes,
		bytesPerSec: cfg.RateBytesPerSecond,
	}
}

// pacing returns the network's pacing now, slowed down as often as the
// network asked for it.
func (n *network) pacing() pacing {
	return networkPacing(&n.cfg).slowed(int(n.slowdown.Load()))
}

// slowDown slows the network's pacing by one step, unless it is as slow as
// it gets; it reports whether it did.
func (n *network) slowDown() bool {
	for {
		l := n.slowdown.Load()
		if l >= maxSlowdown {
			return false
		}
		if n.slowdown.CompareAndSwap(l, l+1) {
			return true
		}
	}
}

// describe says what p allows, for the user.
func (p pacing) describe() string {
	if p.off() {
		return "no pacing"
	}
	s := fmt.Sprintf("%d lines at once, then one every %s", p.burst, p.interval)
	if p.burstBytes > 0 {
		s += fmt.Sprintf(", and at most %d bytes at once, then %d bytes a second", p.burstBytes, p.bytesPerSec)
	}
	return s
}

// onFloodWarning handles a server's notice that says otrbnc sends too
// fast: the connection's pacing slows down at once.
func (n *network) onFloodWarning(text string) {
	if !n.slowDown() {
		return
	}
	p := n.pacing()
	if n.up != nil {
		n.up.opts.pacer.set(p)
	}
	n.logger.Warn("the network warned about flooding; pacing slowed down", "text", text, "pacing", p.describe())
	n.tellClients(fmt.Sprintf("%s warned that otrbnc sends too fast (%s); otrbnc now sends it %s",
		n.cfg.Name, quotePeer(text, 200), p.describe()))
}

// set changes what the pacer enforces; the buckets keep what they hold, up
// to their new sizes.
func (p *pacer) set(cfg pacing) {
	if p == nil || cfg.off() {
		return
	}
	np := newPacer(cfg, p.now)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.lines.fill(now)
	np.lines.tokens = min(np.lines.burst, p.lines.tokens)
	if p.cfg.burstBytes > 0 && cfg.burstBytes > 0 {
		p.bytes.fill(now)
		np.bytes.tokens = min(np.bytes.burst, p.bytes.tokens)
	}
	p.lines, p.bytes, p.cfg = np.lines, np.bytes, np.cfg
}
