package proxy

import (
	"errors"
	"fmt"
	"time"

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

// sendResult sends res's messages and reports its events. With
// inPeerLane, protocol messages (queries, errors, key exchanges, control
// data) wait in p's lane, a newer AKE message to an instance replacing an
// older unsent one; the user's own text (typed, or held and released when
// a session starts) always travels in the user lane.
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
		switch {
		case !inPeerLane || out.Kind == otrcore.OutText || out.Kind == otrcore.OutPlaintext:
			err = n.toUpstream(lines...)
		case out.Kind == otrcore.OutAKE:
			err = n.toPeerLane(p, fmt.Sprintf("ake/%08x", out.Instance), lines)
		default:
			err = n.toPeerLane(p, "", lines)
		}
		if err != nil && sendErr == nil {
			sendErr = err
		}
		if out.Kind == otrcore.OutQuery && !inPeerLane {
			p.asked, p.askHinted = n.now(), false
		}
	}
	for _, ev := range res.Events {
		n.otrEvent(p, ev)
	}
	n.accountPeer(p)
	if sendErr != nil {
		n.tellClientsAbout(p.nick, fmt.Sprintf("OTR data for %s could not be sent: %v", p.nick, sendErr))
	}
	return sendErr
}

// askTimeout is how long after asking a peer for a private conversation
// the user is told that no answer came.
const askTimeout = 30 * time.Second

// tickAsked tells the user about requests for a private conversation that
// got no answer.
func (n *network) tickAsked(p *otrPeer, now time.Time) {
	if p.asked.IsZero() || p.askHinted || now.Sub(p.asked) < askTimeout {
		return
	}
	p.askHinted = true
	if st := p.conv.Status(); st.State == otrcore.StateEncrypted {
		return
	}
	n.stateToClients(p.nick, fmt.Sprintf("no answer to the request for a private conversation (sent at %s)", p.asked.Local().Format("15:04:05")),
		fmt.Sprintf("%s has not answered the request for a private conversation sent at %s. Their client may not support OTR, or may still be generating its key (that can take a minute). Asking again is safe: /msg *otr start %s",
			p.nick, p.asked.Local().Format("15:04:05"), p.nick))
}

// queuedHint is added to the notice about a queued message.
func (n *network) queuedHint(p *otrPeer) string {
	if p.asked.IsZero() {
		return ""
	}
	return fmt.Sprintf("; asked %s for a private conversation at %s", p.nick, p.asked.Local().Format("15:04:05"))
}

// refusal explains, short for the window and in detail for *otr, why
// the engine refused to send the user's message to p.
func (n *network) refusal(p *otrPeer, err error) (short, detail string) {
	nick := p.nick
	switch {
	case errors.Is(err, otrcore.ErrFinished):
		return fmt.Sprintf("your message was NOT sent: %s ended the private conversation", nick),
			fmt.Sprintf("your message was NOT sent: %s ended the private conversation. Run /msg *otr finish %s to talk in clear, or /msg *otr start %s to start again", nick, nick, nick)
	case errors.Is(err, otrcore.ErrKeyNotConfirmed):
		return fmt.Sprintf("your message was NOT sent: %s's key changed and is not verified", nick),
			fmt.Sprintf("your message was NOT sent: the session with %s now uses a key you did not talk to before and have not verified. See /msg *otr instance %s, then choose the session to talk to with /msg *otr instance %s <instance>, or verify the key with /msg *otr auth %s <secret>", nick, nick, nick, nick)
	case errors.Is(err, otrcore.ErrQueueFull):
		return "your message was NOT sent: too many messages are queued already",
			fmt.Sprintf("your message was NOT sent: too many messages wait for the private conversation with %s; /msg *otr status %s", nick, nick)
	}
	return "your message was NOT sent: " + err.Error(), "your message was NOT sent: " + err.Error()
}

// takeEvent removes the first event of kind k from res and returns it.
func takeEvent(res *otrcore.Result, k otrcore.EventKind) *otrcore.Event {
	for i, ev := range res.Events {
		if ev.Kind == k {
			res.Events = append(res.Events[:i:i], res.Events[i+1:]...)
			return &ev
		}
	}
	return nil
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
				n.refuseToClient(dc, target, "your message was NOT sent: "+err.Error(), "your message was NOT sent: "+err.Error())
				return
			}
			n.echoToClients(dc, "PRIVMSG", target, text, ctags)
			return
		}
		plaintext = a
	}
	if !p.closedAt.IsZero() && p.conv.Status().State == otrcore.StatePlaintext {
		n.refuseToClient(dc, p.nick, "your message was NOT sent: otrbnc closed the private conversation",
			fmt.Sprintf("your message was NOT sent: otrbnc closed the private conversation %s had started, at %s. Run /msg *otr start %s for a new private conversation, or /msg *otr finish %s to talk in clear",
				p.nick, p.closedAt.Local().Format("15:04:05"), p.nick, p.nick))
		return
	}
	tags := n.tagsUpstream(ctags)
	if p.guarded() && n.setting("client_tags") != "pass" {
		tags = nil
	}
	res, err := p.conv.Send(n.now(), plaintext)
	if err != nil {
		short, detail := n.refusal(p, err)
		n.refuseToClient(dc, p.nick, short, detail)
		return
	}
	if held := takeEvent(&res, otrcore.EventMessageHeld); held != nil {
		// Only the typing client needs to know, in its window: the line
		// it shows as sent is not.
		n.refuseToClient(dc, p.nick, "your message is queued until the private conversation starts; it is NOT sent yet",
			fmt.Sprintf("your message is queued until the private conversation with %s starts (policy %s)%s", p.nick, p.policy, n.queuedHint(p)))
	}
	if sendErr := n.applyResultTags(p, res, tags); sendErr != nil {
		return
	}
	n.echoToClients(dc, "PRIVMSG", target, text, ctags)
	n.prepareKeys(p)
}

// privateFromPeer handles a private PRIVMSG (not CTCP) from a peer; tags are
// the network's tags of the line.
func (n *network) privateFromPeer(from *irc.Prefix, text string, tags irc.Tags) {
	p := n.peer(from.Name)
	if p.prefix == nil || *p.prefix != *from {
		p.prefix = ownedPrefix(from)
	}
	if line := otrcore.Classify(text); line.Kind == otrcore.LineFragment {
		if line.Piece == 1 {
			p.fragTags = ownedTags(tags) // kept until the last piece: counted in accountPeer
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
			how := delivery{action: action, tags: tags}
			if !res.Current {
				// Another session with the peer than the one the user's
				// messages go to (I4): every line says so.
				how.note = fmt.Sprintf("[other session: instance %08x, key %s, %s]", res.Instance, shortFP(res.Fingerprint), trustWord(res.Trusted))
				n.tellClientsAboutPeerEvent(p, noticeOtherSession, fmt.Sprintf("a message from another session with %s (instance %08x, key %s, %s), not the one your messages go to", p.nick, res.Instance, shortFP(res.Fingerprint), trustWord(res.Trusted)),
					fmt.Sprintf("a message came from another session with %s (instance %08x, key %s, %s) than the one your messages go to; it is marked %q. /msg *otr instance %s lists the sessions; /msg *otr instance %s %08x makes it the one your messages go to",
						p.nick, res.Instance, res.Fingerprint, trustWord(res.Trusted), how.note, p.nick, p.nick, res.Instance))
			}
			n.deliverToClients(p.prefix, how, body)
		} else {
			n.deliverToClients(p.prefix, delivery{marked: p.guarded(), tags: tags}, res.Text)
			switch st := p.conv.Status(); {
			case st.Held > 0:
				n.tellClientsAboutPeerEvent(p, noticeClearText, fmt.Sprintf("%s wrote in clear while %d of your messages wait for a private conversation", p.nick, st.Held),
					fmt.Sprintf("%s wrote in clear while %d of your messages wait for a private conversation: %s may not have OTR. /msg *otr discard %s drops them; /msg *otr plain %s <text> sends one message in clear",
						p.nick, st.Held, p.nick, p.nick, p.nick))
			case p.guarded() && !hasEvent(res, otrcore.EventPlaintextInSession):
				n.tellClientsAboutPeerEvent(p, noticeClearText, "", n.clearTextWarning(p, "message"))
			}
		}
	}
	n.applyPeerResult(p, res)
	if res.Encrypted {
		n.prepareKeys(p)
	}
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
	if p.prefix == nil || *p.prefix != *m.Prefix {
		p.prefix = ownedPrefix(m.Prefix)
	}
	n.deliverToClients(p.prefix, delivery{action: true, marked: true, tags: m.Tags}, body)
	if p.sessionGuarded() {
		n.tellClientsAboutPeerEvent(p, noticeClearText, "", fmt.Sprintf("the action from %s marked %q was NOT encrypted, although your private conversation is", p.nick, n.marker()))
	} else {
		n.tellClientsAboutPeerEvent(p, noticeClearText, "", n.clearTextWarning(p, "action"))
	}
}

// dhKeyPoolSize is how many DH key pairs a network keeps ready for key
// rotation and AKEs (otrcore.DHKeyPool), and dhKeysPerTick how many the
// tick computes at most (about 125 µs each), so the owner goroutine
// never spends long on them at once.
const (
	dhKeyPoolSize = 16
	dhKeysPerTick = 4
)

// prepareKeys derives ahead of need the session keys of p's next
// messages each way (otrcore's PrepareKeys). It runs once the lines of a
// message have been queued or its text delivered, so the work overlaps
// with the message's trip instead of delaying the next one.
func (n *network) prepareKeys(p *otrPeer) {
	if _, err := p.conv.PrepareKeys(); err != nil {
		n.logger.Debug("OTR key preparation failed", "peer", p.nick, "err", err)
	}
}

// otrTick drives the engine's timers (heartbeats, AKE expiry), sums up
// the notices held back in the last minute, forgets idle conversations,
// gives freed memory back to the system after a large drop and tops up
// the DH key pool.
func (n *network) otrTick() {
	n.tickNotices()
	now := n.now()
	for _, p := range n.otr.peers {
		if res := p.conv.Tick(now); len(res.Send) > 0 || len(res.Events) > 0 {
			n.applyPeerResult(p, res)
		} else {
			n.accountPeer(p) // a partial message may have expired
		}
		n.tickAsked(p, now)
	}
	n.expirePeers(now)
	n.freeOSMemory(now)
	if _, err := n.otr.acct.DHKeys.Fill(dhKeysPerTick); err != nil {
		n.logger.Warn("OTR key pool", "err", err)
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
	// note goes in front of every line (after the marker): the text came
	// from a session the user's messages do not go to.
	note string
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
	// Every piece is sent from from as its string form reads back (the
	// same prefix, unless it holds stray '!' or '@').
	sender := func() *irc.Prefix { return from.Copy() }
	if !prefixReparses(from) {
		s := from.String()
		sender = func() *irc.Prefix { return irc.ParsePrefix(s) }
	}
	// ":" prefix " PRIVMSG " nick " :" text CRLF, plus CTCP wrapping. The
	// nick budget is the longest nick the network allows us.
	room := 512 - (1 + prefixLen(from) + 1 + len(how.command) + 1 + max(len(n.nick), 30) + len(" :") + 2)
	if how.action {
		room -= len("\x01ACTION \x01")
	}
	lead := ""
	if how.marked {
		lead = n.marker() + " "
		text = neutralize(text)
	}
	if how.note != "" {
		lead += how.note + " "
	}
	room -= len(lead)
	if how.action && lead == "" {
		text = defuseAction(text)
	}
	for i, piece := range splitText(text, room) {
		piece = lead + piece
		if how.action {
			piece = ctcpAction(piece)
		}
		m := msg("", how.command, n.nick, piece)
		m.Prefix = sender()
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
