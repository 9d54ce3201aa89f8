package otrcore

import (
	"errors"
	"time"
)

// Receive processes one line received from the peer and returns what to
// show, what to send back and what happened. The line is parsed as
// Classify describes: only LinePlain lines come back as text
// (Result.HasText); every OTR protocol line is acted on or reported by an
// event, never shown, whatever the policy. Malformed or hostile input
// produces events, never a panic; the returned error is reserved for
// local failures (such as the randomness source failing).
func (c *Conversation) Receive(now time.Time, line string) (Result, error) {
	var res Result
	c.lastActivity = now
	var buf [recvStackSize]byte
	p, d := parseLine(line, buf[:])
	if p.info.Kind != LineFragment && !p.badFragment {
		// Any unfragmented message ends a reassembly in progress (spec
		// "Receiving Fragments", as libotr does); a malformed fragment is
		// discarded without touching it.
		c.resetFragments()
	}
	var err error
	switch p.info.Kind {
	case LinePlain:
		err = c.receivePlain(&res, now, &p)
	case LineQuery:
		err = c.receiveQuery(&res, now, p.info.offers)
	case LineError:
		err = c.receiveError(&res, now, p.text)
	case LineData, LineAKE:
		err = c.receiveMessage(&res, now, &p, &d)
	case LineFragment:
		err = c.receiveFragment(&res, now, p.piece, buf[:])
	case LineMalformed:
		c.reportMalformed(&res, 0, p.info.Err)
	}
	return res, err
}

// resetFragments forgets every reassembly in progress.
func (c *Conversation) resetFragments() {
	c.master.frag.reset()
	for _, in := range c.instances {
		in.frag.reset()
	}
}

// reportMalformed reports a line or reassembled message that could not
// be parsed: too large (with its size) or malformed.
func (c *Conversation) reportMalformed(res *Result, tag uint32, err error) {
	if errors.Is(err, ErrTooLarge) {
		res.event(Event{Kind: EventTooLarge, Instance: tag, Size: messageSize(err), Err: err})
		return
	}
	res.event(Event{Kind: EventMalformed, Instance: tag, Err: err})
}

// receivePlain shows plain text (without its whitespace tag) and, when the
// policy says so, answers a whitespace tag with a D-H Commit.
func (c *Conversation) receivePlain(res *Result, now time.Time, p *parsedLine) error {
	res.Text, res.HasText = p.text, true
	if !c.enabled() {
		return nil
	}
	c.gotPlaintext = true
	if in := c.anySession(); in != nil {
		res.event(Event{Kind: EventPlaintextInSession, Instance: in.tag})
	} else if c.opts.Policy.has(RequireEncryption) {
		res.event(Event{Kind: EventPlaintextWhileRequired})
	}
	if p.info.Tagged && c.opts.Policy.has(WhitespaceStartAKE) {
		return c.startAKE(res, now, p.info.offers)
	}
	return nil
}

// receiveError reports an OTR error message and, when the policy says
// so, answers it with a query; a message sent just before is armed for
// resending to the session that follows.
func (c *Conversation) receiveError(res *Result, now time.Time, msg string) error {
	res.event(Event{Kind: EventPeerError, Message: msg})
	if !c.enabled() {
		return nil
	}
	if _, err := c.inSession(); err == nil && !c.lastTextAt.IsZero() && now.Sub(c.lastTextAt) < resendWindow {
		c.resendArmed = true
	}
	if c.opts.Policy.has(ErrorStartAKE) {
		c.sendQuery(res, now)
	}
	return nil
}

// receiveQuery answers a query message with a D-H Commit in the best
// version both sides allow, or reports it when the policy allows none.
func (c *Conversation) receiveQuery(res *Result, now time.Time, versions versionSet) error {
	if versions&c.opts.Policy.versions() == 0 {
		res.event(Event{Kind: EventQueryReceived})
		return nil
	}
	return c.startAKE(res, now, versions)
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

// knownInstance returns the instance a version 3 message or fragment from
// sender belongs to (nil if none yet), or the master context for version
// 2.
func (c *Conversation) knownInstance(version uint16, sender uint32, now time.Time) *instance {
	if version == protocolV2 {
		return c.master
	}
	return c.instanceFor(sender, false, now)
}

// versionRefused reports whether the policy refuses a message of this
// version for instance in. A session set up before the policy changed
// keeps working: its own version stays allowed for it, as sending keeps
// encrypting (see enabled).
func (c *Conversation) versionRefused(version uint16, in *instance) bool {
	if c.opts.Policy.versions().has(version) {
		return false
	}
	return in == nil || in.state == StatePlaintext || in.version != version
}

// policyIgnored reports an OTR message ignored because the policy allows
// no OTR version at all, so the user learns the peer speaks OTR. A
// message of a version only this policy leaves out is ignored silently,
// as the spec says.
func (c *Conversation) policyIgnored(res *Result, tag uint32) {
	if c.opts.Policy.versions() == 0 {
		res.event(Event{Kind: EventPolicyIgnored, Instance: tag})
	}
}

// receiveFragment feeds a fragment to its instance's reassembly buffer and
// processes the message once complete, decoding it into buf when it fits.
func (c *Conversation) receiveFragment(res *Result, now time.Time, f fragmentPiece, buf []byte) error {
	if f.version == protocolV3 && !c.tagsAcceptable(f.senderTag, f.receiverTag, true) {
		return nil // for another instance of ours, or forged: discarded
	}
	in := c.knownInstance(f.version, f.senderTag, now)
	if c.versionRefused(f.version, in) {
		if f.k == 1 {
			c.policyIgnored(res, f.senderTag)
		}
		return nil
	}
	if in == nil {
		if in = c.instanceFor(f.senderTag, true, now); in == nil {
			return nil
		}
	}
	msg, complete, err := in.frag.add(f)
	if err != nil {
		c.reportMalformed(res, in.tag, err)
		return nil
	}
	if !complete {
		in.frag.last = now
		return nil
	}
	p, d := parseLine(msg, buf)
	switch p.info.Kind {
	case LineData, LineAKE:
		return c.receiveMessage(res, now, &p, &d)
	case LineMalformed:
		c.reportMalformed(res, in.tag, p.info.Err)
	case LineFragment:
		res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: errors.New("otrcore: fragment inside a fragment")})
	default:
		res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: errors.New("otrcore: reassembled fragments are not an OTR message")})
	}
	return nil
}

// receiveMessage routes a decoded data or AKE message to its instance;
// d is the data message of a LineData line.
func (c *Conversation) receiveMessage(res *Result, now time.Time, p *parsedLine, d *dataMsg) error {
	h := p.hdr
	if h.version == protocolV3 && !c.tagsAcceptable(h.senderTag, h.receiverTag, h.msgType == msgDHCommit) {
		return nil // for another instance of ours, or forged: discarded
	}
	in := c.knownInstance(h.version, h.senderTag, now)
	if c.versionRefused(h.version, in) || (p.info.Kind != LineData && !c.opts.Policy.versions().has(h.version)) {
		// No AKE runs in a version the policy refuses, not even to
		// refresh a session it still lets decrypt.
		c.policyIgnored(res, h.senderTag)
		return nil
	}
	if in == nil {
		if p.info.Kind == LineData {
			return c.notInPrivate(res, now, h.senderTag, d)
		}
		if in = c.instanceFor(h.senderTag, true, now); in == nil {
			return nil
		}
	}
	in.lastUsed = now
	res.Instance = in.tag
	if p.info.Kind == LineData {
		return c.receiveData(res, in, now, d)
	}
	return c.receiveAKE(res, in, now, p.ake)
}

// hasContentTLV reports whether tlvs hold anything but padding: a data
// message with only padding TLVs is a heartbeat too.
func hasContentTLV(tlvs []tlv) bool {
	for _, t := range tlvs {
		if t.typ != tlvPadding {
			return true
		}
	}
	return false
}

// notInPrivate handles a data message for an instance without a session:
// the user is told, and unless the sender flagged it IGNORE_UNREADABLE
// the peer gets a (rate-limited) error so it can re-key.
func (c *Conversation) notInPrivate(res *Result, now time.Time, tag uint32, m *dataMsg) error {
	if m.flags&flagIgnoreUnreadable != 0 {
		return nil
	}
	res.event(Event{Kind: EventNotInPrivate, Instance: tag})
	c.sendError(res, now)
	return nil
}

// receiveData handles a data message for instance in.
func (c *Conversation) receiveData(res *Result, in *instance, now time.Time, m *dataMsg) error {
	if in.state != StateEncrypted || m.version != in.version {
		if m.flags&flagIgnoreUnreadable == 0 {
			res.event(Event{Kind: EventNotInPrivate, Instance: in.tag})
			c.sendError(res, now)
		}
		return nil
	}
	plain, sk, err := in.keys.openData(m)
	if err != nil {
		if m.flags&flagIgnoreUnreadable == 0 {
			res.event(Event{Kind: EventUnreadable, Instance: in.tag, Err: err})
			c.sendError(res, now)
		}
		return nil
	}
	in.lastRecv = now
	if in != c.current && c.selectable(in) {
		// The peer speaks from this instance: replies follow, as long as
		// the key is the one the user was talking to (or trusted).
		c.setCurrent(in)
	}
	text, tlvs, err := splitPlaintext(plain)
	if err != nil {
		res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: err})
	}
	if len(text) > 0 {
		res.Text, res.HasText, res.Encrypted = string(text), true, true
		res.Fingerprint, res.Trusted, res.Current = in.fp, c.trusted(in.fp), in == c.current
	}
	if len(text) > 0 || hasContentTLV(tlvs) {
		in.recvSinceSent = true
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
