package otrcore

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

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

// receiveEncoded decodes a "?OTR:" message and dispatches it by type.
func (c *Conversation) receiveEncoded(res *Result, now time.Time, line string) error {
	payload, ok, err := findEnvelope(line)
	if err != nil || !ok {
		res.event(Event{Kind: EventMalformed, Err: err})
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
	if hdr.msgType == msgData {
		return c.receiveData(res, in, now, payload)
	}
	m := newAKEMessage(hdr.msgType)
	if m == nil {
		res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: fmt.Errorf("otrcore: unknown message type 0x%02x", hdr.msgType)})
		return nil
	}
	if err := m.unmarshal(payload); err != nil {
		res.event(Event{Kind: EventMalformed, Instance: in.tag, Err: err})
		return nil
	}
	return c.receiveAKE(res, in, now, m)
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
