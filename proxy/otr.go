package proxy

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/keystore"
	"otrbnc/otrcore"
)

// identityTimeout bounds waiting for a key at startup (first run
// generates one).
const identityTimeout = 2 * time.Minute

// otrState is the OTR side of a network: the identity and one
// Conversation per peer nick. Owned by the network goroutine.
type otrState struct {
	id       *Identity
	acct     *otrcore.Account
	policy   otrcore.Policy
	policies map[string]otrcore.Policy // by folded nick
	peers    map[string]*otrPeer       // by folded nick
}

// otrPeer is one nick we talk to privately.
type otrPeer struct {
	key    string // folded nick
	nick   string // as last seen or typed
	prefix *irc.Prefix
	conv   *otrcore.Conversation
	// fragTags are the tags of the first fragment of the message being
	// reassembled; the whole message is shown with them.
	fragTags irc.Tags
}

func newOTRState(n *network) (*otrState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), identityTimeout)
	defer cancel()
	id, err := n.srv.opts.Identities.Identity(ctx, n.cfg.Name)
	if err != nil {
		return nil, err
	}
	pol, err := otrcore.ParsePolicy(n.cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	o := &otrState{
		id:       id,
		acct:     &otrcore.Account{Key: id.Key, InstanceTag: id.InstanceTag, Trust: id.Trust},
		policy:   pol,
		policies: map[string]otrcore.Policy{},
		peers:    map[string]*otrPeer{},
	}
	for nick, pc := range n.cfg.Peers {
		p, err := otrcore.ParsePolicy(pc.Policy)
		if err != nil {
			return nil, fmt.Errorf("peers.%s: %w", nick, err)
		}
		o.policies[n.casemap.fold(nick)] = p
	}
	return o, nil
}

// refold re-keys the maps after a CASEMAPPING change (networks announce
// it before any private message, so this is rare). A conversation keeps
// the peer name it was created with for the engine and the trust book.
func (o *otrState) refold(cm casemapping) {
	peers := make(map[string]*otrPeer, len(o.peers))
	for _, p := range o.peers {
		p.key = cm.fold(p.nick)
		peers[p.key] = p
	}
	o.peers = peers
	pols := make(map[string]otrcore.Policy, len(o.policies))
	for k, v := range o.policies {
		pols[cm.fold(k)] = v
	}
	o.policies = pols
}

// fragSize is the OTR fragment size for messages to nick.
func (n *network) fragSize(nick string) int {
	if k, err := strconv.Atoi(n.setting("fragment_size")); err == nil && k > 0 {
		return k
	}
	return fragmentSize(n.nick, n.user, n.host, nick)
}

// encryptsTo reports whether a private message to nick would travel
// encrypted (or wait for encryption) rather than in clear.
func (n *network) encryptsTo(nick string) bool {
	if n.ignoredBy(nick) != "" {
		return false
	}
	if p := n.lookupPeer(nick); p != nil {
		if st := p.conv.Status(); st.State != otrcore.StatePlaintext || peerEncrypted(st) {
			return true
		}
	}
	return n.effectivePolicy(nick)&otrcore.RequireEncryption != 0
}

// peer returns (creating) the conversation with nick.
func (n *network) peer(nick string) *otrPeer {
	key := n.casemap.fold(nick)
	p := n.otr.peers[key]
	if p == nil {
		if len(n.otr.peers) >= maxPeers {
			n.evictPeer()
		}
		p = &otrPeer{key: key, nick: nick}
		p.conv = otrcore.NewConversation(n.otr.acct, key, otrcore.Options{
			Policy:         n.effectivePolicy(nick),
			MaxMessageSize: n.fragSize(nick),
			QueryText:      n.nick + " has requested an Off-the-Record private conversation, but your client does not seem to support OTR.",
		})
		n.otr.peers[key] = p
	}
	p.nick = nick
	if p.prefix == nil || p.prefix.Name != nick {
		p.prefix = &irc.Prefix{Name: nick}
	}
	p.conv.SetMaxMessageSize(n.fragSize(nick))
	p.conv.SetPolicy(n.effectivePolicy(nick))
	return p
}

// maxPeers bounds the conversations kept per network: every nick that
// sends us a private message gets one.
const maxPeers = 20000

// evictPeer forgets one conversation that holds nothing worth keeping (no
// session, nothing queued).
func (n *network) evictPeer() {
	for key, p := range n.otr.peers {
		st := p.conv.Status()
		if st.State == otrcore.StatePlaintext && st.Held == 0 && !peerEncrypted(st) {
			delete(n.otr.peers, key)
			return
		}
	}
}

// lookupPeer finds an existing conversation. Like peer, it brings the
// conversation's policy up to date: policies depend on settings, the
// ignore list, the trust book and the configuration (which Reload
// changes), so they are recomputed whenever a conversation is used.
func (n *network) lookupPeer(nick string) *otrPeer {
	p := n.otr.peers[n.casemap.fold(nick)]
	if p != nil {
		p.conv.SetPolicy(n.effectivePolicy(p.nick))
	}
	return p
}

// policyFor is the policy a conversation with nick runs under.
func (n *network) policyFor(nick string) otrcore.Policy { return n.effectivePolicy(nick) }

// applyResult sends what the engine produced, one batch per OTR message,
// then reports its events. It returns the first send error.
func (n *network) applyResult(p *otrPeer, res otrcore.Result) error {
	return n.applyResultTags(p, res, nil)
}

// applyResultTags is applyResult with tags for the very first line.
func (n *network) applyResultTags(p *otrPeer, res otrcore.Result, tags irc.Tags) error {
	var sendErr error
	for b, frags := range res.Send {
		lines := make([]string, len(frags))
		for i, f := range frags {
			m := msg("", "PRIVMSG", p.nick, f)
			if b == 0 && i == 0 && len(tags) > 0 {
				m.Tags = tags
			}
			lines[i] = formatMessage(m)
		}
		if err := n.sendUpstreamBatch(lines); err != nil && sendErr == nil {
			sendErr = err
		}
	}
	for _, ev := range res.Events {
		n.otrEvent(p, ev)
	}
	if sendErr != nil {
		n.notifyPeer(p.nick, fmt.Sprintf("OTR data for %s could not be sent: %v", p.nick, sendErr))
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

// otrSend handles a private PRIVMSG typed by a client. ctags are the
// client-only tags it carried: they go along in clear only when the
// message does, or when client_tags is pass (on the first line).
func (n *network) otrSend(dc *downstream, target, text string, ctags irc.Tags) {
	p := n.peer(target)
	plaintext := text
	if a, ok := actionToOTR(text); ok {
		st := p.conv.Status()
		if st.State == otrcore.StatePlaintext && p.conv.Policy()&otrcore.RequireEncryption == 0 {
			// No session and none required: an action stays a CTCP ACTION.
			m := msg("", "PRIVMSG", target, text)
			m.Tags = n.tagsUpstream(ctags)
			if err := n.sendUpstreamBatch([]string{formatMessage(m)}); err != nil {
				n.notify(dc, fmt.Sprintf("[%s] your message was NOT sent: %v", target, err))
				return
			}
			n.echo(dc, "PRIVMSG", target, text, ctags)
			return
		}
		plaintext = a
	}
	tags := n.tagsUpstream(ctags)
	if n.encryptsTo(target) && n.setting("client_tags") != "pass" {
		tags = nil
	}
	res, err := p.conv.Send(n.now(), plaintext)
	sendErr := n.applyResultTags(p, res, tags)
	switch {
	case err != nil:
		if !hasEvent(res, otrcore.EventMessageRefused) {
			n.notify(dc, fmt.Sprintf("[%s] your message was NOT sent: %v", p.nick, err))
		}
		return
	case hasEvent(res, otrcore.EventMessageRefused) || sendErr != nil:
		return
	}
	n.echo(dc, "PRIVMSG", target, text, ctags)
}

// otrReceive handles a private PRIVMSG (not CTCP) from a peer; tags are
// the network's tags of the line.
func (n *network) otrReceive(from *irc.Prefix, text string, tags irc.Tags) {
	p := n.peer(from.Name)
	p.prefix = from.Copy()
	if k, count, ok := fragmentIndex(text); ok {
		if k == 1 {
			p.fragTags = tags
		}
		if k == count && p.fragTags != nil {
			tags, p.fragTags = p.fragTags, nil
		}
	}
	res, err := p.conv.Receive(n.now(), text)
	if err != nil {
		n.logger.Debug("OTR receive error", "err", err)
	}
	if res.HasText {
		switch {
		case res.Encrypted:
			body, action := fromOTRText(res.Text)
			n.deliver(p.prefix, body, action, tags)
		case hasEvent(res, otrcore.EventPlaintextInSession):
			n.deliver(p.prefix, n.marker()+" "+neutralize(res.Text), false, tags)
		default:
			n.deliver(p.prefix, res.Text, false, tags)
		}
	}
	n.applyResult(p, res)
}

// otrReceiveClearAction handles a CTCP ACTION that came in clear: marked
// when an encrypted session with that peer exists, passed on otherwise.
func (n *network) otrReceiveClearAction(m *irc.Message) {
	p := n.lookupPeer(m.Prefix.Name)
	if p == nil || p.conv.Status().State != otrcore.StateEncrypted {
		n.broadcast(m)
		return
	}
	p.prefix = m.Prefix.Copy()
	_, body, _ := parseCTCP(m.Params[1])
	n.deliver(p.prefix, n.marker()+" "+neutralize(body), true, m.Tags)
	n.notifyPeer(p.nick, fmt.Sprintf("the action from %s marked %q was NOT encrypted, although your private conversation is", p.nick, n.marker()))
}

// otrTick drives the engine's timers (heartbeats, AKE expiry).
func (n *network) otrTick() {
	now := n.now()
	for _, p := range n.otr.peers {
		if res := p.conv.Tick(now); len(res.Send) > 0 || len(res.Events) > 0 {
			n.applyResult(p, res)
		}
	}
}

// otrReconnected restarts the AKE with peers that have queued messages:
// whatever AKE was under way died with the old connection.
func (n *network) otrReconnected() {
	now := n.now()
	for _, p := range n.sortedPeers() {
		if st := p.conv.Status(); st.Held > 0 && st.State == otrcore.StatePlaintext {
			n.notifyPeer(p.nick, fmt.Sprintf("%d message(s) still queued; asking %s for a private conversation again", st.Held, p.nick))
			n.applyResult(p, p.conv.Start(now))
		}
	}
}

// otrShutdown tells encrypted peers we are leaving.
func (n *network) otrShutdown() {
	now := n.now()
	for _, p := range n.sortedPeers() {
		st := p.conv.Status()
		if st.Held > 0 {
			n.notifyPeer(p.nick, fmt.Sprintf("%d queued message(s) were NOT sent: otrbnc is shutting down", st.Held))
		}
		if peerEncrypted(st) {
			n.applyResult(p, p.conv.End(now))
		}
	}
}

func peerEncrypted(st otrcore.Status) bool {
	if st.State == otrcore.StateEncrypted {
		return true
	}
	for _, in := range st.Instances {
		if in.State == otrcore.StateEncrypted {
			return true
		}
	}
	return false
}

// otrAttach tells a new client about running sessions and pending SMP
// questions.
func (n *network) otrAttach(dc *downstream) {
	for _, p := range n.sortedPeers() {
		st := p.conv.Status()
		if st.State == otrcore.StateEncrypted {
			n.notify(dc, fmt.Sprintf("[%s] private conversation active (%s)", p.nick, trustWord(st.Trusted)))
		}
		if st.SMPAwaitingSecret {
			n.notify(dc, fmt.Sprintf("[%s] %s", p.nick, smpPrompt(p.nick, st.SMPQuestion, st.SMPHasQuestion)))
		}
		if st.Held > 0 {
			n.notify(dc, fmt.Sprintf("[%s] %d message(s) waiting for the private conversation", p.nick, st.Held))
		}
	}
}

func (n *network) sortedPeers() []*otrPeer {
	ps := make([]*otrPeer, 0, len(n.otr.peers))
	for _, p := range n.otr.peers {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].key < ps[j].key })
	return ps
}

func trustWord(trusted bool) string {
	if trusted {
		return "verified"
	}
	return "UNVERIFIED"
}

func smpPrompt(nick, q string, hasQ bool) string {
	if hasQ {
		return fmt.Sprintf("%s wants to verify your identity and asks: %q — answer with: /msg *otr auth %s <answer>", nick, neutralize(q), nick)
	}
	return fmt.Sprintf("%s wants to verify your identity with a shared secret — answer with: /msg *otr auth %s <secret>", nick, nick)
}

// otrEvent turns an engine event into service notices, trust updates and
// logs (never with message text).
func (n *network) otrEvent(p *otrPeer, ev otrcore.Event) {
	nick := p.nick
	now := n.now()
	n.logger.Debug("OTR event", "kind", ev.Kind.String())
	switch ev.Kind {
	case otrcore.EventGoneSecure:
		if ev.Refresh {
			n.notifyPeer(nick, "private conversation refreshed (new session keys)")
			return
		}
		n.notifyPeer(nick, fmt.Sprintf("private conversation with %s started (OTRv%d, %s). Their fingerprint: %s. Session id: %s",
			nick, ev.Version, trustWord(ev.Trusted), ev.Fingerprint, otrcore.SSIDString(ev.SSID, ev.WeSentRevealSig)))
		if !ev.Trusted {
			n.notifyPeer(nick, fmt.Sprintf("%s is not verified. Verify with a secret only you two know: /msg *otr auth %s <secret> — or compare fingerprints out of band (yours: %s, theirs: %s) and run: /msg *otr trust %s %s",
				nick, nick, n.otr.id.Key.Fingerprint(), ev.Fingerprint, nick, ev.Fingerprint))
		}
		n.refreshPolicies() // "policy known" may now apply
	case otrcore.EventGoneInsecure:
		n.notifyPeer(nick, "private conversation ended; messages now go in clear")
	case otrcore.EventPeerFinished:
		n.notifyPeer(nick, fmt.Sprintf("%s ended the private conversation. Your messages to them are now refused: run /msg *otr finish %s to talk in clear, or /msg *otr start %s to start again", nick, nick, nick))
	case otrcore.EventPlaintextInSession:
		n.notifyPeer(nick, fmt.Sprintf("the message from %s marked %q was NOT encrypted, although your private conversation is", nick, n.marker()))
	case otrcore.EventUnreadable:
		n.notifyPeer(nick, fmt.Sprintf("an encrypted message from %s could not be read", nick))
	case otrcore.EventMalformed:
		n.notifyPeer(nick, fmt.Sprintf("a malformed OTR message from %s was ignored", nick))
	case otrcore.EventNotInPrivate:
		n.notifyPeer(nick, fmt.Sprintf("%s sent an encrypted message but there is no private conversation; it could not be read", nick))
	case otrcore.EventMessageHeld:
		n.notifyPeer(nick, fmt.Sprintf("your message is queued until the private conversation with %s starts (policy %s); starting it now", nick, p.conv.Policy()))
	case otrcore.EventHeldSent:
		n.notifyPeer(nick, fmt.Sprintf("%d queued message(s) sent encrypted", ev.Count))
	case otrcore.EventHeldBlocked:
		n.notifyPeer(nick, fmt.Sprintf("%d queued message(s) were NOT sent: %s uses a key never seen before and not verified (%s). Check it, then /msg *otr release %s to send them, or /msg *otr discard %s",
			ev.Count, nick, ev.Fingerprint, nick, nick))
	case otrcore.EventMessageRefused:
		n.notifyPeer(nick, fmt.Sprintf("your message was NOT sent: %s", errText(ev.Err)))
	case otrcore.EventNewFingerprint:
		n.newFingerprint(p, ev.Fingerprint, now)
	case otrcore.EventPeerError:
		n.notifyPeer(nick, fmt.Sprintf("OTR error from %s: %s", nick, neutralize(ev.Message)))
	case otrcore.EventProtocolError:
		n.logger.Warn("OTR protocol problem", "err", ev.Err)
	case otrcore.EventSMPRequest:
		n.notifyPeer(nick, smpPrompt(nick, ev.Question, ev.HasQuestion))
	case otrcore.EventSMPSucceeded:
		if ev.Verified && n.otr.id.Trust != nil {
			if err := n.otr.id.Trust.SetTrust(ev.Fingerprint, keystore.TrustSMP, now); err != nil {
				n.logger.Error("could not record trust", "err", err)
				n.notifyPeer(nick, fmt.Sprintf("identity verified, but the trust could not be saved: %v", err))
				return
			}
			n.notifyPeer(nick, fmt.Sprintf("identity verified: fingerprint %s of %s is now trusted", ev.Fingerprint, nick))
			n.refreshPolicies()
		} else {
			n.notifyPeer(nick, fmt.Sprintf("%s verified your identity (they asked a question only you could answer). That does not verify them: ask your own with /msg *otr authq %s \"<question>\" <answer>", nick, nick))
		}
	case otrcore.EventSMPFailed:
		n.notifyPeer(nick, "identity verification FAILED: the secrets differ"+n.trustKept(ev.Fingerprint))
	case otrcore.EventSMPAborted:
		n.notifyPeer(nick, "identity verification aborted")
	case otrcore.EventSMPCheated:
		n.notifyPeer(nick, fmt.Sprintf("identity verification aborted: %s sent an invalid message (%s)", nick, errText(ev.Err))+n.trustKept(ev.Fingerprint))
	case otrcore.EventQueryReceived:
		n.notifyPeer(nick, fmt.Sprintf("%s asks for a private conversation; your policy (%s) does not start one by itself: /msg *otr start %s", nick, p.conv.Policy(), nick))
	}
}

// trustKept explains, after a failed verification, that an earlier
// verification of fp still stands: a failed SMP never revokes trust.
func (n *network) trustKept(fp otrcore.Fingerprint) string {
	if n.otr.id.Trust == nil {
		return ""
	}
	info, ok := n.otr.id.Trust.Lookup(fp)
	if !ok || info.Trust == keystore.TrustNone {
		return ""
	}
	return fmt.Sprintf(". The key stays verified (%s) as before; if you now doubt it, run /msg *otr distrust %s", trustLevelWord(info.Trust), fp)
}

// newFingerprint records a key the peer presented and warns when the nick
// had other keys before, or the key was seen under other nicks.
func (n *network) newFingerprint(p *otrPeer, fp otrcore.Fingerprint, now time.Time) {
	nick := p.nick
	if n.otr.id.Trust == nil {
		n.notifyPeer(nick, fmt.Sprintf("new fingerprint for %s: %s", nick, fp))
		return
	}
	seen, err := n.otr.id.Trust.SeenFingerprint(p.key, fp, now)
	if err != nil {
		n.logger.Error("could not record a fingerprint", "err", err)
		n.notifyPeer(nick, fmt.Sprintf("new fingerprint for %s: %s (it could not be saved: %v)", nick, fp, err))
		return
	}
	switch {
	case seen.NewForPeer && len(seen.OtherFingerprints) > 0:
		var olds []string
		for _, o := range seen.OtherFingerprints {
			w := "unverified"
			if info, ok := n.otr.id.Trust.Lookup(o); ok && info.Trust != keystore.TrustNone {
				w = "verified"
			}
			olds = append(olds, fmt.Sprintf("%s (%s)", o, w))
		}
		n.notifyPeer(nick, fmt.Sprintf("WARNING: %s now uses a DIFFERENT key: %s. Before, %s used: %s. Someone else may be using the nick; verify before trusting.",
			nick, fp, nick, strings.Join(olds, ", ")))
	default:
		n.notifyPeer(nick, fmt.Sprintf("new fingerprint for %s: %s", nick, fp))
	}
	if len(seen.OtherNicks) > 0 {
		w := "not verified"
		if seen.Trust != keystore.TrustNone {
			w = "verified (" + trustLevelWord(seen.Trust) + ")"
		}
		n.notifyPeer(nick, fmt.Sprintf("note: this key was seen before under the nick(s) %s; it is %s. Trust belongs to the key, whatever the nick.",
			strings.Join(seen.OtherNicks, ", "), w))
	}
}

// trustLevelWord describes how a key was verified.
func trustLevelWord(t keystore.TrustLevel) string {
	switch t {
	case keystore.TrustManual:
		return "by fingerprint"
	case keystore.TrustSMP:
		return "by shared secret"
	}
	return "not verified"
}

// otrNickChange moves a conversation to a peer's new nick: the session
// (and the peer's OTR context, which is keyed by our nick) goes on.
func (n *network) otrNickChange(oldNick, newNick string) {
	if newNick == "" {
		return
	}
	oldKey, newKey := n.casemap.fold(oldNick), n.casemap.fold(newNick)
	p := n.otr.peers[oldKey]
	if p == nil || oldKey == newKey {
		if p != nil {
			p.nick = newNick
		}
		return
	}
	if q := n.otr.peers[newKey]; q != nil {
		if st := q.conv.Status(); st.State != otrcore.StatePlaintext || st.Held > 0 {
			return // the new nick has a conversation of its own
		}
	}
	delete(n.otr.peers, oldKey)
	p.key, p.nick = newKey, newNick
	p.conv.SetPeer(newKey)
	if p.prefix != nil {
		p.prefix = &irc.Prefix{Name: newNick, User: p.prefix.User, Host: p.prefix.Host}
	}
	p.fragTags = nil
	n.otr.peers[newKey] = p
	p.conv.SetPolicy(n.effectivePolicy(newNick))
	if st := p.conv.Status(); st.State != otrcore.StatePlaintext {
		n.notifyPeer(newNick, fmt.Sprintf("%s is now known as %s; the private conversation follows the nick", oldNick, newNick))
	}
}

func errText(err error) string {
	if err == nil {
		return "unknown reason"
	}
	return strings.TrimPrefix(err.Error(), "otrcore: ")
}
