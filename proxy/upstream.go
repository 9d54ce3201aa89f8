package proxy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"otrbnc/otrcore"

	"gopkg.in/irc.v4"
)

const (
	upstreamDialTimeout     = 15 * time.Second
	upstreamRegisterTimeout = 60 * time.Second
)

// upstreamLoop runs the upstream connection, the twin of downstreamLoop:
// it dials and registers (dial.go), has the connection's reader post every
// later message to the owner goroutine (handleUpstream), and reconnects
// with exponential backoff and jitter. It never touches owned state. ctx ends
// the connection; n.ctx, which run sets before starting it, ends first
// when otrbnc stops, so that the shutdown is not taken for a disconnect.
func (n *network) upstreamLoop(ctx context.Context) {
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
		// The server's software is not known yet: the strict pacing until
		// it names itself (onServerVersion).
		uc, err := dialUpstream(ctx, &n.cfg, pacingFor(&n.cfg, "", false, int(n.slowdown.Load())), n.logger)
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
		// The owner sends on uc from now on (onUpstreamUp).
		if !n.post(ctx, evUpstreamUp{uc: uc, reg: reg}) {
			uc.Close()
			return
		}
		// From now on the reader posts each message itself (no goroutine
		// in between); this one waits for the end.
		refused := false
		// flood is what the server said if it closed the connection for
		// flooding (set by the reader, read once In is closed).
		flood := ""
		uc.deliverTo(func(ms []*irc.Message, closed <-chan struct{}) bool {
			for _, m := range ms {
				if m.Command == "ERROR" && isFloodText(m.Trailing()) {
					flood = m.Trailing()
				}
			}
			var ev any = evUpstreamMsgs{uc: uc, ms: slices.Clone(ms)}
			if len(ms) == 1 {
				ev = evUpstreamMsg{uc: uc, m: ms[0]}
			}
			if !n.postUnless(ctx, ev, closed) {
				select {
				case <-closed: // the connection ends: handled below
				default:
					refused = true
				}
				return false
			}
			return true
		})
		for range uc.In() {
		}
		if refused {
			// Shutting down: the owner flushes and closes uc.
			<-uc.Done()
			n.logger.Info("upstream closed: otrbnc is shutting down")
			return
		}
		uc.Close()
		// The owner's shutdown closes uc before it cancels ctx; n.ctx, set
		// before this goroutine started, already ended then.
		if ctx.Err() != nil || n.ctx.Err() != nil {
			n.logger.Info("upstream closed: otrbnc is shutting down")
			return
		}
		// A connection closed for flooding does not reset the delay: a
		// server that keeps doing it gets ever slower reconnects.
		slower := false
		if flood != "" {
			slower = n.slowDown()
		} else if time.Since(start) > time.Minute {
			bo.reset()
		}
		d := bo.next()
		n.logger.Warn("upstream disconnected", "err", uc.Err(), "flood", flood, "retry_in", d)
		if !n.post(ctx, evUpstreamDown{uc: uc, err: uc.Err(), retry: d, flood: flood, slower: slower}) {
			return
		}
		if !sleep(d) {
			return
		}
	}
}

func (n *network) onUpstreamUp(uc *ircConn, reg *registration) {
	uc.setOwner(&n.out)
	n.up = uc
	n.burst = true
	old := n.nick
	n.setSelf(reg.nick, reg.user, reg.host)
	n.welcome = reg.welcome
	n.upCaps = reg.caps
	n.serverVersion, n.upSASL = "", reg.sasl
	n.batches = nil
	if len(reg.welcome) > 0 {
		n.noteServerTime(reg.welcome[0].Tags)
		for _, m := range reg.welcome {
			m.Tags = upstreamTags(m.Tags)
		}
	}
	n.isupport = nil
	n.clearPending()
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
			n.toClient(dc, msg(dc.nick, "NICK", n.nick))
			dc.nick = n.nick
		}
	}
	if old != n.nick {
		n.logger.Info("nick changed at registration", "nick", n.nick)
	}
	n.tellClients(fmt.Sprintf("connected to %s as %s", n.cfg.Name, n.nick))
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
	if n.casemap.fold(m.Prefix.Name) == serviceNick || strings.EqualFold(m.Prefix.Name, serverName) ||
		(m.Command == "NICK" && n.casemap.fold(m.Param(0)) == serviceNick) {
		return // nobody may speak, or appear, as our service or as otrbnc itself
	}
	defuseWindowLine(m)
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
		b := &irc.Message{Tags: raw, Prefix: m.Prefix, Command: m.Command, Params: m.Params}
		n.onLabeledBatch(b)
		n.onUpstreamBatch(b)
		return
	case "ACK":
		n.onACK(raw)
		return
	case "PONG":
		n.noteServerTime(raw)
		return
	case "CAP", "AUTHENTICATE", "CHGHOST":
		if m.Command == "CHGHOST" && n.isSelf(m.Prefix.Name) && len(m.Params) >= 2 {
			n.setSelf(n.nick, m.Params[0], m.Params[1])
		}
		return
	case "001":
		return
	case "002", "003", "004":
		if m.Command == "004" && n.burst && len(m.Params) >= 3 {
			n.onServerVersion(m.Params[2])
		}
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
				n.setSelf(n.nick, u, hh)
			} else {
				n.setSelf(n.nick, n.user, h)
			}
		}
	case "352": // RPL_WHOREPLY: me channel user host server nick ...
		if n.selfWho > 0 && n.isSelf(m.Param(5)) {
			n.setSelf(n.nick, m.Param(2), m.Param(3))
			return
		}
	case "315":
		if n.selfWho > 0 && n.isSelf(m.Param(1)) {
			n.selfWho--
			return
		}
	case "NICK":
		if n.isSelf(m.Prefix.Name) {
			n.settleNick(m.Param(0))
			n.setSelf(m.Param(0), n.user, n.host)
			for _, dc := range n.downstreams {
				n.toClient(dc, m)
				dc.nick = n.nick
			}
			return
		}
		n.toClients(m)
		n.otrNickChange(m.Prefix.Name, m.Param(0))
		return
	case "JOIN":
		if n.isSelf(m.Prefix.Name) {
			if m.Prefix.User != "" && m.Prefix.Host != "" {
				n.setSelf(n.nick, m.Prefix.User, m.Prefix.Host)
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
	case "PRIVMSG", "NOTICE":
		n.handleUpstreamText(m, n.isHistory(raw))
		return
	case "TAGMSG":
		if n.casemap.fold(m.Param(0)) == serviceNick {
			return
		}
	}
	n.relay(m, raw)
}

func (n *network) parseISupport(m *irc.Message) {
	if len(m.Params) < 2 {
		return
	}
	for _, tok := range m.Params[1 : len(m.Params)-1] {
		k, v, _ := strings.Cut(tok, "=")
		switch strings.ToUpper(k) {
		case "CHANTYPES":
			n.chantypes = keepChars(v, channelSigils)
		case "STATUSMSG":
			n.statusmsg = keepChars(v, statusSigils)
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
				n.applyPolicies()
			}
		}
	}
}

// handleUpstreamText routes PRIVMSG and NOTICE from the network; history
// (see history.go) never reaches the engine.
func (n *network) handleUpstreamText(m *irc.Message, history bool) {
	if len(m.Params) < 2 {
		n.toClients(m)
		return
	}
	src := m.Prefix.Name
	target, text := m.Params[0], m.Params[1]
	switch {
	case n.casemap.fold(target) == serviceNick:
		return // only clients talk to our service
	case src == "" || (m.Prefix.User == "" && m.Prefix.Host == "" && strings.Contains(src, ".")):
		// From a server (no nick has a dot).
		if m.Command == "NOTICE" && !history && !n.isChannel(target) && isFloodText(text) {
			n.onFloodWarning(text)
		}
		n.toClients(m)
		return
	case n.isSelf(src):
		// An echo of our own message (echo-message, or a bouncer upstream):
		// our ciphertext must reach neither clients nor the engine.
		if otrcore.Classify(text).Kind != otrcore.LinePlain {
			return
		}
		n.toClients(m)
		return
	case n.isChannel(target) || !n.isSelf(target):
		n.toClients(m)
		return
	case n.leftAlone(src):
		n.toClients(m) // otrbnc leaves ignored nicks alone
		return
	}
	cmd, body, isCTCP := parseCTCP(text)
	switch {
	case m.Command == "NOTICE" || (isCTCP && cmd != "ACTION"):
		n.clearFromPeer(m, cmd, isCTCP)
	case history:
		n.handleHistoryText(m)
	case isCTCP:
		n.clearActionFromPeer(m, body)
	default:
		n.privateFromPeer(m.Prefix, text, m.Tags)
	}
}

// clearFromPeer handles what a peer can only send in clear: NOTICE and
// CTCP other than ACTION. They pass unchanged, except from a nick whose
// conversation is guarded: a notice is shown marked (I3), and a CTCP
// request or reply is not passed on (the client's automatic answer would
// have to go in clear), the user being told.
func (n *network) clearFromPeer(m *irc.Message, cmd string, isCTCP bool) {
	src := m.Prefix.Name
	if !n.guarded(src) {
		if m.Command == "NOTICE" && !isCTCP && startsLikeOTR(m.Params[1]) {
			// WeeChat with irc.msgbuffer.404 = private draws otrbnc's
			// window lines and bob's notices alike ("-- bob: …").
			m.Params[1] = "· " + m.Params[1]
		}
		n.toClients(m)
		return
	}
	if isCTCP {
		n.tellClientsAboutPeerEvent(n.peer(src), noticeClearCTCP, "", fmt.Sprintf("%s sent you a CTCP %s in clear; it was not passed to your client, because your conversation with %s is private", src, quotePeer(cmd, 32), src))
		return
	}
	n.deliverToClients(m.Prefix, delivery{command: "NOTICE", marked: true, tags: m.Tags}, m.Params[1])
}
