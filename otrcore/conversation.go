package otrcore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Timers and bounds of a conversation. Times come from the caller.
const (
	// heartbeatInterval: after receiving a data message, if we have not
	// sent one for this long, we send an empty one so keys rotate and old
	// MAC keys get revealed.
	heartbeatInterval = 60 * time.Second
	// akeTimeout: an unfinished AKE's secrets are forgotten after this.
	akeTimeout = 60 * time.Second
	// resendWindow: after an OTR error, our last message is offered again
	// to a re-established session if it was sent this recently.
	resendWindow = 60 * time.Second
	// errorInterval: we send at most one OTR error message per peer per
	// interval, so two implementations cannot loop on errors.
	errorInterval = 10 * time.Second
	// queryInterval: while an AKE we asked for is pending, further held
	// messages do not send further queries more often than this.
	queryInterval = 10 * time.Second
	// maxHeld and maxHeldBytes bound the messages held for encryption.
	maxHeld      = 32
	maxHeldBytes = 64 * 1024
	// maxInstances bounds the remote instances tracked for one peer; a
	// hostile peer inventing tags cannot grow memory beyond it.
	maxInstances = 8
	// defaultErrorText is sent in OTR error messages.
	defaultErrorText = "Your message could not be decrypted by the recipient."
	// maxMessageText bounds one encrypted message, so that its encoding
	// stays well inside what receivers reassemble (64 KiB here).
	maxMessageText = 32 * 1024
	// maxSMPQuestion bounds the SMP question so that TLV 7 (question,
	// NUL, six 1536-bit MPIs) fits its 16-bit length.
	maxSMPQuestion = 16 * 1024
	// resentPrefix marks a message sent again after a re-key.
	resentPrefix = "[resent] "
)

// instance is our state for one remote instance of the peer: the OTRv2 or
// untagged context (tag 0) or one OTRv3 instance tag.
type instance struct {
	tag      uint32
	version  uint16
	state    MsgState
	ake      *ake // nil unless an AKE is under way
	keys     *keyState
	hasFP    bool // fp is set: a session was established at least once
	fp       Fingerprint
	ssid     [8]byte
	revealer bool // we sent the Reveal Signature in the AKE
	smp      smpState
	frag     reassembler
	lastSent time.Time
	lastRecv time.Time
	lastUsed time.Time
	// recvSinceSent: a data message arrived after our last one, so the
	// peer is waiting for our next key (heartbeat candidate).
	recvSinceSent bool
}

// authState is the instance's AKE state (NONE when no AKE runs).
func (in *instance) authState() authState {
	if in.ake == nil {
		return authNone
	}
	return in.ake.state
}

// startingAKE returns the instance's AKE state, allocating it when an
// AKE begins; it is dropped again when the AKE ends.
func (in *instance) startingAKE() *ake {
	if in.ake == nil {
		in.ake = &ake{}
	}
	return in.ake
}

// dropAKE forgets the AKE state and its secrets.
func (in *instance) dropAKE() {
	in.ake.reset()
	in.ake = nil
}

// Conversation is the OTR state for one peer (on IRC, one nick) of one
// Account: a message state per remote instance, the AKE, the data-phase
// keys, SMP and fragment reassembly. It performs no I/O and reads no
// clock: every method takes the current time and returns what to send.
//
// A Conversation is not safe for concurrent use; the caller serialises
// calls (the proxy gives each network one owning goroutine).
type Conversation struct {
	acct *Account
	peer string
	opts Options
	gr   *group
	rand io.Reader

	master    *instance   // tag 0: OTRv2 and AKEs started before the peer's tag is known
	instances []*instance // OTRv3 instances, each with its own tag
	active    *instance   // where user messages go

	held      []string
	heldBytes int
	lastQuery time.Time

	// gotPlaintext: a plaintext message arrived since we last entered
	// PLAINTEXT, so we stop offering whitespace tags.
	gotPlaintext bool

	lastText     string
	lastTextAt   time.Time
	lastTextInst *instance
	resendArmed  bool

	lastError time.Time
	seenFPs   []Fingerprint
}

// NewConversation returns the conversation state for peer. acct must have
// a Key and a valid InstanceTag.
func NewConversation(acct *Account, peer string, opts Options) *Conversation {
	r := acct.Rand
	if r == nil {
		r = rand.Reader
	}
	c := &Conversation{acct: acct, peer: peer, opts: opts, gr: otrGroup(), rand: r}
	c.master = &instance{}
	return c
}

// Peer returns the peer name trust queries use.
func (c *Conversation) Peer() string { return c.peer }

// SetPeer renames the peer (on IRC, after a nick change): the sessions
// carry on, and trust and known-fingerprint queries use the new name.
func (c *Conversation) SetPeer(name string) { c.peer = name }

// SetPolicy changes the policy for future messages.
func (c *Conversation) SetPolicy(p Policy) { c.opts.Policy = p }

// Policy returns the current policy.
func (c *Conversation) Policy() Policy { return c.opts.Policy }

// SetMaxMessageSize changes the fragmentation limit (0 disables it).
func (c *Conversation) SetMaxMessageSize(n int) { c.opts.MaxMessageSize = n }

// enabled reports whether OTR is on at all for this peer: the policy
// allows a version, or a session set up earlier is still encrypted or
// finished (turning the policy off must not make it send in clear).
func (c *Conversation) enabled() bool {
	if c.opts.Policy.versions() != 0 {
		return true
	}
	for _, in := range c.all() {
		if in.state != StatePlaintext {
			return true
		}
	}
	return false
}

func (c *Conversation) env() akeEnv {
	return akeEnv{gr: c.gr, rand: c.rand, key: c.acct.Key}
}

func (r *Result) event(e Event) { r.Events = append(r.Events, e) }

// instanceFor finds or creates the state for a v3 instance tag; it
// returns nil when create is false and the tag is unknown, or when the
// instance table is full of encrypted sessions.
func (c *Conversation) instanceFor(tag uint32, create bool, now time.Time) *instance {
	for _, in := range c.instances {
		if in.tag == tag {
			in.lastUsed = now
			return in
		}
	}
	if !create {
		return nil
	}
	if len(c.instances) >= maxInstances {
		victim := -1
		for i, in := range c.instances {
			if in.state == StatePlaintext && in != c.active && (victim < 0 || in.lastUsed.Before(c.instances[victim].lastUsed)) {
				victim = i
			}
		}
		if victim < 0 {
			return nil
		}
		c.forgetInstance(c.instances[victim])
		c.instances = slices.Delete(c.instances, victim, victim+1)
	}
	in := &instance{tag: tag, lastUsed: now}
	c.instances = append(c.instances, in)
	return in
}

// forgetInstance wipes every secret of an instance.
func (c *Conversation) forgetInstance(in *instance) {
	in.dropAKE()
	in.keys.wipe()
	in.keys = nil
	in.smp.reset()
	in.frag.reset()
}

// all returns the master context followed by every v3 instance.
func (c *Conversation) all() []*instance {
	return append([]*instance{c.master}, c.instances...)
}

// sendTarget picks the instance user messages go to: the active one if it
// is not in plaintext, else the most recently used encrypted one.
func (c *Conversation) sendTarget() *instance {
	if c.active != nil && c.active.state != StatePlaintext {
		return c.active
	}
	var best *instance
	for _, in := range c.all() {
		if in.state == StateEncrypted && (best == nil || in.lastUsed.After(best.lastUsed)) {
			best = in
		}
	}
	return best
}

// emit encodes a binary OTR message for in and appends it, fragmented to
// the line limit, to the result.
func (c *Conversation) emit(res *Result, in *instance, version uint16, msg []byte) error {
	lines, err := fragmentMessage(encodeEnvelope(msg), c.opts.MaxMessageSize, version, c.acct.InstanceTag, in.tag)
	if err != nil {
		return fmt.Errorf("otrcore: fragmenting for %s: %w", c.peer, err)
	}
	res.Send = append(res.Send, lines)
	return nil
}

// header returns the message header for in with our and their tags.
func (c *Conversation) header(in *instance, version uint16, msgType byte) msgHeader {
	h := msgHeader{version: version, msgType: msgType}
	if version == protocolV3 {
		h.senderTag = c.acct.InstanceTag
		h.receiverTag = in.tag
	}
	return h
}

// sendQuery appends a query message to the result.
func (c *Conversation) sendQuery(res *Result, now time.Time) {
	res.Send = append(res.Send, []string{queryMessage(c.opts.Policy.versions(), c.opts.QueryText)})
	c.lastQuery = now
}

// sendError appends an OTR error message, at most one per errorInterval.
func (c *Conversation) sendError(res *Result, now time.Time) {
	if !c.lastError.IsZero() && now.Sub(c.lastError) < errorInterval {
		return
	}
	c.lastError = now
	text := c.opts.ErrorText
	if text == "" {
		text = defaultErrorText
	}
	res.Send = append(res.Send, []string{encodeError(text)})
}

// Start asks the peer for an encrypted session by sending a query
// message; in an encrypted session this refreshes the keys.
func (c *Conversation) Start(now time.Time) Result {
	var res Result
	if c.opts.Policy.versions() == 0 {
		res.event(Event{Kind: EventMessageRefused, Err: ErrPolicy})
		return res
	}
	c.sendQuery(&res, now)
	return res
}

// End ends the private conversation: encrypted instances are told with a
// TLV 1 "disconnected" message and every instance returns to PLAINTEXT.
func (c *Conversation) End(now time.Time) Result {
	var res Result
	for _, in := range c.all() {
		switch in.state {
		case StateEncrypted:
			if err := c.sendData(&res, in, now, "", []tlv{{typ: tlvDisconnected}}, flagIgnoreUnreadable); err != nil {
				res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: err})
			}
			c.toPlaintext(in)
			res.event(Event{Kind: EventGoneInsecure, Instance: in.tag, Version: int(in.version), Fingerprint: in.fp})
		case StateFinished:
			c.toPlaintext(in)
			res.event(Event{Kind: EventGoneInsecure, Instance: in.tag, Version: int(in.version), Fingerprint: in.fp})
		}
		in.dropAKE()
	}
	c.gotPlaintext = false
	c.resendArmed = false
	return res
}

// toPlaintext forgets an instance's session keys and SMP state.
func (c *Conversation) toPlaintext(in *instance) {
	in.keys.wipe()
	in.keys = nil
	in.smp.reset()
	in.state = StatePlaintext
}

// Send prepares a message the user typed. In an encrypted session it is
// encrypted; in PLAINTEXT it goes out in clear unless REQUIRE_ENCRYPTION
// is set, in which case it is held and a query is sent; in FINISHED it is
// refused with ErrFinished. Nothing is ever sent in clear when the policy
// or state forbids it.
func (c *Conversation) Send(now time.Time, text string) (Result, error) {
	var res Result
	if !c.enabled() {
		res.Send = append(res.Send, []string{text})
		return res, nil
	}
	in := c.sendTarget()
	if in != nil && in.state == StateFinished {
		res.event(Event{Kind: EventMessageRefused, Instance: in.tag, Err: ErrFinished})
		return res, ErrFinished
	}
	if len(text) > maxMessageText && (in != nil || c.opts.Policy.has(RequireEncryption)) {
		res.event(Event{Kind: EventMessageRefused, Err: ErrMessageTooLong})
		return res, ErrMessageTooLong
	}
	if in != nil && in.state == StateEncrypted {
		if err := c.sendData(&res, in, now, text, nil, 0); err != nil {
			res.event(Event{Kind: EventMessageRefused, Instance: in.tag, Err: err})
			return res, err
		}
		c.lastText, c.lastTextAt, c.lastTextInst = text, now, in
		return res, nil
	}
	if c.opts.Policy.has(RequireEncryption) {
		if len(c.held) >= maxHeld || c.heldBytes+len(text) > maxHeldBytes {
			res.event(Event{Kind: EventMessageRefused, Err: ErrQueueFull})
			return res, ErrQueueFull
		}
		c.held = append(c.held, text)
		c.heldBytes += len(text)
		res.event(Event{Kind: EventMessageHeld, Count: len(c.held)})
		if c.lastQuery.IsZero() || now.Sub(c.lastQuery) >= queryInterval || !c.akePending() {
			c.sendQuery(&res, now)
		}
		return res, nil
	}
	if c.opts.Policy.has(SendWhitespaceTag) && !c.gotPlaintext {
		// The tag goes first: servers strip trailing whitespace.
		text = whitespaceTag(c.opts.Policy.versions()) + text
	}
	res.Send = append(res.Send, []string{text})
	return res, nil
}

// akePending reports whether any instance is in the middle of an AKE.
func (c *Conversation) akePending() bool {
	for _, in := range c.all() {
		if in.ake.active() {
			return true
		}
	}
	return false
}

// sendData encrypts text and TLVs for in and appends the message.
func (c *Conversation) sendData(res *Result, in *instance, now time.Time, text string, tlvs []tlv, flags byte) error {
	var msg []byte
	var err error
	if len(tlvs) == 0 {
		msg, err = in.keys.sealData(c.header(in, in.version, msgData), flags, []byte(text))
	} else {
		plain := append([]byte(text), 0)
		for _, t := range tlvs {
			plain = appendTLV(plain, t)
		}
		msg, err = in.keys.sealData(c.header(in, in.version, msgData), flags, plain)
		wipe(plain)
	}
	if err != nil {
		return err
	}
	in.lastSent = now
	in.recvSinceSent = false
	return c.emit(res, in, in.version, msg)
}

// Receive processes one line received from the peer and returns what to
// show, what to send back and what happened. Malformed or hostile input
// produces events, never a panic; the returned error is reserved for
// local failures (such as the randomness source failing).
func (c *Conversation) Receive(now time.Time, line string) (Result, error) {
	var res Result
	if !c.enabled() {
		res.Text, res.HasText = line, true
		return res, nil
	}
	f, isFrag, err := parseFragment(line)
	if err != nil {
		res.event(Event{Kind: EventMalformed, Err: err})
		return res, nil
	}
	if isFrag {
		return res, c.receiveFragment(&res, now, f)
	}
	c.master.frag.reset()
	for _, in := range c.instances {
		in.frag.reset()
	}
	return res, c.receiveWhole(&res, now, line)
}

// receiveFragment feeds a fragment to its instance's reassembly buffer and
// processes the message once complete.
func (c *Conversation) receiveFragment(res *Result, now time.Time, f fragmentPiece) error {
	var in *instance
	switch f.version {
	case protocolV3:
		if !c.opts.Policy.has(AllowV3) || !c.tagsAcceptable(f.senderTag, f.receiverTag, true) {
			return nil
		}
		if in = c.instanceFor(f.senderTag, true, now); in == nil {
			return nil
		}
	case protocolV2:
		if !c.opts.Policy.has(AllowV2) {
			return nil
		}
		in = c.master
	default:
		return nil
	}
	msg, complete, err := in.frag.add(f)
	if err != nil {
		res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: err})
		return nil
	}
	if !complete {
		return nil
	}
	if _, isFrag, _ := parseFragment(msg); isFrag {
		res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: errors.New("otrcore: fragment inside a fragment")})
		return nil
	}
	if !strings.Contains(msg, "?OTR:") {
		res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: errors.New("otrcore: reassembled fragments are not an OTR message")})
		return nil
	}
	return c.receiveWhole(res, now, msg)
}

// tagsAcceptable applies the instance tag receive rules: the sender's tag
// is at least 0x100 and not ours (a reflected message), the receiver tag
// is ours, or 0 where allowZero.
func (c *Conversation) tagsAcceptable(sender, receiver uint32, allowZero bool) bool {
	if sender < 0x100 || sender == c.acct.InstanceTag {
		return false
	}
	if receiver == 0 {
		return allowZero
	}
	return receiver == c.acct.InstanceTag
}

// receiveWhole handles an unfragmented line.
func (c *Conversation) receiveWhole(res *Result, now time.Time, line string) error {
	if strings.Contains(line, "?OTR:") {
		return c.receiveEncoded(res, now, line)
	}
	if msg, ok := parseError(line); ok {
		res.event(Event{Kind: EventPeerError, Message: msg})
		if in := c.sendTarget(); in != nil && in.state == StateEncrypted && !c.lastTextAt.IsZero() && now.Sub(c.lastTextAt) < resendWindow {
			c.resendArmed = true
		}
		if c.opts.Policy.has(ErrorStartAKE) {
			c.sendQuery(res, now)
		}
		return nil
	}
	if versions, ok := parseQuery(line); ok {
		return c.receiveQuery(res, now, versions)
	}
	versions, text, tagged := findWhitespaceTag(line)
	res.Text, res.HasText = text, true
	c.gotPlaintext = true
	if in := c.sendTarget(); in != nil {
		res.event(Event{Kind: EventPlaintextInSession, Instance: in.tag})
	}
	if tagged && c.opts.Policy.has(WhitespaceStartAKE) {
		return c.startAKE(res, now, versions)
	}
	return nil
}

// receiveQuery answers a query message with a D-H Commit in the best
// version both sides allow.
func (c *Conversation) receiveQuery(res *Result, now time.Time, versions versionSet) error {
	if versions&c.opts.Policy.versions() == 0 {
		res.event(Event{Kind: EventQueryReceived})
		return nil
	}
	return c.startAKE(res, now, versions)
}

// startAKE sends a D-H Commit in the highest common version. A commit
// sent moments ago is repeated instead of starting over, so repeated
// queries cannot make us burn key generations.
func (c *Conversation) startAKE(res *Result, now time.Time, offered versionSet) error {
	common := offered & c.opts.Policy.versions()
	var v uint16
	switch {
	case common.has(protocolV3):
		v = protocolV3
	case common.has(protocolV2):
		v = protocolV2
	default:
		return nil
	}
	a := c.master.startingAKE()
	if a.state == authAwaitingDHKey && a.version == v && now.Sub(a.started) < queryInterval {
		a.commit.msgHeader = c.header(c.master, v, msgDHCommit)
		return c.emit(res, c.master, v, a.commit.marshal())
	}
	m, err := a.startCommit(c.env(), v, now)
	if err != nil {
		return err
	}
	m.msgHeader = c.header(c.master, v, msgDHCommit)
	return c.emit(res, c.master, v, m.marshal())
}

// receiveEncoded decodes a "?OTR:" message and dispatches it by type.
func (c *Conversation) receiveEncoded(res *Result, now time.Time, line string) error {
	payload, ok, err := findEnvelope(line)
	if err != nil || !ok {
		res.event(Event{Kind: EventMalformed, Err: fmt.Errorf("otrcore: undecodable OTR message: %w", err)})
		return nil
	}
	hdr, err := decodeMessageType(payload)
	if err != nil {
		res.event(Event{Kind: EventMalformed, Err: err})
		return nil
	}
	switch hdr.version {
	case protocolV2:
		if !c.opts.Policy.has(AllowV2) {
			return nil
		}
	case protocolV3:
		if !c.opts.Policy.has(AllowV3) {
			return nil
		}
	default:
		return nil
	}
	var in *instance
	if hdr.version == protocolV3 {
		if !c.tagsAcceptable(hdr.senderTag, hdr.receiverTag, hdr.msgType == msgDHCommit) {
			return nil
		}
		in = c.instanceFor(hdr.senderTag, hdr.msgType != msgData, now)
		if in == nil {
			if hdr.msgType == msgData {
				return c.notInPrivate(res, now, hdr.senderTag, payload)
			}
			return nil
		}
	} else {
		in = c.master
	}
	in.lastUsed = now
	res.Instance = in.tag
	switch hdr.msgType {
	case msgDHCommit:
		var m dhCommitMsg
		if err := m.unmarshal(payload); err != nil {
			res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: err})
			return nil
		}
		if in != c.master && in.authState() == authNone && c.master.authState() == authAwaitingDHKey && c.master.ake.version == m.version {
			// Our commit (sent before we knew this instance's tag) crossed
			// theirs: the collision rule compares the two hashes here.
			cl := c.master.ake.clone()
			in.ake = &cl
		}
		out, err := in.startingAKE().handleCommit(c.env(), &m, now)
		if err != nil {
			return err
		}
		return c.emitAKE(res, in, out)
	case msgDHKey:
		var m dhKeyMsg
		if err := m.unmarshal(payload); err != nil {
			res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: err})
			return nil
		}
		a := in.ake
		var trial *ake
		if in != c.master && in.authState() == authNone && c.master.authState() == authAwaitingDHKey && c.master.ake.version == m.version {
			// Our commit went out before we knew the peer's tag: this
			// instance answers it, so it continues from a copy of the
			// master's state, kept only if the D-H Key is accepted.
			cl := c.master.ake.clone()
			trial = &cl
			a = trial
		}
		if a == nil {
			return nil // NONE: a D-H Key is ignored
		}
		out, err := a.handleDHKey(c.env(), &m)
		if err != nil || out == nil {
			trial.reset()
			if err != nil {
				res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: err})
			}
			return nil
		}
		if trial != nil {
			in.ake = trial
		}
		return c.emitAKE(res, in, out)
	case msgRevealSig:
		var m revealSigMsg
		if err := m.unmarshal(payload); err != nil {
			res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: err})
			return nil
		}
		if in.ake == nil {
			return nil // NONE: ignored
		}
		out, result, err := in.ake.handleRevealSig(c.env(), &m)
		if err != nil {
			res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: err})
			return nil
		}
		if result == nil {
			return nil
		}
		if err := c.emitAKE(res, in, out); err != nil {
			return err
		}
		return c.goneSecure(res, in, now, result)
	case msgSignature:
		var m signatureMsg
		if err := m.unmarshal(payload); err != nil {
			res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: err})
			return nil
		}
		if in.ake == nil {
			return nil // NONE: ignored
		}
		result, err := in.ake.handleSig(c.env(), &m)
		if err != nil {
			res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: err})
			return nil
		}
		if result == nil {
			return nil
		}
		return c.goneSecure(res, in, now, result)
	case msgData:
		return c.receiveData(res, in, now, payload)
	}
	res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: fmt.Errorf("otrcore: unknown message type 0x%02x", hdr.msgType)})
	return nil
}

// emitAKE sends an AKE message with in's instance tags.
func (c *Conversation) emitAKE(res *Result, in *instance, out any) error {
	switch m := out.(type) {
	case *dhCommitMsg:
		m.msgHeader = c.header(in, m.version, msgDHCommit)
		return c.emit(res, in, m.version, m.marshal())
	case *dhKeyMsg:
		m.msgHeader = c.header(in, m.version, msgDHKey)
		return c.emit(res, in, m.version, m.marshal())
	case *revealSigMsg:
		m.msgHeader = c.header(in, m.version, msgRevealSig)
		return c.emit(res, in, m.version, m.marshal())
	case *signatureMsg:
		m.msgHeader = c.header(in, m.version, msgSignature)
		return c.emit(res, in, m.version, m.marshal())
	case nil:
		return nil
	}
	return fmt.Errorf("otrcore: internal error: unexpected AKE message %T", out)
}

// notInPrivate handles a data message for an instance without a session:
// the user is told, and unless the sender flagged it IGNORE_UNREADABLE
// the peer gets a (rate-limited) error so it can re-key.
func (c *Conversation) notInPrivate(res *Result, now time.Time, tag uint32, payload []byte) error {
	var m dataMsg
	if err := m.unmarshal(payload); err != nil {
		res.event(Event{Kind: EventMalformed, Instance: tag, Err: err})
		return nil
	}
	if m.flags&flagIgnoreUnreadable != 0 {
		return nil
	}
	res.event(Event{Kind: EventNotInPrivate, Instance: tag})
	c.sendError(res, now)
	return nil
}

// goneSecure installs the data-phase keys of a completed AKE and sends
// what was waiting for it.
func (c *Conversation) goneSecure(res *Result, in *instance, now time.Time, r *akeResult) error {
	fp := r.theirPub.fingerprint()
	refresh := in.state == StateEncrypted && in.fp == fp
	ks, err := newKeyState(c.gr, c.rand, r.ourKey, r.theirKeyID, r.theirY)
	if err != nil {
		r.ourKey.wipe()
		return err
	}
	if in != c.master && c.master.authState() == authAwaitingDHKey {
		// A commit we sent before knowing the peer's tag has been answered
		// (or superseded) by this session; its secret must not outlive it.
		c.master.dropAKE()
	}
	in.dropAKE() // finished: the AKE state returned to NONE
	in.keys.wipe()
	in.keys = ks
	in.smp.reset()
	in.version = r.version
	in.hasFP = true
	in.fp = fp
	in.ssid = r.ssid
	in.revealer = r.weSentRevealSig
	in.state = StateEncrypted
	in.lastRecv = now
	in.lastSent = now
	c.active = in

	trusted := c.acct.Trust != nil && c.acct.Trust.IsTrusted(c.peer, fp)
	known, others := c.fingerprintHistory(fp)
	if !known {
		res.event(Event{Kind: EventNewFingerprint, Instance: in.tag, Version: int(r.version), Fingerprint: fp, Trusted: trusted})
		c.seenFPs = append(c.seenFPs, fp)
	}
	res.event(Event{Kind: EventGoneSecure, Instance: in.tag, Version: int(r.version), Fingerprint: fp,
		SSID: r.ssid, WeSentRevealSig: r.weSentRevealSig, Trusted: trusted, Refresh: refresh})

	// Held and resent messages go only to a key seen before for this peer
	// (or, on first contact, to whoever answered) or to a trusted key.
	mayRelease := trusted || known || !others
	if len(c.held) > 0 {
		if !mayRelease {
			res.event(Event{Kind: EventHeldBlocked, Instance: in.tag, Fingerprint: fp, Count: len(c.held),
				Err: errors.New("otrcore: the peer's key is new and not trusted; held messages were not sent")})
		} else if err := c.flushHeld(res, in, now); err != nil {
			return err
		}
	}
	if c.resendArmed {
		c.resendArmed = false
		if mayRelease && now.Sub(c.lastTextAt) < resendWindow && c.lastTextInst != nil && c.lastTextInst.fp == fp {
			if err := c.sendData(res, in, now, resentPrefix+c.lastText, nil, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// fingerprintHistory reports whether fp was seen before for this peer and
// whether other fingerprints were.
func (c *Conversation) fingerprintHistory(fp Fingerprint) (known, others bool) {
	check := func(f [20]byte) {
		if f == fp {
			known = true
		} else {
			others = true
		}
	}
	for _, f := range c.seenFPs {
		check(f)
	}
	if c.acct.Trust != nil {
		for _, f := range c.acct.Trust.KnownFingerprints(c.peer) {
			check(f)
		}
	}
	return known, others
}

// flushHeld encrypts and sends every held message to in.
func (c *Conversation) flushHeld(res *Result, in *instance, now time.Time) error {
	n := len(c.held)
	for _, text := range c.held {
		if err := c.sendData(res, in, now, text, nil, 0); err != nil {
			return err
		}
		c.lastText, c.lastTextAt, c.lastTextInst = text, now, in
	}
	c.held, c.heldBytes = nil, 0
	res.event(Event{Kind: EventHeldSent, Instance: in.tag, Count: n})
	return nil
}

// ReleaseHeld sends the held messages to the current encrypted session
// even though its key was not seen before: the user has checked it.
func (c *Conversation) ReleaseHeld(now time.Time) (Result, error) {
	var res Result
	in := c.sendTarget()
	if in == nil || in.state != StateEncrypted {
		return res, ErrNotEncrypted
	}
	if len(c.held) == 0 {
		return res, nil
	}
	return res, c.flushHeld(&res, in, now)
}

// DiscardHeld drops the held messages and returns how many there were.
func (c *Conversation) DiscardHeld() int {
	n := len(c.held)
	for i := range c.held {
		c.held[i] = ""
	}
	c.held, c.heldBytes = nil, 0
	return n
}

// receiveData handles a data message for instance in.
func (c *Conversation) receiveData(res *Result, in *instance, now time.Time, payload []byte) error {
	var m dataMsg
	if err := m.unmarshal(payload); err != nil {
		res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: err})
		return nil
	}
	if in.state != StateEncrypted || m.version != in.version {
		if m.flags&flagIgnoreUnreadable == 0 {
			res.event(Event{Kind: EventNotInPrivate, Instance: in.tag})
			c.sendError(res, now)
		}
		return nil
	}
	plain, sk, err := in.keys.openData(c.rand, &m)
	if err != nil {
		if m.flags&flagIgnoreUnreadable == 0 {
			res.event(Event{Kind: EventUnreadable, Instance: in.tag, Err: err})
			c.sendError(res, now)
		}
		return nil
	}
	in.lastRecv = now
	in.recvSinceSent = true
	c.active = in
	text, tlvs, err := splitPlaintext(plain)
	if err != nil {
		res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: err})
	}
	if len(text) > 0 {
		res.Text, res.HasText, res.Encrypted = string(text), true, true
	}
	var smpOut []tlv
	for _, t := range tlvs {
		switch t.typ {
		case tlvDisconnected:
			c.toPlaintext(in)
			in.state = StateFinished
			res.event(Event{Kind: EventPeerFinished, Instance: in.tag, Version: int(in.version), Fingerprint: in.fp})
			return nil
		case tlvSMP1, tlvSMP2, tlvSMP3, tlvSMP4, tlvSMPAbort, tlvSMP1Q:
			out, ev := in.smp.receive(c.rand, t)
			smpOut = append(smpOut, out...)
			c.smpEvent(res, in, ev)
		case tlvExtraSymKey:
			if len(t.value) < 4 {
				res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: errors.New("otrcore: extra symmetric key TLV shorter than 4 bytes")})
				continue
			}
			res.event(Event{Kind: EventExtraKey, Instance: in.tag, ExtraKey: sk.extraKey,
				KeyUse:     uint32(t.value[0])<<24 | uint32(t.value[1])<<16 | uint32(t.value[2])<<8 | uint32(t.value[3]),
				KeyUseData: append([]byte(nil), t.value[4:]...)})
		}
	}
	if len(smpOut) > 0 {
		return c.sendData(res, in, now, "", smpOut, flagIgnoreUnreadable)
	}
	if len(text) > 0 && now.Sub(in.lastSent) >= heartbeatInterval {
		return c.sendData(res, in, now, "", nil, flagIgnoreUnreadable)
	}
	return nil
}

// smpEvent translates an SMP state machine event into a public Event.
func (c *Conversation) smpEvent(res *Result, in *instance, ev smpEvent) {
	e := Event{Instance: in.tag, Fingerprint: in.fp, Version: int(in.version)}
	switch ev.kind {
	case smpNone:
		return
	case smpRequest:
		e.Kind, e.Question, e.HasQuestion = EventSMPRequest, ev.question, ev.hasQuestion
	case smpInProgress:
		e.Kind = EventSMPProgress
	case smpSucceeded:
		e.Kind = EventSMPSucceeded
		e.Verified = ev.verified
	case smpFailed:
		e.Kind = EventSMPFailed
	case smpAborted:
		e.Kind = EventSMPAborted
	case smpCheated:
		e.Kind, e.Err = EventSMPCheated, ev.err
	default:
		return
	}
	res.event(e)
}

// smpTarget returns the encrypted instance SMP commands apply to.
func (c *Conversation) smpTarget() (*instance, error) {
	in := c.sendTarget()
	if in == nil || in.state != StateEncrypted {
		return nil, ErrNotEncrypted
	}
	return in, nil
}

// StartSMP starts the Socialist Millionaires' Protocol with the peer of
// the active encrypted session, optionally with a question. An exchange
// already running is aborted first.
func (c *Conversation) StartSMP(now time.Time, question string, hasQuestion bool, secret string) (Result, error) {
	var res Result
	in, err := c.smpTarget()
	if err != nil {
		return res, err
	}
	if len(question) > maxSMPQuestion {
		return res, fmt.Errorf("otrcore: SMP question longer than %d bytes", maxSMPQuestion)
	}
	var out []tlv
	if in.smp.inProgress() {
		out = append(out, in.smp.abort())
	}
	ours := c.acct.Key.Fingerprint()
	s := smpSecret(ours, in.fp, in.ssid, []byte(secret))
	t, err := in.smp.start(c.rand, s, question, hasQuestion)
	wipe(s)
	if err != nil {
		if len(out) > 0 {
			// The old exchange was reset on our side: tell the peer.
			if serr := c.sendData(&res, in, now, "", out, flagIgnoreUnreadable); serr != nil {
				return res, errors.Join(err, serr)
			}
		}
		return res, err
	}
	out = append(out, t)
	return res, c.sendData(&res, in, now, "", out, flagIgnoreUnreadable)
}

// RespondSMP answers the peer's SMP request with our secret.
func (c *Conversation) RespondSMP(now time.Time, secret string) (Result, error) {
	var res Result
	in, err := c.smpTarget()
	if err != nil {
		return res, err
	}
	if !in.smp.awaitingSecret() {
		return res, ErrNoSMPRequest
	}
	ours := c.acct.Key.Fingerprint()
	s := smpSecret(in.fp, ours, in.ssid, []byte(secret))
	t, err := in.smp.respond(c.rand, s)
	wipe(s)
	if err != nil {
		return res, err
	}
	return res, c.sendData(&res, in, now, "", []tlv{t}, flagIgnoreUnreadable)
}

// AbortSMP aborts a running SMP exchange and tells the peer.
func (c *Conversation) AbortSMP(now time.Time) (Result, error) {
	var res Result
	in, err := c.smpTarget()
	if err != nil {
		return res, err
	}
	t := in.smp.abort()
	res.event(Event{Kind: EventSMPAborted, Instance: in.tag, Fingerprint: in.fp})
	return res, c.sendData(&res, in, now, "", []tlv{t}, flagIgnoreUnreadable)
}

// SendExtraKey sends TLV 8 to the peer and returns the extra symmetric
// key it refers to (Protocol-v3.html, "Extra symmetric key"). use and
// useData tell the peer what the key is for.
func (c *Conversation) SendExtraKey(now time.Time, use uint32, useData []byte) ([32]byte, Result, error) {
	var res Result
	var key [32]byte
	in, err := c.smpTarget()
	if err != nil {
		return key, res, err
	}
	if in.version < protocolV3 {
		return key, res, errors.New("otrcore: the extra symmetric key needs OTR version 3")
	}
	if len(useData) > maxTLVValue-4 {
		return key, res, errors.New("otrcore: extra key use data too long")
	}
	sk, err := in.keys.sendingKeys()
	if err != nil {
		return key, res, err
	}
	key = sk.extraKey
	v := append([]byte{byte(use >> 24), byte(use >> 16), byte(use >> 8), byte(use)}, useData...)
	return key, res, c.sendData(&res, in, now, "", []tlv{{typ: tlvExtraSymKey, value: v}}, flagIgnoreUnreadable)
}

// Heartbeat sends an empty encrypted message to the active session, which
// rotates keys and reveals old MAC keys. It fails without a session.
func (c *Conversation) Heartbeat(now time.Time) (Result, error) {
	var res Result
	in, err := c.smpTarget()
	if err != nil {
		return res, err
	}
	return res, c.sendData(&res, in, now, "", nil, flagIgnoreUnreadable)
}

// Tick runs the conversation's timers: unfinished AKEs are forgotten
// after a minute, and a session that received since it last sent gets a
// heartbeat once a minute has passed, so old keys do not linger.
func (c *Conversation) Tick(now time.Time) Result {
	var res Result
	for _, in := range c.all() {
		if in.ake.active() && now.Sub(in.ake.started) >= akeTimeout {
			in.dropAKE()
		}
		if in.state == StateEncrypted && in.recvSinceSent && now.Sub(in.lastSent) >= heartbeatInterval {
			if err := c.sendData(&res, in, now, "", nil, flagIgnoreUnreadable); err != nil {
				res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: err})
			}
		}
	}
	if c.resendArmed && now.Sub(c.lastTextAt) >= resendWindow {
		c.resendArmed = false
	}
	return res
}

// Status summarises the conversation for display.
func (c *Conversation) Status() Status {
	st := Status{Held: len(c.held)}
	in := c.sendTarget()
	if in == nil {
		in = c.active
	}
	if in != nil {
		st.State = in.state
		st.Version = int(in.version)
		st.Instance = in.tag
		if in.hasFP {
			st.Fingerprint, st.HasFingerprint = in.fp, true
			st.Trusted = c.acct.Trust != nil && c.acct.Trust.IsTrusted(c.peer, in.fp)
		}
		st.SSID, st.WeSentRevealSig = in.ssid, in.revealer
		st.SMPInProgress = in.smp.inProgress()
		st.SMPAwaitingSecret = in.smp.awaitingSecret()
		st.SMPQuestion, st.SMPHasQuestion = in.smp.pendingQuestion()
	}
	for _, i := range c.all() {
		if i.state != StatePlaintext || i.ake.active() {
			st.Instances = append(st.Instances, InstanceStatus{Instance: i.tag, State: i.state, Version: int(i.version)})
		}
	}
	return st
}
