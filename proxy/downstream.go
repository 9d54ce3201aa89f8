package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"gopkg.in/irc.v4"
)

const (
	// serverName is the prefix of lines otrbnc makes up itself.
	serverName = "otrbnc"
	// downstreamRegisterTimeout bounds client registration.
	downstreamRegisterTimeout = 30 * time.Second
	// maxAuthFailures closes a client after this many bad SASL attempts.
	maxAuthFailures = 3
)

// downstream is one attached client. Its fields other than conn are owned
// by the network goroutine once attached.
type downstream struct {
	conn *ircConn
	id   uint64
	nick string // the nick the client believes it has
	user string
	caps map[string]bool
	// clientName names the client's identity (backlog.go); "" is the
	// default identity.
	clientName string
	// identity is the backlog identity while attached (nil when there
	// was no room for it).
	identity *clientIdentity
	// deferred holds, per folded channel, backlog lines waiting for the
	// channel's names list.
	deferred map[string][]backlogLine
	logger   *slog.Logger
	// now is the server's clock, for server-time tags.
	now func() time.Time
}

// hasCap reports whether the client negotiated capability name.
func (dc *downstream) hasCap(name string) bool { return dc.caps[name] }

// send queues messages to the client, with the tags its capabilities
// allow; a client that cannot keep up is disconnected rather than slowing
// everyone down.
func (dc *downstream) write(ms ...*irc.Message) {
	lines := make([]string, 0, len(ms))
	now := time.Now()
	if dc.now != nil {
		now = dc.now()
	}
	for _, m := range ms {
		if c := forClient(dc.caps, m, now); c != nil {
			lines = append(lines, formatMessage(c))
		}
	}
	if !dc.conn.Send(lines...) {
		select {
		case <-dc.conn.Done(): // already gone; its reader reports the detach
		default:
			user, peer, _ := dc.conn.q.stats()
			dc.logger.Warn("client too slow; disconnecting", "queued", user+peer)
			dc.conn.Close()
		}
	}
}

// Bounds of client connections: how many may be logging in at once, and
// the outgoing queue (batches) before and after the password was checked.
// A client that lets its queue fill up is disconnected.
const (
	maxUnauthenticated   = 16
	queueUnauthenticated = 32
	queueAuthenticated   = 8192
)

// downstreamLoop runs a client connection, the twin of upstreamLoop: it
// registers and authenticates the client (auth.go), attaches it to its
// network, has the connection's reader post every later message to the
// owner goroutine (handleDownstream), and reports the detach.
func (s *Server) downstreamLoop(ctx context.Context, nc net.Conn) {
	id := s.nextClientID.Add(1)
	logger := s.logger.With("client", id, "addr", nc.RemoteAddr().String())
	if s.unauthenticated.Add(1) > maxUnauthenticated {
		s.unauthenticated.Add(-1)
		logger.Warn("too many clients logging in at once; connection refused", "limit", maxUnauthenticated)
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		nc.Write([]byte("ERROR :Closing link: too many connections are logging in; try again later\r\n"))
		nc.Close()
		return
	}
	dc := &downstream{
		conn:   newIRCConn(nc, connOptions{queue: queueUnauthenticated, logger: logger}),
		id:     id,
		logger: logger,
		now:    s.opts.Now,
	}
	user, err := s.registerDownstream(ctx, dc)
	s.unauthenticated.Add(-1)
	if err != nil {
		logger.Info("client not admitted", "err", err)
		dc.conn.Shutdown(2 * time.Second)
		return
	}
	netName, client, ok := parseClientUser(user)
	if !ok {
		logger.Info("client not admitted: invalid client name in the username")
		dc.conn.SendMessage(msg(serverName, "ERROR", fmt.Sprintf("Closing link: invalid client name after '@' in the username (use 1 to %d letters, digits, '.', '_' or '-')", maxClientName)))
		dc.conn.Shutdown(2 * time.Second)
		return
	}
	dc.clientName = client
	dc.conn.setQueueLimit(queueAuthenticated)
	n := s.pickNetwork(netName)
	logger = logger.With("network", n.cfg.Name)
	dc.logger = logger
	logger.Info("client attached")
	if !n.post(ctx, evDownstreamAttach{dc: dc}) {
		dc.conn.Close()
		return
	}
	// From now on the reader posts each message itself; this goroutine
	// waits for the end.
	dc.conn.deliverTo(func(ms []*irc.Message, closed <-chan struct{}) bool {
		if len(ms) == 1 {
			return n.postUnless(ctx, evDownstreamMsg{dc: dc, m: ms[0]}, closed)
		}
		return n.postUnless(ctx, evDownstreamMsgs{dc: dc, ms: slices.Clone(ms)}, closed)
	})
	for range dc.conn.In() {
	}
	dc.conn.Close()
	n.post(ctx, evDownstreamDetach{dc: dc})
	logger.Info("client detached", "reason", dc.conn.Err())
}

// pickNetwork selects the network named name (from the username, see
// parseClientUser); the first network is the default.
func (s *Server) pickNetwork(name string) *network {
	for _, n := range s.networks {
		if strings.EqualFold(n.cfg.Name, name) {
			return n
		}
	}
	return s.networks[0]
}

// replayed returns a kept message as dc is shown it: with its time tag
// for clients with server-time, otherwise with the time written before
// the text.
func (n *network) replayed(dc *downstream, m *irc.Message) *irc.Message {
	if dc.hasCap("server-time") || len(m.Params) < 2 || (m.Command != "PRIVMSG" && m.Command != "NOTICE") {
		return m
	}
	t, ok := parseServerTime(m.Tags["time"])
	if !ok {
		return m
	}
	c := m.Copy()
	stamp := "[" + replayStamp(t, n.now()) + "] "
	if cmd, body, isCTCP := parseCTCP(c.Params[1]); isCTCP && cmd == "ACTION" {
		c.Params[1] = ctcpAction(stamp + body)
	} else {
		c.Params[1] = stamp + c.Params[1]
	}
	return c
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
	dc.conn.setOwner(&n.out)
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
			dc.write(c)
		}
		for _, m := range n.isupport {
			c := m.Copy()
			c.Params[0] = dc.nick
			dc.write(c)
		}
	} else {
		dc.write(
			msg(serverName, "001", dc.nick, "Welcome to otrbnc; "+n.cfg.Name+" is not connected yet"),
			msg(serverName, "002", dc.nick, "Your host is otrbnc"),
			msg(serverName, "003", dc.nick, "This server was created by otrbnc"),
			msg(serverName, "004", dc.nick, serverName, "otrbnc", "i", "o"),
		)
	}
	dc.write(msg(serverName, "422", dc.nick, "MOTD omitted by otrbnc"))
	lines, lost, tracked := n.attachBacklog(dc)
	waiting := map[string]bool{}
	if n.up != nil {
		for key, ch := range n.channels {
			dc.write(msg(n.selfPrefix(), "JOIN", ch.name))
			if ch.topic != "" {
				dc.write(msg(serverName, "332", dc.nick, ch.name, ch.topic))
			}
			// The names list comes from the network; the channel's
			// backlog follows it (releaseChannelBacklog).
			names := msg("", "NAMES", ch.name)
			p := n.addPending(dc, names)
			if p.label != "" {
				names.Tags["label"] = p.label
			}
			if n.toUpstreamMsg(names) != nil {
				n.removePending(p)
				continue
			}
			p.release = key
			waiting[key] = true
		}
	} else {
		n.tellClient(dc, fmt.Sprintf("%s is not connected yet; otrbnc keeps trying", n.cfg.Name))
	}
	if !tracked {
		n.tellClient(dc, fmt.Sprintf("too many client identities are attached to %s; this client gets no backlog", n.cfg.Name))
	}
	n.replayBacklog(dc, lines, lost, waiting)
	n.otrAttach(dc)
}

func (n *network) detach(dc *downstream) {
	for i, d := range n.downstreams {
		if d == dc {
			n.downstreams = append(n.downstreams[:i], n.downstreams[i+1:]...)
			break
		}
	}
	n.orphanPending(dc)
	n.detachBacklog(dc)
	dc.deferred = nil
	dc.identity = nil
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
		n.toClient(dc, msg(serverName, "PONG", serverName, m.Param(0)))
	case "PONG":
	case "QUIT":
		dc.conn.Close()
	case "PASS", "USER", "AUTHENTICATE":
		n.toClient(dc, msg(serverName, "462", dc.nick, "You may not reregister"))
	case "CAP":
		_, _, replies := capCommand(dc.caps, dc.nick, m)
		n.toClient(dc, replies...)
	case "PRIVMSG", "NOTICE":
		n.handleClientText(dc, m, ctags)
	case "TAGMSG":
		n.handleClientTagmsg(dc, m, ctags)
	default:
		if n.up == nil {
			n.tellClient(dc, fmt.Sprintf("%s is not connected; %s not sent", n.cfg.Name, m.Command))
			return
		}
		if err := n.sendCommand(dc, m); err != nil {
			n.tellClient(dc, fmt.Sprintf("%s: %s not sent", err, m.Command))
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
		r.dc.write(ack)
	case len(r.msgs) == 1:
		c := r.msgs[0].Copy()
		c.Tags["label"] = r.label
		r.dc.write(c)
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
		r.dc.write(out...)
	default:
		r.dc.write(r.msgs...)
	}
}

// handleClientText routes a client's PRIVMSG or NOTICE: to the service,
// in clear to channels, NOTICE and non-ACTION CTCP, and through OTR for
// private messages. ctags are the client-only tags the client sent.
func (n *network) handleClientText(dc *downstream, m *irc.Message, ctags irc.Tags) {
	if len(m.Params) < 2 || m.Params[1] == "" {
		if len(m.Params) == 0 {
			n.toClient(dc, msg(serverName, "411", dc.nick, "No recipient given ("+m.Command+")"))
		} else {
			n.toClient(dc, msg(serverName, "412", dc.nick, "No text to send"))
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
			n.refuseToClient(dc, target, "your message was NOT sent: "+n.cfg.Name+" is not connected",
				fmt.Sprintf("%s is not connected; your message to %s was NOT sent", n.cfg.Name, target))
			continue
		}
		n.clientTextTo(dc, m.Command, target, text, ctags)
	}
}

// clientTextTo routes one client PRIVMSG or NOTICE to one target: in clear
// to channels and to nicks otrbnc leaves alone, through OTR to other nicks.
// Notices and CTCP other than ACTION cannot travel inside OTR: they go in
// clear, except to a nick whose conversation is guarded, where they are
// refused (I1).
func (n *network) clientTextTo(dc *downstream, command, target, text string, ctags irc.Tags) {
	cmd, _, isCTCP := parseCTCP(text)
	clear := command == "NOTICE" || (isCTCP && cmd != "ACTION")
	switch {
	case n.isChannel(target) && !n.guarded(target):
	case clear && n.guarded(target):
		what := "notice"
		if isCTCP {
			what = "CTCP " + cmd
		}
		n.refuseToClient(dc, target, fmt.Sprintf("your %s was NOT sent: it cannot be encrypted", what),
			fmt.Sprintf("your %s was NOT sent: your conversation with %s is private and a %s cannot be encrypted; write a normal message instead", what, target, what))
		return
	case clear || n.leftAlone(target):
	default:
		n.privateFromClient(dc, target, text, ctags)
		return
	}
	out := msg("", command, target, text)
	out.Tags = n.tagsUpstream(ctags)
	if err := n.toUpstreamMsg(out); err != nil {
		n.refuseToClient(dc, target, "your message was NOT sent: "+err.Error(), fmt.Sprintf("%s: your message to %s was NOT sent", err, target))
		return
	}
	n.echoToClients(dc, command, target, text, ctags)
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
	if !n.isChannel(target) && n.guarded(target) && n.setting("client_tags") == "strip" {
		return
	}
	out := msg("", "TAGMSG", target)
	out.Tags = ctags
	if n.toUpstreamMsg(out) == nil {
		n.echoToClients(dc, "TAGMSG", target, "", ctags)
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

// echoToClients mirrors what dc sent, as plaintext: to dc itself when it
// negotiated echo-message, and to the other clients that asked for what
// their other clients send (echo-message or znc.in/self-message; others
// would show it as a message from us to ourselves). It is kept for the
// client identities that are not attached (backlog.go).
func (n *network) echoToClients(from *downstream, cmd, target, text string, ctags irc.Tags) {
	var m *irc.Message
	if cmd == "TAGMSG" {
		m = msg(n.selfPrefix(), cmd, target)
	} else {
		m = msg(n.selfPrefix(), cmd, target, text)
	}
	for k, v := range ctags {
		m.Tags[k] = v
	}
	n.keep(m)
	for _, dc := range n.downstreams {
		if dc == from && from.hasCap("echo-message") {
			n.toClient(dc, m)
		} else if dc != from && wantsOwn(dc) {
			n.liveToClient(dc, m)
		}
	}
}
