package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
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
	backlog     []backlogEntry // *otr events while no client is attached
	lostEvents  int            // ... and how many did not fit
	detached    []*irc.Message // private messages while no client is attached
	lostPrivate int            // ... and how many did not fit
	otr         *otrState
	services    []serviceCommand
	upCaps      map[string]bool          // capabilities the network acknowledged
	batches     map[string]upstreamBatch // open upstream batches by reference
	skew        time.Duration            // our clock minus the network's
	resp        *response                // the labeled command being answered
	batchSeq    uint64
	genkey      genkeyState

	// stateDir holds the settings file; saved is what it holds.
	stateDir string
	saved    *savedState
	// ctx is cancelled when the network stops (background work posts
	// back through it).
	ctx context.Context
}

// backlogEntry is a *otr event kept for the next client.
type backlogEntry struct {
	at   time.Time
	text string
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
		stateDir:  s.opts.StateDir,
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
	n.ctx = ctx
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
	n.upCaps = reg.caps
	n.batches = nil
	if len(reg.welcome) > 0 {
		n.noteServerTime(reg.welcome[0].Tags)
		for _, m := range reg.welcome {
			m.Tags = upstreamTags(m.Tags)
		}
	}
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
			n.sendTo(dc, msg(dc.nick, "NICK", n.nick))
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
	raw := m.Tags
	m.Tags = upstreamTags(raw)
	if n.casemap.fold(m.Prefix.Name) == serviceNick ||
		(m.Command == "NICK" && n.casemap.fold(m.Param(0)) == serviceNick) {
		return // nobody may speak, or appear, as our service
	}
	switch m.Command {
	case "PING":
		n.up.sendPriority(formatMessage(msg("", "PONG", m.Params...)))
		return
	case "ERROR":
		// The connection is ending; clients hear it from *otr instead, so
		// that they do not take it for the end of their own connection.
		n.logger.Info("upstream sent ERROR", "text", m.Trailing())
		return
	case "BATCH":
		n.onUpstreamBatch(&irc.Message{Tags: raw, Prefix: m.Prefix, Command: m.Command, Params: m.Params})
		return
	case "PONG":
		n.noteServerTime(raw)
		return
	case "CAP", "AUTHENTICATE", "CHGHOST":
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
				n.sendTo(dc, m)
				dc.nick = n.nick
			}
			return
		}
		n.broadcast(m)
		n.otrNickChange(m.Prefix.Name, m.Param(0))
		return
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
					n.sendTo(r.dc, n.retarget(m, r.dc))
				}
				if m.Command == "366" {
					n.names = append(n.names[:i], n.names[i+1:]...)
				}
				return
			}
		}
	case "PRIVMSG", "NOTICE":
		n.handleUpstreamText(m, n.isHistory(raw))
		return
	case "TAGMSG":
		if n.casemap.fold(m.Param(0)) == serviceNick {
			return
		}
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

// handleUpstreamText routes PRIVMSG and NOTICE from the network; history
// (see history.go) never reaches the engine.
func (n *network) handleUpstreamText(m *irc.Message, history bool) {
	if len(m.Params) < 2 {
		n.broadcast(m)
		return
	}
	src := m.Prefix.Name
	target, text := m.Params[0], m.Params[1]
	switch {
	case n.casemap.fold(target) == serviceNick:
		return // only clients talk to our service
	case src == "" || (m.Prefix.User == "" && m.Prefix.Host == "" && strings.Contains(src, ".")):
		n.broadcast(m) // from a server
		return
	case n.isSelf(src):
		// An echo of our own message (echo-message, or a bouncer upstream):
		// our ciphertext must reach neither clients nor the engine.
		if otrcore.Classify(text).Kind != otrcore.LinePlain {
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
	case n.ignoredBy(src) != "":
		n.broadcast(m) // otrbnc leaves ignored nicks alone
		return
	case history:
		n.handleHistoryText(m)
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
	n.otrReceive(m.Prefix, text, m.Tags)
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

// sendTo sends messages to one client, or adds them to the labeled
// response being built for that client.
func (n *network) sendTo(dc *downstream, ms ...*irc.Message) {
	if r := n.resp; r != nil && r.dc == dc {
		r.msgs = append(r.msgs, ms...)
		return
	}
	dc.send(ms...)
}

// broadcast sends m to every attached client. With none attached,
// private messages are kept in memory for the next client, stamped with
// the time they arrived when the network did not say.
func (n *network) broadcast(m *irc.Message) {
	if len(n.downstreams) == 0 {
		if (m.Command == "PRIVMSG" || m.Command == "NOTICE") && n.isSelf(m.Param(0)) {
			if len(n.detached) >= maxDetached {
				n.detached = n.detached[1:]
				n.lostPrivate++
			}
			if m.Tags["time"] == "" {
				m = m.Copy()
				m.Tags["time"] = formatServerTime(n.now())
			}
			n.detached = append(n.detached, m)
		}
		return
	}
	for _, dc := range n.downstreams {
		n.sendTo(dc, n.retarget(m, dc))
	}
}

// serviceMsg is one line from *otr to dc, as PRIVMSG or NOTICE per the
// notify setting.
func (n *network) serviceMsg(dc *downstream, line string) *irc.Message {
	cmd := "PRIVMSG"
	if n.setting("notify") == "notice" {
		cmd = "NOTICE"
	}
	return msg(servicePrefix, cmd, dc.nick, line)
}

// notify sends a service line to one client.
func (n *network) notify(dc *downstream, text string) {
	for _, line := range splitText(text, 400) {
		n.sendTo(dc, n.serviceMsg(dc, line))
	}
}

// notifyAll sends a service line to every client, or keeps it for the
// next one when none is attached.
func (n *network) notifyAll(text string) {
	if len(n.downstreams) == 0 {
		n.backlog = append(n.backlog, backlogEntry{at: n.now(), text: text})
		if len(n.backlog) > maxBacklog {
			n.lostEvents += len(n.backlog) - maxBacklog
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

// replay sends a kept message to dc: with its time tag for clients with
// server-time, otherwise with the time written before the text.
func (n *network) replay(dc *downstream, m *irc.Message) {
	if dc.hasCap("server-time") || len(m.Params) < 2 || (m.Command != "PRIVMSG" && m.Command != "NOTICE") {
		n.sendTo(dc, m)
		return
	}
	t, ok := parseServerTime(m.Tags["time"])
	if !ok {
		n.sendTo(dc, m)
		return
	}
	c := m.Copy()
	stamp := "[" + replayStamp(t, n.now()) + "] "
	if cmd, body, isCTCP := parseCTCP(c.Params[1]); isCTCP && cmd == "ACTION" {
		c.Params[1] = ctcpAction(stamp + body)
	} else {
		c.Params[1] = stamp + c.Params[1]
	}
	n.sendTo(dc, c)
}

// replayStamp formats t for a client without server-time: the time of
// day, with the date when it is not today.
func replayStamp(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if t.Year() == now.Year() && t.YearDay() == now.YearDay() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

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
	if n.lostEvents > 0 {
		n.notify(dc, fmt.Sprintf("%d older *otr message(s) did not fit in memory and are lost", n.lostEvents))
	}
	for _, e := range n.backlog {
		for _, line := range splitText(e.text, 400) {
			m := n.serviceMsg(dc, line)
			m.Tags["time"] = formatServerTime(e.at)
			n.replay(dc, m)
		}
	}
	n.backlog, n.lostEvents = nil, 0
	if len(n.detached) > 0 {
		note := fmt.Sprintf("%d private message(s) arrived while no client was attached:", len(n.detached))
		if n.lostPrivate > 0 {
			note += fmt.Sprintf(" (%d older ones did not fit in memory and are lost)", n.lostPrivate)
		}
		n.notify(dc, note)
		for _, m := range n.detached {
			n.replay(dc, n.retarget(m, dc))
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

// handleDownstream handles one message from an attached client. A label
// is answered by otrbnc for what it handles itself (*otr, private
// messages, PING, CAP); commands passed to the network lose it, since the
// network's replies cannot be matched to them.
func (n *network) handleDownstream(dc *downstream, m *irc.Message) {
	label := m.Tags["label"]
	ctags := clientOnlyTags(m.Tags)
	m.Tags = irc.Tags{}
	m.Prefix = &irc.Prefix{}
	switch m.Command {
	case "PING", "CAP", "PRIVMSG", "NOTICE", "TAGMSG", "PASS", "USER", "AUTHENTICATE":
		if label != "" && dc.hasCap("labeled-response") && len(label) <= 64 {
			n.resp = &response{dc: dc, label: label}
			defer n.finishResponse()
		}
	}
	switch m.Command {
	case "PING":
		n.sendTo(dc, msg(serverName, "PONG", serverName, m.Param(0)))
	case "PONG":
	case "QUIT":
		dc.conn.Close()
	case "PASS", "USER", "AUTHENTICATE":
		n.sendTo(dc, msg(serverName, "462", dc.nick, "You may not reregister"))
	case "CAP":
		_, _, replies := capCommand(dc.caps, dc.nick, m)
		n.sendTo(dc, replies...)
	case "PRIVMSG", "NOTICE":
		n.handleClientText(dc, m, ctags)
	case "TAGMSG":
		n.handleClientTagmsg(dc, m, ctags)
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

// finishResponse sends the labeled response collected for a command:
// ACK when it produced nothing, the one message with the label, or a
// labeled-response batch.
func (n *network) finishResponse() {
	r := n.resp
	n.resp = nil
	if r == nil {
		return
	}
	switch {
	case len(r.msgs) == 0:
		ack := msg(serverName, "ACK")
		ack.Tags["label"] = r.label
		r.dc.send(ack)
	case len(r.msgs) == 1:
		c := r.msgs[0].Copy()
		c.Tags["label"] = r.label
		r.dc.send(c)
	case r.dc.hasCap("batch"):
		n.batchSeq++
		ref := fmt.Sprintf("otrbnc%d", n.batchSeq)
		start := msg(serverName, "BATCH", "+"+ref, "labeled-response")
		start.Tags["label"] = r.label
		out := []*irc.Message{start}
		for _, m := range r.msgs {
			c := m.Copy()
			c.Tags["batch"] = ref
			out = append(out, c)
		}
		out = append(out, msg(serverName, "BATCH", "-"+ref))
		r.dc.send(out...)
	default:
		r.dc.send(r.msgs...)
	}
}

// handleClientText routes a client's PRIVMSG or NOTICE: to the service,
// in clear to channels, NOTICE and non-ACTION CTCP, and through OTR for
// private messages. ctags are the client-only tags the client sent.
func (n *network) handleClientText(dc *downstream, m *irc.Message, ctags irc.Tags) {
	if len(m.Params) < 2 || m.Params[1] == "" {
		if len(m.Params) == 0 {
			n.sendTo(dc, msg(serverName, "411", dc.nick, "No recipient given ("+m.Command+")"))
		} else {
			n.sendTo(dc, msg(serverName, "412", dc.nick, "No text to send"))
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
		if isChannel(target, n.chantypes) || m.Command == "NOTICE" || (isCTCP && cmd != "ACTION") || n.ignoredBy(target) != "" {
			out := msg("", m.Command, target, text)
			out.Tags = n.tagsUpstream(ctags)
			if !n.up.SendMessage(out) {
				n.notify(dc, fmt.Sprintf("the send queue to %s is full; your message to %s was NOT sent", n.cfg.Name, target))
				continue
			}
			n.echo(dc, m.Command, target, text, ctags)
			continue
		}
		n.otrSend(dc, target, text, ctags)
	}
}

// handleClientTagmsg forwards a TAGMSG (typing notifications, reactions)
// unless it goes to a peer whose messages are encrypted and client_tags
// is strip: the tags would travel in clear.
func (n *network) handleClientTagmsg(dc *downstream, m *irc.Message, ctags irc.Tags) {
	target := m.Param(0)
	if target == "" || len(ctags) == 0 || n.casemap.fold(target) == serviceNick {
		return
	}
	if n.up == nil || !n.upCaps["message-tags"] {
		return
	}
	if !isChannel(target, n.chantypes) && n.encryptsTo(target) && n.setting("client_tags") == "strip" {
		return
	}
	out := msg("", "TAGMSG", target)
	out.Tags = ctags
	if n.up.SendMessage(out) {
		n.echo(dc, "TAGMSG", target, "", ctags)
	}
}

// tagsUpstream returns the client-only tags that may go to the network
// (only when it negotiated message-tags).
func (n *network) tagsUpstream(ctags irc.Tags) irc.Tags {
	if len(ctags) == 0 || !n.upCaps["message-tags"] {
		return irc.Tags{}
	}
	return ctags.Copy()
}

// echo mirrors what dc sent, as plaintext, to the other clients and to dc
// itself when it negotiated echo-message.
func (n *network) echo(from *downstream, cmd, target, text string, ctags irc.Tags) {
	for _, dc := range n.downstreams {
		if dc != from || from.hasCap("echo-message") {
			var m *irc.Message
			if cmd == "TAGMSG" {
				m = msg(n.selfPrefix(), cmd, target)
			} else {
				m = msg(n.selfPrefix(), cmd, target, text)
			}
			for k, v := range ctags {
				m.Tags[k] = v
			}
			n.sendTo(dc, m)
		}
	}
}

// deliver sends text from a peer to every client (or keeps it for the
// next one), split to fit client lines; action wraps each piece as CTCP
// ACTION. tags (time, msgid, …) go on the first piece; later pieces keep
// only the time.
func (n *network) deliver(from *irc.Prefix, text string, action bool, tags irc.Tags) {
	prefix := from.String()
	// ":" prefix " PRIVMSG " nick " :" text CRLF, plus CTCP wrapping. The
	// nick budget is the longest nick the network allows us.
	room := 512 - (1 + len(prefix) + len(" PRIVMSG ") + max(len(n.nick), 30) + len(" :") + 2)
	if action {
		room -= len("\x01ACTION \x01")
	}
	for i, piece := range splitText(text, room) {
		if action {
			piece = ctcpAction(piece)
		}
		m := msg(prefix, "PRIVMSG", n.nick, piece)
		if i == 0 {
			for k, v := range tags {
				m.Tags[k] = v
			}
		} else if t := tags["time"]; t != "" {
			m.Tags["time"] = t
		}
		n.broadcast(m)
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
