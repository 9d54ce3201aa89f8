package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

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
	evUpstreamDown struct {
		uc    *ircConn
		err   error
		retry time.Duration
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
	// maxBacklog is how many service notices are kept for the next
	// client while none is attached (memory only).
	maxBacklog = 100
	// maxDetached is how many private messages are kept (in memory only)
	// while no client is attached.
	maxDetached = 500
	// maxISupportLines bounds the RPL_ISUPPORT lines kept for replay.
	maxISupportLines = 32
)

// network is one upstream network and everything attached to it. All
// fields below "owned" are touched only by the run goroutine.
type network struct {
	srv     *Server
	cfg     NetworkConfig
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
	chantypes   string
	casemap     casemapping
	channels    map[string]*channel // by folded name
	downstreams []*downstream
	names       []namesRequest
	selfWho     int
	backlog     []string
	detached    []*irc.Message // private messages while no client is attached
	lostPrivate int            // ... and how many did not fit
	otr         *otrState
	services    []serviceCommand
}

type channel struct {
	name  string
	topic string
}

// namesRequest routes a NAMES reply to the client that caused it.
type namesRequest struct {
	channel string // folded
	dc      *downstream
}

func newNetwork(s *Server, cfg NetworkConfig) (*network, error) {
	n := &network{
		srv:       s,
		cfg:       cfg,
		logger:    s.logger.With("network", cfg.Name),
		events:    make(chan any, 1024),
		stopped:   make(chan struct{}),
		nick:      cfg.Nick,
		chantypes: "#&",
		channels:  map[string]*channel{},
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
func (n *network) post(ctx context.Context, ev any) bool {
	select {
	case n.events <- ev:
		return true
	case <-ctx.Done():
		return false
	case <-n.stopped:
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
	connCtx, cancelConn := context.WithCancel(context.Background())
	connDone := make(chan struct{})
	go func() {
		defer close(connDone)
		n.connectLoop(connCtx)
	}()
	ticker := time.NewTicker(n.srv.opts.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case ev := <-n.events:
			n.handleEvent(ev)
		case <-ticker.C:
			n.otrTick()
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
	for _, dc := range n.downstreams {
		dc.send(msg(serverName, "ERROR", "otrbnc is shutting down"))
	}
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

// connectLoop keeps the upstream connection up, reconnecting with
// exponential backoff and jitter. It never touches owned state.
func (n *network) connectLoop(ctx context.Context) {
	bo := newBackoff(n.cfg.ReconnectMin.Duration, n.cfg.ReconnectMax.Duration)
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		start := time.Now()
		uc, err := dialUpstream(ctx, &n.cfg, n.logger)
		var reg *registration
		if err == nil {
			reg, err = registerUpstream(ctx, uc, &n.cfg)
			if err != nil {
				uc.Close()
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := bo.next()
			n.logger.Warn("upstream connection failed", "err", err, "retry_in", d)
			n.post(ctx, evUpstreamFailed{err: err, retry: d})
			if !sleep(d) {
				return
			}
			continue
		}
		n.logger.Info("upstream registered", "nick", reg.nick)
		if !n.post(ctx, evUpstreamUp{uc: uc, reg: reg}) {
			uc.Close()
			return
		}
		for m := range uc.In() {
			if !n.post(ctx, evUpstreamMsg{uc: uc, m: m}) {
				// Shutting down: the owner flushes and closes uc.
				<-uc.Done()
				return
			}
		}
		uc.Close()
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			bo.reset()
		}
		d := bo.next()
		n.logger.Warn("upstream disconnected", "err", uc.Err(), "retry_in", d)
		if !n.post(ctx, evUpstreamDown{uc: uc, err: uc.Err(), retry: d}) {
			return
		}
		if !sleep(d) {
			return
		}
	}
}

func (n *network) handleEvent(ev any) {
	switch e := ev.(type) {
	case evUpstreamUp:
		n.onUpstreamUp(e.uc, e.reg)
	case evUpstreamMsg:
		if e.uc == n.up {
			n.handleUpstream(e.m)
		}
	case evUpstreamDown:
		if e.uc == n.up {
			n.up = nil
			n.burst = false
			n.names = nil
			n.selfWho = 0
			n.notifyAll(fmt.Sprintf("disconnected from %s (%v); reconnecting in %s", n.cfg.Name, e.err, e.retry.Round(time.Second)))
		}
	case evUpstreamFailed:
		n.notifyAll(fmt.Sprintf("could not connect to %s (%v); retrying in %s", n.cfg.Name, e.err, e.retry.Round(time.Second)))
	case evDownstreamAttach:
		n.attach(e.dc)
	case evDownstreamMsg:
		n.handleDownstream(e.dc, e.m)
	case evDownstreamDetach:
		n.detach(e.dc)
	case evCall:
		e.f(n)
		close(e.done)
	}
}

// selfPrefix is our full prefix as far as we know it.
func (n *network) selfPrefix() string {
	p := &irc.Prefix{Name: n.nick, User: n.user, Host: n.host}
	return p.String()
}

func (n *network) isSelf(nick string) bool {
	return n.casemap.fold(nick) == n.casemap.fold(n.nick)
}

func (n *network) onUpstreamUp(uc *ircConn, reg *registration) {
	n.up = uc
	n.burst = true
	old := n.nick
	n.nick = reg.nick
	n.user, n.host = reg.user, reg.host
	n.welcome = reg.welcome
	n.isupport = nil
	n.names = nil
	var joins []string
	for _, ch := range n.channels {
		joins = append(joins, ch.name)
	}
	for _, line := range joinLines(joins) {
		uc.Send(line)
	}
	n.selfWho++
	uc.Send(formatMessage(msg("", "WHO", n.nick)))
	for _, dc := range n.downstreams {
		if dc.nick != n.nick {
			dc.send(msg(dc.nick, "NICK", n.nick))
			dc.nick = n.nick
		}
	}
	if old != n.nick {
		n.logger.Info("nick changed at registration", "nick", n.nick)
	}
	n.notifyAll(fmt.Sprintf("connected to %s as %s", n.cfg.Name, n.nick))
	n.otrReconnected()
}

// joinLines packs channel names into JOIN lines of at most 510 bytes.
func joinLines(chans []string) []string {
	var out []string
	cur := ""
	for _, c := range chans {
		if cur != "" && len("JOIN ")+len(cur)+1+len(c) > 500 {
			out = append(out, "JOIN "+cur)
			cur = ""
		}
		if cur != "" {
			cur += ","
		}
		cur += c
	}
	if cur != "" {
		out = append(out, "JOIN "+cur)
	}
	return out
}

func (n *network) handleUpstream(m *irc.Message) {
	m.Tags = irc.Tags{}
	switch m.Command {
	case "PING":
		n.up.sendPriority(formatMessage(msg("", "PONG", m.Params...)))
		return
	case "ERROR":
		// The connection is ending; clients hear it from *otr instead, so
		// that they do not take it for the end of their own connection.
		n.logger.Info("upstream sent ERROR", "text", m.Trailing())
		return
	case "PONG", "CAP", "AUTHENTICATE", "CHGHOST":
		if m.Command == "CHGHOST" && n.isSelf(m.Prefix.Name) && len(m.Params) >= 2 {
			n.user, n.host = m.Params[0], m.Params[1]
		}
		return
	case "001":
		return
	case "002", "003", "004":
		if n.burst {
			if len(n.welcome) < 8 {
				n.welcome = append(n.welcome, m)
			}
			return
		}
	case "005":
		if len(n.isupport) < maxISupportLines {
			n.isupport = append(n.isupport, m)
		}
		n.parseISupport(m)
	case "375", "372":
		if n.burst {
			return
		}
	case "376", "422":
		if n.burst {
			n.burst = false
			return
		}
	case "396": // RPL_VISIBLEHOST
		if h := m.Param(1); h != "" {
			if u, hh, ok := strings.Cut(h, "@"); ok {
				n.user, n.host = u, hh
			} else {
				n.host = h
			}
		}
	case "352": // RPL_WHOREPLY: me channel user host server nick ...
		if n.selfWho > 0 && n.isSelf(m.Param(5)) {
			n.user, n.host = m.Param(2), m.Param(3)
			return
		}
	case "315":
		if n.selfWho > 0 && n.isSelf(m.Param(1)) {
			n.selfWho--
			return
		}
	case "NICK":
		if n.isSelf(m.Prefix.Name) {
			n.nick = m.Param(0)
			for _, dc := range n.downstreams {
				dc.send(m)
				dc.nick = n.nick
			}
			return
		}
	case "JOIN":
		if n.isSelf(m.Prefix.Name) {
			if m.Prefix.User != "" && m.Prefix.Host != "" {
				n.user, n.host = m.Prefix.User, m.Prefix.Host
			}
			name := m.Param(0)
			key := n.casemap.fold(name)
			if n.channels[key] == nil {
				n.channels[key] = &channel{name: name}
			}
		}
	case "PART":
		if n.isSelf(m.Prefix.Name) {
			delete(n.channels, n.casemap.fold(m.Param(0)))
		}
	case "KICK":
		if n.isSelf(m.Param(1)) {
			delete(n.channels, n.casemap.fold(m.Param(0)))
		}
	case "332":
		if ch := n.channels[n.casemap.fold(m.Param(1))]; ch != nil {
			ch.topic = m.Trailing()
		}
	case "TOPIC":
		if ch := n.channels[n.casemap.fold(m.Param(0))]; ch != nil {
			ch.topic = m.Param(1)
		}
	case "353", "366":
		name := m.Param(1)
		if m.Command == "353" {
			name = m.Param(2)
		}
		key := n.casemap.fold(name)
		for i, r := range n.names {
			if r.channel == key {
				if n.hasDownstream(r.dc) {
					r.dc.send(n.retarget(m, r.dc))
				}
				if m.Command == "366" {
					n.names = append(n.names[:i], n.names[i+1:]...)
				}
				return
			}
		}
	case "PRIVMSG", "NOTICE":
		n.handleUpstreamText(m)
		return
	}
	n.broadcast(m)
}

func (n *network) parseISupport(m *irc.Message) {
	if len(m.Params) < 2 {
		return
	}
	for _, tok := range m.Params[1 : len(m.Params)-1] {
		k, v, _ := strings.Cut(tok, "=")
		switch strings.ToUpper(k) {
		case "CHANTYPES":
			n.chantypes = v
		case "CASEMAPPING":
			cm := parseCasemapping(v)
			if cm != n.casemap {
				n.casemap = cm
				refold := map[string]*channel{}
				for _, ch := range n.channels {
					refold[cm.fold(ch.name)] = ch
				}
				n.channels = refold
				n.otr.refold(cm)
			}
		}
	}
}

// handleUpstreamText routes PRIVMSG and NOTICE from the network.
func (n *network) handleUpstreamText(m *irc.Message) {
	if len(m.Params) < 2 {
		n.broadcast(m)
		return
	}
	src := m.Prefix.Name
	target, text := m.Params[0], m.Params[1]
	switch {
	case n.casemap.fold(src) == serviceNick:
		return // nobody may speak as our service
	case src == "" || (m.Prefix.User == "" && m.Prefix.Host == "" && strings.Contains(src, ".")):
		n.broadcast(m) // from a server
		return
	case n.isSelf(src):
		// An echo of our own message (echo-message, or a bouncer upstream):
		// our ciphertext must reach neither clients nor the engine.
		if strings.Contains(text, "?OTR") {
			return
		}
		n.broadcast(m)
		return
	case isChannel(target, n.chantypes) || !n.isSelf(target):
		n.broadcast(m)
		return
	case m.Command == "NOTICE":
		n.broadcast(m) // notices are not OTR traffic; they pass in clear
		return
	}
	if cmd, _, ok := parseCTCP(text); ok {
		if cmd == "ACTION" {
			n.otrReceiveClearAction(m)
		} else {
			n.broadcast(m)
		}
		return
	}
	n.otrReceive(m.Prefix, text)
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

// broadcast sends m to every attached client. With none attached,
// private messages are kept in memory for the next client.
func (n *network) broadcast(m *irc.Message) {
	if len(n.downstreams) == 0 {
		if (m.Command == "PRIVMSG" || m.Command == "NOTICE") && n.isSelf(m.Param(0)) {
			if len(n.detached) >= maxDetached {
				n.detached = n.detached[1:]
				n.lostPrivate++
			}
			n.detached = append(n.detached, m)
		}
		return
	}
	for _, dc := range n.downstreams {
		dc.send(n.retarget(m, dc))
	}
}

// notify sends a service line to one client.
func (n *network) notify(dc *downstream, text string) {
	for _, line := range splitText(text, 400) {
		dc.send(msg(servicePrefix, "PRIVMSG", dc.nick, line))
	}
}

// notifyAll sends a service line to every client, or keeps it for the
// next one when none is attached.
func (n *network) notifyAll(text string) {
	if len(n.downstreams) == 0 {
		n.backlog = append(n.backlog, text)
		if len(n.backlog) > maxBacklog {
			n.backlog = n.backlog[len(n.backlog)-maxBacklog:]
		}
		return
	}
	for _, dc := range n.downstreams {
		n.notify(dc, text)
	}
}

// notifyPeer prefixes a service line with the peer it is about.
func (n *network) notifyPeer(peer, text string) { n.notifyAll("[" + peer + "] " + text) }

// attach welcomes a newly registered client.
func (n *network) attach(dc *downstream) {
	n.downstreams = append(n.downstreams, dc)
	// Like other bouncers, the welcome carries the network's nick, which
	// clients adopt whatever they registered with.
	dc.nick = n.nick
	if n.up != nil && len(n.welcome) > 0 {
		for _, m := range n.welcome {
			c := m.Copy()
			if len(c.Params) > 0 {
				c.Params[0] = dc.nick
			}
			dc.send(c)
		}
		for _, m := range n.isupport {
			c := m.Copy()
			c.Params[0] = dc.nick
			dc.send(c)
		}
	} else {
		dc.send(
			msg(serverName, "001", dc.nick, "Welcome to otrbnc; "+n.cfg.Name+" is not connected yet"),
			msg(serverName, "002", dc.nick, "Your host is otrbnc"),
			msg(serverName, "003", dc.nick, "This server was created by otrbnc"),
			msg(serverName, "004", dc.nick, serverName, "otrbnc", "i", "o"),
		)
	}
	dc.send(msg(serverName, "422", dc.nick, "MOTD omitted by otrbnc"))
	if n.up != nil {
		for key, ch := range n.channels {
			dc.send(msg(n.selfPrefix(), "JOIN", ch.name))
			if ch.topic != "" {
				dc.send(msg(serverName, "332", dc.nick, ch.name, ch.topic))
			}
			n.names = append(n.names, namesRequest{channel: key, dc: dc})
			n.up.Send(formatMessage(msg("", "NAMES", ch.name)))
		}
	} else {
		n.notify(dc, fmt.Sprintf("%s is not connected yet; otrbnc keeps trying", n.cfg.Name))
	}
	for _, line := range n.backlog {
		n.notify(dc, line)
	}
	n.backlog = nil
	if len(n.detached) > 0 {
		note := fmt.Sprintf("%d private message(s) arrived while no client was attached:", len(n.detached))
		if n.lostPrivate > 0 {
			note += fmt.Sprintf(" (%d older ones did not fit in memory and are lost)", n.lostPrivate)
		}
		n.notify(dc, note)
		for _, m := range n.detached {
			dc.send(n.retarget(m, dc))
		}
		n.detached, n.lostPrivate = nil, 0
	}
	n.otrAttach(dc)
}

func (n *network) detach(dc *downstream) {
	for i, d := range n.downstreams {
		if d == dc {
			n.downstreams = append(n.downstreams[:i], n.downstreams[i+1:]...)
			break
		}
	}
	kept := n.names[:0]
	for _, r := range n.names {
		if r.dc != dc {
			kept = append(kept, r)
		}
	}
	n.names = kept
}

func (n *network) handleDownstream(dc *downstream, m *irc.Message) {
	m.Tags = irc.Tags{}
	m.Prefix = &irc.Prefix{}
	switch m.Command {
	case "PING":
		dc.send(msg(serverName, "PONG", serverName, m.Param(0)))
	case "PONG":
	case "QUIT":
		dc.conn.Close()
	case "PASS", "USER", "AUTHENTICATE":
		dc.send(msg(serverName, "462", dc.nick, "You may not reregister"))
	case "CAP":
		n.handleClientCap(dc, m)
	case "PRIVMSG", "NOTICE":
		n.handleClientText(dc, m)
	default:
		if n.up == nil {
			n.notify(dc, fmt.Sprintf("%s is not connected; %s not sent", n.cfg.Name, m.Command))
			return
		}
		if !n.up.SendMessage(m) {
			n.notify(dc, fmt.Sprintf("the send queue to %s is full; %s not sent", n.cfg.Name, m.Command))
		}
	}
}

func (n *network) handleClientCap(dc *downstream, m *irc.Message) {
	switch strings.ToUpper(m.Param(0)) {
	case "LS":
		dc.send(msg(serverName, "CAP", dc.nick, "LS", capList()))
	case "LIST":
		var on []string
		for c, v := range dc.caps {
			if v {
				on = append(on, c)
			}
		}
		dc.send(msg(serverName, "CAP", dc.nick, "LIST", strings.Join(on, " ")))
	case "REQ":
		req := strings.Fields(m.Param(1))
		for _, c := range req {
			if strings.TrimPrefix(c, "-") != "echo-message" {
				dc.send(msg(serverName, "CAP", dc.nick, "NAK", m.Param(1)))
				return
			}
		}
		for _, c := range req {
			dc.caps[strings.TrimPrefix(c, "-")] = !strings.HasPrefix(c, "-")
		}
		dc.send(msg(serverName, "CAP", dc.nick, "ACK", m.Param(1)))
	}
}

// handleClientText routes a client's PRIVMSG or NOTICE: to the service,
// in clear to channels, NOTICE and non-ACTION CTCP, and through OTR for
// private messages.
func (n *network) handleClientText(dc *downstream, m *irc.Message) {
	if len(m.Params) < 2 || m.Params[1] == "" {
		if len(m.Params) == 0 {
			dc.send(msg(serverName, "411", dc.nick, "No recipient given ("+m.Command+")"))
		} else {
			dc.send(msg(serverName, "412", dc.nick, "No text to send"))
		}
		return
	}
	text := m.Params[1]
	for _, target := range strings.Split(m.Params[0], ",") {
		if target == "" {
			continue
		}
		if n.casemap.fold(target) == serviceNick {
			if m.Command == "PRIVMSG" {
				n.runService(dc, text)
			}
			continue
		}
		if n.up == nil {
			n.notify(dc, fmt.Sprintf("%s is not connected; your message to %s was NOT sent", n.cfg.Name, target))
			continue
		}
		cmd, _, isCTCP := parseCTCP(text)
		if isChannel(target, n.chantypes) || m.Command == "NOTICE" || (isCTCP && cmd != "ACTION") {
			if !n.up.SendMessage(msg("", m.Command, target, text)) {
				n.notify(dc, fmt.Sprintf("the send queue to %s is full; your message to %s was NOT sent", n.cfg.Name, target))
				continue
			}
			n.echo(dc, m.Command, target, text)
			continue
		}
		n.otrSend(dc, target, text)
	}
}

// echo mirrors what dc sent, as plaintext, to the other clients and to dc
// itself when it negotiated echo-message.
func (n *network) echo(from *downstream, cmd, target, text string) {
	for _, dc := range n.downstreams {
		if dc != from || from.hasCap("echo-message") {
			dc.send(msg(n.selfPrefix(), cmd, target, text))
		}
	}
}

// deliver sends text from a peer to every client (or keeps it for the
// next one), split to fit client lines; action wraps each piece as CTCP
// ACTION.
func (n *network) deliver(from *irc.Prefix, text string, action bool) {
	prefix := from.String()
	// ":" prefix " PRIVMSG " nick " :" text CRLF, plus CTCP wrapping. The
	// nick budget is the longest nick the network allows us.
	room := 512 - (1 + len(prefix) + len(" PRIVMSG ") + max(len(n.nick), 30) + len(" :") + 2)
	if action {
		room -= len("\x01ACTION \x01")
	}
	for _, piece := range splitText(text, room) {
		if action {
			piece = ctcpAction(piece)
		}
		n.broadcast(msg(prefix, "PRIVMSG", n.nick, piece))
	}
}

// errNotConnected is reported when the upstream is down.
var errNotConnected = errors.New("not connected")

// sendUpstreamBatch sends the lines of one message back to back.
func (n *network) sendUpstreamBatch(lines []string) error {
	if n.up == nil {
		return errNotConnected
	}
	if !n.up.Send(lines...) {
		return errors.New("upstream send queue full")
	}
	return nil
}
