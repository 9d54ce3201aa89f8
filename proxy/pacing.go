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
// queue overflows is disconnected for flooding ("Excess Flood"). The
// pacer models the server with two token buckets: one counts lines (a
// burst, then one line per interval: solanum, hybrid, InspIRCd, ngIRCd),
// the other the "fake lag" a server charges by size (UnrealIRCd: each line
// costs a penalty per started block of bytes, and the server parses while
// the lag is less than a few seconds ahead). A line leaves only when both
// have room for it, so that what waits unparsed at the server stays far
// below every server's limit.
//
// The pacer knows batches: the lines of one batch (the fragments of one
// OTR message, one AKE message) leave together once the buckets have room
// for all of them, so that a peer never holds half a message while the
// rest waits; a batch too large for the buckets leaves line by line, at
// the buckets' rate.

// ircLineMax is the longest line a client may send, CRLF included.
const ircLineMax = 512

// pacing is what a pacer enforces.
type pacing struct {
	// burst lines at once, then one line per interval; zero interval
	// counts no lines.
	burst    int
	interval time.Duration
	// penalty, when not zero, is the lag a line costs per started block of
	// penaltyBytes bytes (at least one block); lines leave while the lag
	// they add stays within lagMax, and lag drains at one second a second.
	penalty      time.Duration
	penaltyBytes int
	lagMax       time.Duration
}

// slowed returns p slowed down by level steps (after the network
// disconnected otrbnc for flooding): each step halves the line rate and
// the burst (not below three lines, what registering takes, unless it was
// smaller) and doubles the lag each line is counted for.
func (p pacing) slowed(level int) pacing {
	floor := min(p.burst, 3)
	for range level {
		p.interval *= 2
		p.burst = max(floor, p.burst/2)
		p.penalty *= 2
	}
	return p
}

// off reports whether p paces nothing.
func (p pacing) off() bool { return p.interval <= 0 && p.penalty <= 0 }

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
	lines bucket // unused when cfg.interval is 0
	lag   bucket // seconds of server lag; unused when cfg.penalty is 0
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
	pc := &pacer{now: now}
	pc.reset(p)
	return pc
}

// reset makes p enforce cfg, with full buckets.
func (p *pacer) reset(cfg pacing) {
	t := p.now()
	p.cfg = cfg
	p.lines = newBucket(0, 0, t)
	if cfg.interval > 0 {
		p.lines = newBucket(float64(time.Second)/float64(cfg.interval), float64(max(1, cfg.burst)), t)
	}
	p.lag = newBucket(0, 0, t)
	if cfg.penalty > 0 {
		p.lag = newBucket(1, cfg.lagMax.Seconds(), t)
	}
}

// lineWeight is what a command counts for in the line bucket: servers
// charge more for commands that make them work (ngIRCd and InspIRCd
// penalties).
func lineWeight(line string) float64 {
	if line != "" && line[0] == '@' {
		if i := strings.IndexByte(line, ' '); i >= 0 {
			line = line[i+1:]
		}
	}
	cmd, _, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "WHO", "WHOIS", "WHOWAS", "MODE", "NAMES", "TOPIC":
		return 2
	case "LIST", "STATS", "INFO", "HELP", "MOTD", "TRACE":
		return 3
	}
	return 1
}

// cost returns what lines cost: in the line bucket, and in seconds of
// server lag.
func (p *pacer) cost(lines []string) (n, lag float64) {
	for _, l := range lines {
		n += lineWeight(l)
		lag += p.lagCost(len(l))
	}
	return n, lag
}

// lagCost is the server lag a line of size bytes (CRLF excluded) costs.
func (p *pacer) lagCost(size int) float64 {
	if p.cfg.penalty <= 0 {
		return 0
	}
	blocks := 1 + size/max(1, p.cfg.penaltyBytes)
	return float64(blocks) * p.cfg.penalty.Seconds()
}

// waitLocked is how long until the buckets hold n lines and lag seconds
// (each capped to its bucket's size).
func (p *pacer) waitLocked(n, lag float64) time.Duration {
	now := p.now()
	var d time.Duration
	if p.cfg.interval > 0 {
		p.lines.fill(now)
		d = p.lines.wait(n)
	}
	if p.cfg.penalty > 0 {
		p.lag.fill(now)
		d = max(d, p.lag.wait(lag))
	}
	return d
}

func (p *pacer) takeLocked(n, lag float64) {
	p.lines.tokens -= n
	p.lag.tokens -= lag
}

// fitsLocked reports whether lines costing n and lag can leave together:
// no bucket is too small for them.
func (p *pacer) fitsLocked(n, lag float64) bool {
	return (p.cfg.interval <= 0 || n <= p.lines.burst) && (p.cfg.penalty <= 0 || lag <= p.lag.burst)
}

// allow takes the tokens for lines and reports true when the buckets have
// room for all of them now; otherwise it takes nothing.
func (p *pacer) allow(lines []string) bool {
	if p == nil {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, lag := p.cost(lines)
	if !p.fitsLocked(n, lag) || p.waitLocked(n, lag) > 0 {
		return false
	}
	p.takeLocked(n, lag)
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
	p.mu.Lock()
	defer p.mu.Unlock()
	n, lag := p.cost(lines)
	if !p.fitsLocked(n, lag) {
		lines = lines[:1]
		n, lag = p.cost(lines)
	}
	return p.waitLocked(n, lag), len(lines)
}

// take takes the tokens for lines, which may leave the buckets in debt (a
// line longer than the byte bucket, or a writer that did not wait).
func (p *pacer) take(lines []string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, lag := p.cost(lines)
	p.waitLocked(n, lag) // fills
	p.takeLocked(n, lag)
}

// reserveWait returns how long until a batch of lines could leave and
// still leave room for reserve full-length lines for the user: the gate
// of the peer lanes (see sendQueue). Nothing is taken.
func (p *pacer) reserveWait(lines []string, reserve int) time.Duration {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, lag := p.cost(lines)
	n += float64(reserve)
	lag += float64(reserve) * p.lagCost(ircLineMax-2)
	return p.waitLocked(n, lag)
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

// Pacing profiles: what each server family allows with its shipped
// defaults (docs/configuration.md, "Pacing", has the figures and their
// sources), with a margin.
var (
	// strictPacing fits every server below at once: InspIRCd's one line a
	// second, solanum's five lines parsed at once, UnrealIRCd's lag for
	// users not logged in. It applies until the server names itself.
	strictPacing = pacing{burst: 5, interval: time.Second, penalty: time.Second, penaltyBytes: 90, lagMax: 40 * time.Second}
	// solanum, charybdis, ircd-seven, hybrid: five lines parsed at once,
	// then two a second; "Excess Flood" beyond 20 queued lines (hybrid:
	// 2,560 queued bytes).
	solanumPacing = pacing{burst: 5, interval: 500 * time.Millisecond}
	// InspIRCd: ten lines at once (penalty threshold), then one a second.
	inspircdPacing = pacing{burst: 8, interval: time.Second}
	// ngIRCd: three lines parsed at once, then about three a second (two
	// for 500-byte lines); it stops reading rather than disconnecting.
	ngircdPacing = pacing{burst: 5, interval: 500 * time.Millisecond}
	// UnrealIRCd 6: each line costs a second of lag per started 90 bytes
	// (750 ms per 180 bytes once logged in), parsed while the lag is less
	// than 10 s ahead, "Excess Flood" beyond 8,000 queued bytes.
	unrealPacing      = pacing{burst: 8, interval: time.Second, penalty: time.Second, penaltyBytes: 90, lagMax: 40 * time.Second}
	unrealKnownPacing = pacing{burst: 8, interval: 750 * time.Millisecond, penalty: 750 * time.Millisecond, penaltyBytes: 180, lagMax: 40 * time.Second}
)

// serverPacing returns the profile for a server whose RPL_MYINFO names
// version ("" before it has), and the name of its family.
func serverPacing(version string, sasl bool) (pacing, string) {
	v := strings.ToLower(version)
	switch {
	case strings.HasPrefix(v, "solanum"), strings.HasPrefix(v, "charybdis"), strings.HasPrefix(v, "ircd-seven"),
		strings.Contains(v, "hybrid"), strings.Contains(v, "ratbox"):
		return solanumPacing, "solanum/hybrid"
	case strings.HasPrefix(v, "inspircd"):
		return inspircdPacing, "InspIRCd"
	case strings.HasPrefix(v, "ngircd"):
		return ngircdPacing, "ngIRCd"
	case strings.HasPrefix(v, "unrealircd") && sasl:
		return unrealKnownPacing, "UnrealIRCd"
	case strings.HasPrefix(v, "unrealircd"):
		return unrealPacing, "UnrealIRCd"
	}
	return strictPacing, "any server"
}

// pacingFor returns the pacing for cfg on a server that names itself
// version, logged in with SASL or not, slowed down level times: the
// server's profile (or the strict one), whose line bucket rate_burst and
// rate_interval replace when set; nothing with pacing = "off".
func pacingFor(cfg *config.NetworkConfig, version string, sasl bool, level int) pacing {
	var p pacing
	switch cfg.Pacing {
	case config.PacingOff:
		return pacing{}
	case config.PacingStrict:
		p = strictPacing
	default:
		p, _ = serverPacing(version, sasl)
	}
	if cfg.RateBurst > 0 {
		p.burst = cfg.RateBurst
	}
	if cfg.RateInterval.Duration > 0 {
		p.interval = cfg.RateInterval.Duration
	}
	return p.slowed(level)
}

// pacing returns the network's pacing now (see pacingFor).
func (n *network) pacing() pacing {
	return pacingFor(&n.cfg, n.serverVersion, n.upSASL, int(n.slowdown.Load()))
}

// onServerVersion sets the pacing for the server's software, named by
// RPL_MYINFO, with full buckets: servers forget a client's penalty when
// it registers.
func (n *network) onServerVersion(version string) {
	n.serverVersion = version
	if n.up == nil {
		return
	}
	p := n.pacing()
	n.up.opts.pacer.set(p, true)
	_, family := serverPacing(version, n.upSASL)
	n.logger.Info("pacing", "server", version, "profile", family, "pacing", p.describe())
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
		return "without pacing"
	}
	s := fmt.Sprintf("%d lines at once, then one every %s", p.burst, p.interval)
	if p.penalty > 0 {
		s += fmt.Sprintf(", counting %s of server lag per %d bytes (%s at most)", p.penalty, p.penaltyBytes, p.lagMax)
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
		n.up.opts.pacer.set(p, false)
	}
	n.logger.Warn("the network warned about flooding; pacing slowed down", "text", text, "pacing", p.describe())
	n.tellClients(fmt.Sprintf("%s warned that otrbnc sends too fast (%s); otrbnc now sends it %s",
		n.cfg.Name, quotePeer(text, 200), p.describe()))
}

// set changes what the pacer enforces. With full, the buckets are
// full; otherwise they keep what they hold, up to their new sizes.
func (p *pacer) set(cfg pacing, full bool) {
	if p == nil || cfg.off() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.lines.fill(now)
	p.lag.fill(now)
	lines, lag := p.lines.tokens, p.lag.tokens
	hadLines, hadLag := p.cfg.interval > 0, p.cfg.penalty > 0
	p.reset(cfg)
	if full {
		return
	}
	if hadLines {
		p.lines.tokens = min(p.lines.burst, lines)
	}
	if hadLag {
		p.lag.tokens = min(p.lag.burst, lag)
	}
}

// pacingStatus says, for status, how lines to the network are paced and
// how many batches wait for it.
func (n *network) pacingStatus() string {
	p := n.pacing()
	var s string
	switch _, family := serverPacing(n.serverVersion, n.upSASL); {
	case p.off():
		s = "lines to the network are not paced (pacing = off)"
	case n.cfg.Pacing == config.PacingStrict || family == "any server":
		s = "lines to the network are paced for any server: " + p.describe()
	default:
		s = fmt.Sprintf("lines to the network are paced for %s: %s", family, p.describe())
	}
	if n.cfg.RateBurst > 0 || n.cfg.RateInterval.Duration > 0 {
		s += " (rate_burst/rate_interval from the configuration)"
	}
	if l := n.slowdown.Load(); l > 0 {
		s += fmt.Sprintf("; slowed down %d time(s) because the network complained of flooding", l)
	}
	if n.up != nil {
		if user, peer, _ := n.up.q.stats(); user+peer > 0 {
			s += fmt.Sprintf("; %d message(s) waiting to be sent", user+peer)
		}
	}
	return s
}
