package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"otrbnc/proxy/config"

	"gopkg.in/irc.v4"
)

// Events handled by a network's owner goroutine.
type (
	evUpstreamUp struct {
		uc  *ircConn
		reg *registration
	}
	evUpstreamMsg struct {
		uc *ircConn
		m  *irc.Message
	}
	// evUpstreamMsgs are messages that arrived together.
	evUpstreamMsgs struct {
		uc *ircConn
		ms []*irc.Message
	}
	evUpstreamDown struct {
		uc    *ircConn
		err   error
		retry time.Duration
		// flood is what the server said when it closed the connection
		// for flooding; slower says the pacing was slowed down for it.
		flood  string
		slower bool
	}
	evUpstreamFailed struct {
		err   error
		retry time.Duration
	}
	evDownstreamAttach struct{ dc *downstream }
	evDownstreamMsg    struct {
		dc *downstream
		m  *irc.Message
	}
	evDownstreamMsgs struct {
		dc *downstream
		ms []*irc.Message
	}
	evDownstreamDetach struct{ dc *downstream }
	// evCall runs f in the owner goroutine (tests, introspection).
	evCall struct {
		f    func(n *network)
		done chan struct{}
	}
)

const (
	// serviceNick is the nick of the OTR control service.
	serviceNick = "*otr"
	// servicePrefix is the full prefix of the service's lines.
	servicePrefix = "*otr!otr@otrbnc"
	// maxISupportLines bounds the RPL_ISUPPORT lines kept for replay.
	maxISupportLines = 32
)

// network is one upstream network and everything attached to it. All
// fields below "owned" are touched only by the run goroutine.
type network struct {
	srv     *Server
	cfg     config.NetworkConfig
	logger  *slog.Logger
	events  chan any
	stopped chan struct{}

	// owned by run
	up          *ircConn
	burst       bool // between 001 and the end of the MOTD
	nick        string
	user, host  string
	welcome     []*irc.Message
	isupport    []*irc.Message
	chantypes   string // CHANTYPES, real sigils only (isChannel)
	statusmsg   string // STATUSMSG, real prefixes only
	casemap     casemapping
	channels    map[string]*channel // by folded name
	downstreams []*downstream
	selfWho     int
	// backlog keeps what client identities have not seen (backlog.go).
	backlog *backlogStore
	// pending are client commands whose replies may still come
	// (routing.go); labelBatches maps the network's labeled-response
	// batches to them.
	pending      []*pendingCmd
	labelBatches map[string]*pendingCmd
	labelSeq     uint64
	pendingSwept time.Time // last expirePending
	otr          *otrState
	services     []serviceCommand
	upCaps       map[string]bool          // capabilities the network acknowledged
	batches      map[string]upstreamBatch // open upstream batches by reference
	skew         time.Duration            // our clock minus the network's
	// slowdown counts the times the network's pacing was halved because it
	// closed the connection, or warned, for flooding (pacing.go); the
	// upstream loop reads it when it dials.
	slowdown atomic.Int32
	// serverVersion is the server's software as RPL_MYINFO named it, and
	// upSASL says that otrbnc logged in with SASL: both choose the pacing.
	serverVersion string
	upSASL        bool
	resp          *response // the labeled command being answered
	batchSeq      uint64
	genkey        genkeyState
	notices       noticeLimiter // peer-caused notices this minute
	mem           peerMemory    // what other nicks make us hold (peermem.go)
	// out is what handling the current event wrote to connections,
	// flushed when it is done (see ircConn.writeDirect).
	out outputBatch

	// stateDir holds the settings file; saved is what it holds.
	stateDir string
	saved    *savedState
	// ctx is cancelled when the network stops (background work posts
	// back through it).
	ctx context.Context
}

// response collects what a labeled client command produces for that
// client, so that it can be sent with the label (labeled-response).
type response struct {
	dc    *downstream
	label string
	msgs  []*irc.Message
}

type channel struct {
	name  string
	topic string
}

// eventQueue bounds the events waiting for a network's owner goroutine.
// A connection's reader hands over up to readBatchMax messages in one
// event, so at most about eventQueue × readBatchMax = 1,024 messages
// wait (a flood holds its reader, not otrbnc's memory); every sender is
// another goroutine, which blocks while the queue is full.
const eventQueue = 1024 / readBatchMax

func newNetwork(s *Server, cfg config.NetworkConfig) (*network, error) {
	n := &network{
		srv:       s,
		cfg:       cfg,
		logger:    s.logger.With("network", cfg.Name),
		events:    make(chan any, eventQueue),
		stopped:   make(chan struct{}),
		nick:      cfg.Nick,
		chantypes: "#&",
		channels:  map[string]*channel{},
		stateDir:  s.opts.StateDir,
		backlog:   newBacklogStore(cfg.BacklogLines),
		ctx:       context.Background(),
	}
	if n.stateDir == "" {
		n.stateDir = s.cfg.StateDir
	}
	saved, err := loadSettings(n.stateDir, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", cfg.Name, err)
	}
	n.saved = saved
	n.mem.limit = cfg.PeerMemoryMB << 20
	if n.mem.limit <= 0 {
		n.mem.limit = config.DefaultPeerMemoryMB << 20
	}
	for _, c := range cfg.Channels {
		n.channels[n.casemap.fold(c)] = &channel{name: c}
	}
	otr, err := newOTRState(n)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", cfg.Name, err)
	}
	n.otr = otr
	n.services = serviceCommands()
	return n, nil
}

// post hands an event to the owner goroutine; false once it is gone.
func (n *network) post(ctx context.Context, ev any) bool { return n.postUnless(ctx, ev, nil) }

// postUnless is post that also gives up when closed is closed (a
// connection's reader whose connection is closing; see deliverTo).
func (n *network) postUnless(ctx context.Context, ev any, closed <-chan struct{}) bool {
	select { // the common case, without a four-way select
	case n.events <- ev:
		return true
	default:
	}
	select {
	case n.events <- ev:
		return true
	case <-ctx.Done():
		return false
	case <-n.stopped:
		return false
	case <-closed:
		return false
	}
}

// call runs f in the owner goroutine and waits for it.
func (n *network) call(ctx context.Context, f func(n *network)) bool {
	done := make(chan struct{})
	if !n.post(ctx, evCall{f: f, done: done}) {
		return false
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	case <-n.stopped:
		return false
	}
}

func (n *network) now() time.Time { return n.srv.opts.Now() }

// run is the owner goroutine: it serialises every IRC and OTR state change
// of the network.
func (n *network) run(ctx context.Context) {
	defer close(n.stopped)
	n.ctx = ctx
	connCtx, cancelConn := context.WithCancel(context.Background())
	connDone := make(chan struct{})
	go func() {
		defer close(connDone)
		n.upstreamLoop(connCtx)
	}()
	ticker := time.NewTicker(n.srv.opts.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case ev := <-n.events:
			n.handleEvent(ev)
		case <-ticker.C:
			n.otrTick()
			n.out.flush()
		case <-ctx.Done():
			n.shutdown()
			cancelConn()
			// Drain events until the connector is gone so that it never
			// blocks on us.
			for {
				select {
				case <-connDone:
					return
				case ev := <-n.events:
					if c, ok := ev.(evCall); ok {
						close(c.done)
					}
				}
			}
		}
	}
}

// shutdown ends encrypted sessions, says goodbye and flushes everything.
func (n *network) shutdown() {
	timeout := n.srv.opts.ShutdownTimeout
	if n.up != nil {
		n.otrShutdown()
		n.up.Send(formatMessage(msg("", "QUIT", "otrbnc shutting down")))
	}
	n.otr.acct.DHKeys.Wipe()
	for _, dc := range n.downstreams {
		dc.write(msg(serverName, "ERROR", "otrbnc is shutting down"))
	}
	n.out.flush()
	done := make(chan struct{}, len(n.downstreams)+1)
	if n.up != nil {
		go func(uc *ircConn) { uc.Shutdown(timeout); done <- struct{}{} }(n.up)
	} else {
		done <- struct{}{}
	}
	for _, dc := range n.downstreams {
		go func(dc *downstream) { dc.conn.Shutdown(timeout); done <- struct{}{} }(dc)
	}
	for range len(n.downstreams) + 1 {
		<-done
	}
	n.up = nil
}

// handleEvent handles one event, then writes what it produced.
func (n *network) handleEvent(ev any) {
	switch e := ev.(type) {
	case evUpstreamUp:
		n.onUpstreamUp(e.uc, e.reg)
	case evUpstreamMsg:
		if e.uc == n.up {
			n.handleUpstream(e.m)
		}
	case evUpstreamMsgs:
		for _, m := range e.ms {
			if e.uc == n.up {
				n.handleUpstream(m)
			}
		}
	case evUpstreamDown:
		if e.uc == n.up {
			n.up = nil
			n.burst = false
			n.clearPending()
			n.selfWho = 0
			switch {
			case e.flood != "" && e.slower:
				n.tellClients(fmt.Sprintf("%s closed the connection because otrbnc sent too fast (%s); otrbnc will now send it %s; reconnecting in %s",
					n.cfg.Name, quotePeer(e.flood, 200), n.pacing().describe(), e.retry.Round(time.Second)))
			case e.flood != "":
				n.tellClients(fmt.Sprintf("%s closed the connection for flooding again (%s), although otrbnc sends it %s; reconnecting in %s",
					n.cfg.Name, quotePeer(e.flood, 200), n.pacing().describe(), e.retry.Round(time.Second)))
			default:
				n.tellClients(fmt.Sprintf("disconnected from %s (%v); reconnecting in %s", n.cfg.Name, e.err, e.retry.Round(time.Second)))
			}
		}
	case evUpstreamFailed:
		n.tellClients(fmt.Sprintf("could not connect to %s (%v); retrying in %s", n.cfg.Name, e.err, e.retry.Round(time.Second)))
	case evDownstreamAttach:
		n.attach(e.dc)
	case evDownstreamMsg:
		n.handleDownstream(e.dc, e.m)
	case evDownstreamMsgs:
		for _, m := range e.ms {
			n.handleDownstream(e.dc, m)
		}
	case evDownstreamDetach:
		n.detach(e.dc)
	case evCall:
		e.f(n)
		n.out.flush()
		close(e.done)
	}
	n.out.flush()
}

// selfPrefix is our full prefix as far as we know it.
func (n *network) selfPrefix() string {
	p := &irc.Prefix{Name: n.nick, User: n.user, Host: n.host}
	return p.String()
}

// isChannel reports whether target is a channel on this network.
func (n *network) isChannel(target string) bool {
	return isChannel(target, n.chantypes, n.statusmsg)
}

// setSelf records our nick and visible user@host as the network shows
// them; fragment sizes follow.
func (n *network) setSelf(nick, user, host string) {
	if nick == n.nick && user == n.user && host == n.host {
		return
	}
	n.nick, n.user, n.host = nick, user, host
	n.applyPolicies()
}

func (n *network) isSelf(nick string) bool {
	return n.casemap.fold(nick) == n.casemap.fold(n.nick)
}

func (n *network) hasDownstream(dc *downstream) bool {
	for _, d := range n.downstreams {
		if d == dc {
			return true
		}
	}
	return false
}

// retarget returns m addressed to dc's nick when m was addressed to ours.
func (n *network) retarget(m *irc.Message, dc *downstream) *irc.Message {
	if len(m.Params) > 0 && m.Params[0] == n.nick && dc.nick != n.nick {
		c := m.Copy()
		c.Params[0] = dc.nick
		return c
	}
	return m
}

// toClient sends messages to one client, or adds them to the labeled
// response being built for that client.
func (n *network) toClient(dc *downstream, ms ...*irc.Message) {
	if r := n.resp; r != nil && r.dc == dc {
		r.msgs = append(r.msgs, ms...)
		return
	}
	dc.write(ms...)
}

// toClients sends m to every attached client, and keeps channel and
// private messages for the client identities that are not attached
// (backlog.go). Messages we sent ourselves (from another client, or
// echoed by an upstream bouncer) go only to clients that asked for them
// (echo-message, znc.in/self-message).
func (n *network) toClients(m *irc.Message) {
	n.keep(m)
	own := (m.Command == "PRIVMSG" || m.Command == "NOTICE" || m.Command == "TAGMSG") &&
		m.Prefix != nil && m.Prefix.Name != "" && n.isSelf(m.Prefix.Name)
	for _, dc := range n.downstreams {
		if own && !wantsOwn(dc) {
			continue
		}
		n.liveToClient(dc, n.retarget(m, dc))
	}
}

// liveToClient sends dc a line as it happens, unless it must wait behind
// a channel backlog (deferLive).
func (n *network) liveToClient(dc *downstream, m *irc.Message) {
	if n.deferLive(dc, m) {
		return
	}
	n.toClient(dc, m)
}

// errNotConnected is reported when the upstream is down.
var errNotConnected = errors.New("not connected")

// errUpstreamFull is reported when the upstream send queue is full.
var errUpstreamFull = errors.New("the send queue to the network is full")

// toUpstream queues lines (formatted messages) to the network, written
// back to back.
func (n *network) toUpstream(lines ...string) error {
	if n.up == nil {
		return errNotConnected
	}
	if !n.up.Send(lines...) {
		return errUpstreamFull
	}
	return nil
}

// toPeerLane queues lines for p in p's own lane of the upstream queue,
// within p's reply budget (key coalesces, see sendQueue). Lines over the
// budget are dropped: they answer a peer the user is not talking to.
func (n *network) toPeerLane(p *otrPeer, key string, lines []string) error {
	if n.up == nil {
		return errNotConnected
	}
	if !p.replies.take(n.now()) {
		n.logger.Debug("reply budget of a peer spent; protocol reply dropped")
		return nil
	}
	if !n.up.sendPeer(p.key, key, lines) {
		return errUpstreamFull
	}
	return nil
}

// toUpstreamMsg queues one message to the network.
func (n *network) toUpstreamMsg(m *irc.Message) error { return n.toUpstream(formatMessage(m)) }
