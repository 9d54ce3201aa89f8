package proxy

import (
	"fmt"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
)

// applyResult sends what the engine produced for something the user did
// (a message, a command), one batch per OTR message in the user lane,
// then reports its events. It returns the first send error.
func (n *network) applyResult(p *otrPeer, res otrcore.Result) error {
	return n.applyResultTags(p, res, nil)
}

// applyResultTags is applyResult with tags for the very first line.
func (n *network) applyResultTags(p *otrPeer, res otrcore.Result, tags irc.Tags) error {
	p.engage(n.now())
	return n.sendResult(p, res, tags, false)
}

// applyPeerResult sends what the engine produced in answer to the peer
// or to a timer (key exchanges, heartbeats, errors), then reports its
// events. Unless the user talks to p, the lines wait in p's own lane and
// within p's reply budget, so that a hostile nick cannot delay the
// user's traffic or make otrbnc send it without bound (sendqueue.go).
func (n *network) applyPeerResult(p *otrPeer, res otrcore.Result) {
	n.sendResult(p, res, nil, !p.engaged(n.now()))
}

// sendResult sends res's messages (in p's lane when inPeerLane) and
// reports its events.
func (n *network) sendResult(p *otrPeer, res otrcore.Result, tags irc.Tags, inPeerLane bool) error {
	var sendErr error
	for b, out := range res.Send {
		lines := make([]string, len(out.Lines))
		for i, f := range out.Lines {
			m := msg("", "PRIVMSG", p.nick, f)
			if b == 0 && i == 0 && len(tags) > 0 {
				m.Tags = tags
			}
			lines[i] = formatMessage(m)
		}
		var err error
		if inPeerLane {
			err = n.toPeerLane(p, "", lines)
		} else {
			err = n.toUpstream(lines...)
		}
		if err != nil && sendErr == nil {
			sendErr = err
		}
	}
	for _, ev := range res.Events {
		n.otrEvent(p, ev)
	}
	if sendErr != nil {
		n.tellClientsAbout(p.nick, fmt.Sprintf("OTR data for %s could not be sent: %v", p.nick, sendErr))
	}
	return sendErr
}

func hasEvent(res otrcore.Result, k otrcore.EventKind) bool {
	for _, ev := range res.Events {
		if ev.Kind == k {
			return true
		}
	}
	return false
}

// privateFromClient handles a private PRIVMSG typed by a client. ctags are the
// client-only tags it carried: they go along in clear only when the
// message does, or when client_tags is pass (on the first line).
func (n *network) privateFromClient(dc *downstream, target, text string, ctags irc.Tags) {
	p := n.peer(target)
	plaintext := text
	if a, ok := actionToOTR(text); ok {
		if !p.guarded() {
			// No session, nothing queued, none required: an action
			// stays a CTCP ACTION.
			m := msg("", "PRIVMSG", target, text)
			m.Tags = n.tagsUpstream(ctags)
			if err := n.toUpstreamMsg(m); err != nil {
				n.tellClient(dc, fmt.Sprintf("[%s] your message was NOT sent: %v", target, err))
				return
			}
			n.echoToClients(dc, "PRIVMSG", target, text, ctags)
			return
		}
		plaintext = a
	}
	tags := n.tagsUpstream(ctags)
	if p.guarded() && n.setting("client_tags") != "pass" {
		tags = nil
	}
	res, err := p.conv.Send(n.now(), plaintext)
	sendErr := n.applyResultTags(p, res, tags)
	if err != nil {
		n.tellClient(dc, fmt.Sprintf("[%s] your message was NOT sent: %v", p.nick, err))
		return
	}
	if sendErr != nil {
		return
	}
	n.echoToClients(dc, "PRIVMSG", target, text, ctags)
}

// privateFromPeer handles a private PRIVMSG (not CTCP) from a peer; tags are
// the network's tags of the line.
func (n *network) privateFromPeer(from *irc.Prefix, text string, tags irc.Tags) {
	p := n.peer(from.Name)
	p.prefix = from.Copy()
	if line := otrcore.Classify(text); line.Kind == otrcore.LineFragment {
		if line.Piece == 1 {
			p.fragTags = tags
		}
		if line.Piece == line.Pieces && p.fragTags != nil {
			tags, p.fragTags = p.fragTags, nil
		}
	}
	res, err := p.conv.Receive(n.now(), text)
	if err != nil {
		n.logger.Debug("OTR receive error", "err", err)
	}
	if res.HasText {
		if res.Encrypted {
			body, action := fromOTRText(res.Text)
			n.deliverToClients(p.prefix, delivery{action: action, tags: tags}, body)
		} else {
			n.deliverToClients(p.prefix, delivery{marked: p.guarded(), tags: tags}, res.Text)
			if p.guarded() && !hasEvent(res, otrcore.EventPlaintextInSession) {
				n.tellClientsAboutPeerEvent(p, noticeClearText, n.clearTextWarning(p, "message"))
			}
		}
	}
	n.applyPeerResult(p, res)
}

// clearTextWarning explains why clear text from p was marked when no
// encrypted session exists (the policy requires encryption).
func (n *network) clearTextWarning(p *otrPeer, what string) string {
	return fmt.Sprintf("the %s from %s marked %q was NOT encrypted; your policy for %s (%s) requires encryption", what, p.nick, n.marker(), p.nick, p.policy)
}

// clearActionFromPeer handles a CTCP ACTION that came in clear: marked
// when the conversation with that peer is guarded, passed on otherwise.
func (n *network) clearActionFromPeer(m *irc.Message, body string) {
	p := n.lookupPeer(m.Prefix.Name)
	if p == nil || !p.guarded() {
		if p == nil && n.guarded(m.Prefix.Name) {
			p = n.peer(m.Prefix.Name) // the policy requires encryption
		} else {
			n.toClients(m)
			return
		}
	}
	p.prefix = m.Prefix.Copy()
	n.deliverToClients(p.prefix, delivery{action: true, marked: true, tags: m.Tags}, body)
	if p.sessionGuarded() {
		n.tellClientsAboutPeerEvent(p, noticeClearText, fmt.Sprintf("the action from %s marked %q was NOT encrypted, although your private conversation is", p.nick, n.marker()))
	} else {
		n.tellClientsAboutPeerEvent(p, noticeClearText, n.clearTextWarning(p, "action"))
	}
}

// otrTick drives the engine's timers (heartbeats, AKE expiry) and sums
// up the notices held back in the last minute.
func (n *network) otrTick() {
	n.tickNotices()
	now := n.now()
	for _, p := range n.otr.peers {
		if res := p.conv.Tick(now); len(res.Send) > 0 || len(res.Events) > 0 {
			n.applyPeerResult(p, res)
		}
	}
}

// otrReconnected restarts the AKE with peers that have queued messages:
// whatever AKE was under way died with the old connection.
func (n *network) otrReconnected() {
	now := n.now()
	for _, p := range n.sortedPeers() {
		if st := p.conv.Status(); st.Held > 0 && st.State == otrcore.StatePlaintext {
			n.tellClientsAbout(p.nick, fmt.Sprintf("%d message(s) still queued; asking %s for a private conversation again", st.Held, p.nick))
			res, err := p.conv.Start(now)
			if err != nil {
				n.tellClientsAbout(p.nick, fmt.Sprintf("could not ask %s again: %v", p.nick, err))
				continue
			}
			n.applyResult(p, res)
		}
	}
}

// otrShutdown tells encrypted peers we are leaving.
func (n *network) otrShutdown() {
	now := n.now()
	for _, p := range n.sortedPeers() {
		st := p.conv.Status()
		if st.Held > 0 {
			n.tellClientsAbout(p.nick, fmt.Sprintf("%d queued message(s) were NOT sent: otrbnc is shutting down", st.Held))
		}
		if peerEncrypted(st) {
			n.applyResult(p, p.conv.End(now))
		}
	}
}

// otrAttach tells a new client about running sessions and pending SMP
// questions.
func (n *network) otrAttach(dc *downstream) {
	for _, p := range n.sortedPeers() {
		st := p.conv.Status()
		if st.State == otrcore.StateEncrypted {
			n.tellClient(dc, fmt.Sprintf("[%s] private conversation active (%s)", p.nick, trustWord(st.Trusted)))
		}
		if st.SMPAwaitingSecret {
			for _, line := range smpPrompt(p.nick, st.SMPQuestion, st.SMPHasQuestion) {
				n.tellClient(dc, line)
			}
		}
		if st.Held > 0 {
			n.tellClient(dc, fmt.Sprintf("[%s] %d message(s) waiting for the private conversation", p.nick, st.Held))
		}
	}
}

// delivery says how text from a peer reaches the clients.
type delivery struct {
	// command is PRIVMSG (the default) or NOTICE.
	command string
	// action wraps every line as a CTCP ACTION.
	action bool
	// marked puts the plaintext marker in front of every line, after
	// removing what could disguise it (neutralize): the text did not
	// arrive encrypted although the conversation is guarded (I3).
	marked bool
	// tags (time, msgid, …) go on the first line; later lines keep only
	// the time.
	tags irc.Tags
}

// deliverToClients sends text from a peer to every client (or keeps it
// for the next one), split to fit client lines.
func (n *network) deliverToClients(from *irc.Prefix, how delivery, text string) {
	if how.command == "" {
		how.command = "PRIVMSG"
	}
	prefix := from.String()
	// ":" prefix " PRIVMSG " nick " :" text CRLF, plus CTCP wrapping. The
	// nick budget is the longest nick the network allows us.
	room := 512 - (1 + len(prefix) + 1 + len(how.command) + 1 + max(len(n.nick), 30) + len(" :") + 2)
	if how.action {
		room -= len("\x01ACTION \x01")
	}
	lead := ""
	if how.marked {
		lead = n.marker() + " "
		text = neutralize(text)
		room -= len(lead)
	}
	if how.action && lead == "" {
		text = defuseAction(text)
	}
	for i, piece := range splitText(text, room) {
		piece = lead + piece
		if how.action {
			piece = ctcpAction(piece)
		}
		m := msg(prefix, how.command, n.nick, piece)
		if i == 0 {
			for k, v := range how.tags {
				m.Tags[k] = v
			}
		} else if t := how.tags["time"]; t != "" {
			m.Tags["time"] = t
		}
		n.toClients(m)
	}
}
