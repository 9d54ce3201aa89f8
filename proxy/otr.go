package proxy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"gopkg.in/irc.v4"

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

func (n *network) policyFor(key string) otrcore.Policy {
	if p, ok := n.otr.policies[key]; ok {
		return p
	}
	return n.otr.policy
}

// fragSize is the OTR fragment size for messages to nick.
func (n *network) fragSize(nick string) int {
	if n.cfg.FragmentSize > 0 {
		return n.cfg.FragmentSize
	}
	return fragmentSize(n.nick, n.user, n.host, nick)
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
			Policy:         n.policyFor(key),
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

// lookupPeer finds an existing conversation.
func (n *network) lookupPeer(nick string) *otrPeer { return n.otr.peers[n.casemap.fold(nick)] }

// applyResult sends what the engine produced, one batch per OTR message,
// then reports its events. It returns the first send error.
func (n *network) applyResult(p *otrPeer, res otrcore.Result) error {
	var sendErr error
	for _, frags := range res.Send {
		lines := make([]string, len(frags))
		for i, f := range frags {
			lines[i] = formatMessage(msg("", "PRIVMSG", p.nick, f))
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

// otrSend handles a private PRIVMSG typed by a client.
func (n *network) otrSend(dc *downstream, target, text string) {
	p := n.peer(target)
	plaintext := text
	if a, ok := actionToOTR(text); ok {
		st := p.conv.Status()
		if st.State == otrcore.StatePlaintext && p.conv.Policy()&otrcore.RequireEncryption == 0 {
			// No session and none required: an action stays a CTCP ACTION.
			if err := n.sendUpstreamBatch([]string{formatMessage(msg("", "PRIVMSG", target, text))}); err != nil {
				n.notify(dc, fmt.Sprintf("[%s] your message was NOT sent: %v", target, err))
				return
			}
			n.echo(dc, "PRIVMSG", target, text)
			return
		}
		plaintext = a
	}
	res, err := p.conv.Send(n.now(), plaintext)
	sendErr := n.applyResult(p, res)
	switch {
	case err != nil:
		if !hasEvent(res, otrcore.EventMessageRefused) {
			n.notify(dc, fmt.Sprintf("[%s] your message was NOT sent: %v", p.nick, err))
		}
		return
	case hasEvent(res, otrcore.EventMessageRefused) || sendErr != nil:
		return
	}
	n.echo(dc, "PRIVMSG", target, text)
}

// otrReceive handles a private PRIVMSG (not CTCP) from a peer.
func (n *network) otrReceive(from *irc.Prefix, text string) {
	p := n.peer(from.Name)
	p.prefix = from.Copy()
	res, err := p.conv.Receive(n.now(), text)
	if err != nil {
		n.logger.Debug("OTR receive error", "err", err)
	}
	if res.HasText {
		switch {
		case res.Encrypted:
			body, action := fromOTRText(res.Text)
			n.deliver(p.prefix, body, action)
		case hasEvent(res, otrcore.EventPlaintextInSession):
			n.deliver(p.prefix, n.cfg.PlaintextMarker+" "+neutralize(res.Text), false)
		default:
			n.deliver(p.prefix, res.Text, false)
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
	n.deliver(p.prefix, n.cfg.PlaintextMarker+" "+neutralize(body), true)
	n.notifyPeer(p.nick, fmt.Sprintf("the action from %s marked %q was NOT encrypted, although your private conversation is", p.nick, n.cfg.PlaintextMarker))
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
			n.notifyPeer(nick, "private conversation refreshed")
			return
		}
		n.notifyPeer(nick, fmt.Sprintf("private conversation with %s started (OTRv%d, %s). Their fingerprint: %s. Session id: %s",
			nick, ev.Version, trustWord(ev.Trusted), ev.Fingerprint, otrcore.SSIDString(ev.SSID, ev.WeSentRevealSig)))
		if !ev.Trusted {
			n.notifyPeer(nick, fmt.Sprintf("verify it with a secret only you two know: /msg *otr auth %s <secret> — or compare fingerprints out of band and run: /msg *otr trust %s <fingerprint>", nick, nick))
		}
	case otrcore.EventGoneInsecure:
		n.notifyPeer(nick, "private conversation ended; messages now go in clear")
	case otrcore.EventPeerFinished:
		n.notifyPeer(nick, fmt.Sprintf("%s ended the private conversation. Your messages to them are now refused: run /msg *otr finish %s to talk in clear, or /msg *otr start %s to start again", nick, nick, nick))
	case otrcore.EventPlaintextInSession:
		n.notifyPeer(nick, fmt.Sprintf("the message from %s marked %q was NOT encrypted, although your private conversation is", nick, n.cfg.PlaintextMarker))
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
		if n.otr.id.Trust != nil {
			if err := n.otr.id.Trust.Seen(p.key, ev.Fingerprint, now); err != nil {
				n.logger.Error("could not record a fingerprint", "err", err)
			}
		}
		n.notifyPeer(nick, fmt.Sprintf("new fingerprint for %s: %s", nick, ev.Fingerprint))
	case otrcore.EventPeerError:
		n.notifyPeer(nick, fmt.Sprintf("OTR error from %s: %s", nick, neutralize(ev.Message)))
	case otrcore.EventProtocolError:
		n.logger.Warn("OTR protocol problem", "err", ev.Err)
	case otrcore.EventSMPRequest:
		n.notifyPeer(nick, smpPrompt(nick, ev.Question, ev.HasQuestion))
	case otrcore.EventSMPSucceeded:
		if ev.Verified && n.otr.id.Trust != nil {
			if err := n.otr.id.Trust.SetTrusted(ev.Fingerprint, true, true, now); err != nil {
				n.logger.Error("could not record trust", "err", err)
			}
			n.notifyPeer(nick, fmt.Sprintf("identity verified: fingerprint %s is now trusted", ev.Fingerprint))
		} else {
			n.notifyPeer(nick, fmt.Sprintf("%s verified your identity; verify theirs too with /msg *otr auth %s <secret>", nick, nick))
		}
	case otrcore.EventSMPFailed:
		n.notifyPeer(nick, "identity verification FAILED: the secrets differ")
	case otrcore.EventSMPAborted:
		n.notifyPeer(nick, "identity verification aborted")
	case otrcore.EventSMPCheated:
		n.notifyPeer(nick, fmt.Sprintf("identity verification aborted: %s sent an invalid message (%s)", nick, errText(ev.Err)))
	case otrcore.EventQueryReceived:
		n.notifyPeer(nick, fmt.Sprintf("%s asks for a private conversation; your policy (%s) does not start one by itself: /msg *otr start %s", nick, p.conv.Policy(), nick))
	}
}

func errText(err error) string {
	if err == nil {
		return "unknown reason"
	}
	return strings.TrimPrefix(err.Error(), "otrcore: ")
}

// otrCommands are the OTR rows of the service table.
func otrCommands() []serviceCommand {
	return []serviceCommand{
		{name: "start", aliases: []string{"init", "connect"}, usage: "start <nick>", help: "start (or refresh) a private conversation", minArgs: 1, maxArgs: 1, run: cmdStart},
		{name: "finish", aliases: []string{"end", "disconnect"}, usage: "finish <nick>", help: "end the private conversation", minArgs: 1, maxArgs: 1, run: cmdFinish},
		{name: "status", aliases: []string{"info"}, usage: "status [nick]", help: "show private conversations", maxArgs: 1, run: cmdStatus},
		{name: "fingerprint", usage: "fingerprint [nick|me]", help: "show our fingerprint or a peer's", maxArgs: 1, run: cmdFingerprint},
		{name: "trust", usage: "trust <nick> <fingerprint>", help: "mark a fingerprint verified (type it in full)", minArgs: 2, maxArgs: -1, run: cmdTrust},
		{name: "auth", aliases: []string{"smp"}, usage: "auth <nick> <secret>", help: "verify a peer with a shared secret (starts SMP or answers theirs)", minArgs: 2, maxArgs: -1, run: cmdAuth},
		{name: "authq", aliases: []string{"smpq", "ask"}, usage: "authq <nick> \"<question>\" <secret>", help: "verify a peer with a question and its answer", minArgs: 3, maxArgs: -1, run: cmdAuthQ},
		{name: "authabort", aliases: []string{"smpabort"}, usage: "authabort <nick>", help: "abort identity verification", minArgs: 1, maxArgs: 1, run: cmdAuthAbort},
		{name: "policy", usage: "policy [nick|default] [never|manual|opportunistic|always]", help: "show or set the OTR policy (not saved across restarts)", maxArgs: 2, run: cmdPolicy},
		{name: "release", usage: "release <nick>", help: "send queued messages to a peer whose key is new", minArgs: 1, maxArgs: 1, run: cmdRelease},
		{name: "discard", usage: "discard <nick>", help: "drop queued messages", minArgs: 1, maxArgs: 1, run: cmdDiscard},
	}
}

func (n *network) requireUp() error {
	if n.up == nil {
		return fmt.Errorf("%s is not connected", n.cfg.Name)
	}
	return nil
}

func validPeerNick(n *network, nick string) error {
	if nick == "" || isChannel(nick, n.chantypes) || strings.ContainsAny(nick, " ,*?!@") {
		return fmt.Errorf("%q is not a nick", nick)
	}
	return nil
}

func cmdStart(n *network, dc *downstream, args []string) error {
	if err := validPeerNick(n, args[0]); err != nil {
		return err
	}
	if err := n.requireUp(); err != nil {
		return err
	}
	p := n.peer(args[0])
	res := p.conv.Start(n.now())
	if hasEvent(res, otrcore.EventMessageRefused) {
		return fmt.Errorf("OTR is disabled for %s (policy %s); change it with: policy %s manual", p.nick, p.conv.Policy(), p.nick)
	}
	n.notify(dc, fmt.Sprintf("[%s] asking %s for a private conversation…", p.nick, p.nick))
	return n.applyResult(p, res)
}

func cmdFinish(n *network, dc *downstream, args []string) error {
	p := n.lookupPeer(args[0])
	if p == nil {
		return fmt.Errorf("no conversation with %s", args[0])
	}
	if err := n.requireUp(); err != nil && peerEncrypted(p.conv.Status()) {
		return err
	}
	res := p.conv.End(n.now())
	if len(res.Events) == 0 {
		n.notify(dc, fmt.Sprintf("[%s] no private conversation to end", p.nick))
	}
	return n.applyResult(p, res)
}

func stateWord(st otrcore.Status) string {
	switch st.State {
	case otrcore.StateEncrypted:
		return fmt.Sprintf("encrypted OTRv%d, %s", st.Version, trustWord(st.Trusted))
	case otrcore.StateFinished:
		return "finished by the peer (messages refused until finish/start)"
	}
	return "plaintext"
}

func cmdStatus(n *network, dc *downstream, args []string) error {
	if len(args) == 0 {
		n.notify(dc, fmt.Sprintf("network %s: %s, nick %s, default policy %s, fragment size %s",
			n.cfg.Name, map[bool]string{true: "connected", false: "not connected"}[n.up != nil], n.nick, n.otr.policy, fragDesc(n)))
		ps := n.sortedPeers()
		if len(ps) == 0 {
			n.notify(dc, "no private conversations")
		}
		for _, p := range ps {
			st := p.conv.Status()
			line := fmt.Sprintf("[%s] %s, policy %s", p.nick, stateWord(st), p.conv.Policy())
			if st.Held > 0 {
				line += fmt.Sprintf(", %d queued", st.Held)
			}
			n.notify(dc, line)
		}
		return nil
	}
	p := n.lookupPeer(args[0])
	if p == nil {
		n.notify(dc, fmt.Sprintf("[%s] no conversation; policy %s", args[0], n.policyFor(n.casemap.fold(args[0]))))
		return nil
	}
	st := p.conv.Status()
	n.notify(dc, fmt.Sprintf("[%s] %s, policy %s, fragment size %d", p.nick, stateWord(st), p.conv.Policy(), n.fragSize(p.nick)))
	if st.HasFingerprint {
		n.notify(dc, fmt.Sprintf("[%s] fingerprint %s, session id %s", p.nick, st.Fingerprint, otrcore.SSIDString(st.SSID, st.WeSentRevealSig)))
	}
	if st.SMPAwaitingSecret {
		n.notify(dc, fmt.Sprintf("[%s] %s", p.nick, smpPrompt(p.nick, st.SMPQuestion, st.SMPHasQuestion)))
	} else if st.SMPInProgress {
		n.notify(dc, fmt.Sprintf("[%s] identity verification in progress", p.nick))
	}
	if st.Held > 0 {
		n.notify(dc, fmt.Sprintf("[%s] %d message(s) queued", p.nick, st.Held))
	}
	for _, in := range st.Instances {
		n.notify(dc, fmt.Sprintf("[%s] instance %08x: %s (v%d)", p.nick, in.Instance, in.State, in.Version))
	}
	return nil
}

func fragDesc(n *network) string {
	if n.cfg.FragmentSize > 0 {
		return fmt.Sprintf("%d (configured)", n.cfg.FragmentSize)
	}
	if n.host == "" {
		return "automatic (our host is not known yet)"
	}
	return fmt.Sprintf("automatic from %s", n.selfPrefix())
}

func cmdFingerprint(n *network, dc *downstream, args []string) error {
	if len(args) == 0 || strings.EqualFold(args[0], "me") {
		n.notify(dc, fmt.Sprintf("our fingerprint on %s: %s", n.cfg.Name, n.otr.id.Key.Fingerprint()))
		return nil
	}
	key := n.casemap.fold(args[0])
	var active [20]byte
	hasActive := false
	if p := n.lookupPeer(args[0]); p != nil {
		if st := p.conv.Status(); st.HasFingerprint {
			active, hasActive = st.Fingerprint, true
		}
	}
	var fps [][20]byte
	if n.otr.id.Trust != nil {
		fps = n.otr.id.Trust.KnownFingerprints(key)
	}
	if hasActive && !containsFP(fps, active) {
		fps = append(fps, active)
	}
	if len(fps) == 0 {
		n.notify(dc, fmt.Sprintf("[%s] no fingerprint known", args[0]))
		return nil
	}
	for _, fp := range fps {
		line := fmt.Sprintf("[%s] %s %s", args[0], otrcore.Fingerprint(fp), trustWord(n.otr.id.Trust != nil && n.otr.id.Trust.IsTrusted(key, fp)))
		if hasActive && fp == active {
			line += " (current session)"
		}
		n.notify(dc, line)
	}
	return nil
}

func containsFP(list [][20]byte, fp [20]byte) bool {
	for _, x := range list {
		if x == fp {
			return true
		}
	}
	return false
}

func cmdTrust(n *network, dc *downstream, args []string) error {
	fp, err := otrcore.ParseFingerprint(strings.Join(args[1:], ""))
	if err != nil {
		return fmt.Errorf("give the full fingerprint (40 hex digits, spaces allowed): %w", err)
	}
	if n.otr.id.Trust == nil {
		return errors.New("no trust store")
	}
	key := n.casemap.fold(args[0])
	if err := n.otr.id.Trust.Seen(key, fp, n.now()); err != nil {
		return err
	}
	if err := n.otr.id.Trust.SetTrusted(fp, true, false, n.now()); err != nil {
		return err
	}
	n.notify(dc, fmt.Sprintf("[%s] fingerprint %s is now trusted", args[0], fp))
	return nil
}

func encryptedPeer(n *network, nick string) (*otrPeer, error) {
	p := n.lookupPeer(nick)
	if p == nil || p.conv.Status().State != otrcore.StateEncrypted {
		return nil, fmt.Errorf("no private conversation with %s; start one first: start %s", nick, nick)
	}
	if err := n.requireUp(); err != nil {
		return nil, err
	}
	return p, nil
}

func cmdAuth(n *network, dc *downstream, args []string) error {
	p, err := encryptedPeer(n, args[0])
	if err != nil {
		return err
	}
	secret := strings.Join(args[1:], " ")
	var res otrcore.Result
	if p.conv.Status().SMPAwaitingSecret {
		res, err = p.conv.RespondSMP(n.now(), secret)
	} else {
		res, err = p.conv.StartSMP(n.now(), "", false, secret)
	}
	if err != nil {
		return fmt.Errorf("verification: %s", errText(err))
	}
	n.notify(dc, fmt.Sprintf("[%s] identity verification under way…", p.nick))
	return n.applyResult(p, res)
}

func cmdAuthQ(n *network, dc *downstream, args []string) error {
	p, err := encryptedPeer(n, args[0])
	if err != nil {
		return err
	}
	res, err := p.conv.StartSMP(n.now(), args[1], true, strings.Join(args[2:], " "))
	if err != nil {
		return fmt.Errorf("verification: %s", errText(err))
	}
	n.notify(dc, fmt.Sprintf("[%s] question sent; waiting for %s's answer…", p.nick, p.nick))
	return n.applyResult(p, res)
}

func cmdAuthAbort(n *network, dc *downstream, args []string) error {
	p, err := encryptedPeer(n, args[0])
	if err != nil {
		return err
	}
	res, err := p.conv.AbortSMP(n.now())
	if err != nil {
		return fmt.Errorf("abort: %s", errText(err))
	}
	return n.applyResult(p, res)
}

func cmdPolicy(n *network, dc *downstream, args []string) error {
	switch len(args) {
	case 0:
		n.notify(dc, fmt.Sprintf("default policy: %s", n.otr.policy))
		keys := make([]string, 0, len(n.otr.policies))
		for k := range n.otr.policies {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.notify(dc, fmt.Sprintf("  %s: %s", k, n.otr.policies[k]))
		}
		return nil
	case 1:
		if strings.EqualFold(args[0], "default") {
			n.notify(dc, fmt.Sprintf("default policy: %s", n.otr.policy))
		} else {
			n.notify(dc, fmt.Sprintf("[%s] policy %s", args[0], n.policyFor(n.casemap.fold(args[0]))))
		}
		return nil
	}
	pol, err := otrcore.ParsePolicy(args[1])
	if err != nil {
		return errors.New("policy must be never, manual, opportunistic or always")
	}
	if strings.EqualFold(args[0], "default") {
		n.otr.policy = pol
		for key, p := range n.otr.peers {
			if _, ok := n.otr.policies[key]; !ok {
				p.conv.SetPolicy(pol)
			}
		}
		n.notify(dc, fmt.Sprintf("default policy is now %s", pol))
		return nil
	}
	if err := validPeerNick(n, args[0]); err != nil {
		return err
	}
	key := n.casemap.fold(args[0])
	n.otr.policies[key] = pol
	if p := n.otr.peers[key]; p != nil {
		p.conv.SetPolicy(pol)
	}
	n.notify(dc, fmt.Sprintf("[%s] policy is now %s", args[0], pol))
	return nil
}

func cmdRelease(n *network, dc *downstream, args []string) error {
	p := n.lookupPeer(args[0])
	if p == nil {
		return fmt.Errorf("no conversation with %s", args[0])
	}
	if err := n.requireUp(); err != nil {
		return err
	}
	res, err := p.conv.ReleaseHeld(n.now())
	if err != nil {
		return fmt.Errorf("release: %s", errText(err))
	}
	return n.applyResult(p, res)
}

func cmdDiscard(n *network, dc *downstream, args []string) error {
	p := n.lookupPeer(args[0])
	if p == nil {
		return fmt.Errorf("no conversation with %s", args[0])
	}
	n.notify(dc, fmt.Sprintf("[%s] %d queued message(s) discarded", p.nick, p.conv.DiscardHeld()))
	return nil
}
