package otrcore

import (
	"errors"
	"fmt"
	"time"
)

// emit encodes a binary OTR message for in and appends it, fragmented to
// the line limit, to the result.
func (c *Conversation) emit(res *Result, in *instance, kind OutKind, version uint16, msg []byte) error {
	return c.emitEncoded(res, in, kind, version, encodeEnvelope(msg))
}

// emitEncoded appends an encoded OTR message ("?OTR:....") for in,
// fragmented to the line limit, to the result.
func (c *Conversation) emitEncoded(res *Result, in *instance, kind OutKind, version uint16, msg string) error {
	lines, err := fragmentMessage(msg, c.opts.MaxMessageSize, version, c.acct.InstanceTag, in.tag)
	if err != nil {
		return fmt.Errorf("%w (message to %s)", err, c.peer)
	}
	res.send(kind, in.tag, lines...)
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
	res.send(OutQuery, 0, queryMessage(c.opts.Policy.versions(), c.opts.QueryText))
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
	res.send(OutError, 0, encodeError(text))
}

// Start asks the peer for an encrypted session by sending a query
// message; in an encrypted session this refreshes the keys. It fails with
// ErrPolicy when the policy allows no OTR version.
func (c *Conversation) Start(now time.Time) (Result, error) {
	c.lastActivity = now
	var res Result
	if c.opts.Policy.versions() == 0 {
		return res, ErrPolicy
	}
	if c.current == nil || c.current.state != StateEncrypted {
		c.asked = true
	}
	c.sendQuery(&res, now)
	return res, nil
}

// End ends the private conversation: encrypted instances are told with a
// TLV 1 "disconnected" message and every instance returns to PLAINTEXT.
func (c *Conversation) End(now time.Time) Result {
	c.lastActivity = now
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
	c.current, c.bound = nil, false
	c.asked = false
	c.lastQuery = time.Time{}
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
// is set or the user asked for a private conversation (Start) that has not
// started yet, in which case it is held and a query is sent; in FINISHED it is
// refused with ErrFinished. Nothing is ever sent in clear when the policy
// or state forbids it.
func (c *Conversation) Send(now time.Time, text string) (Result, error) {
	c.lastActivity = now
	var res Result
	if !c.enabled() && len(c.held) == 0 {
		res.send(OutPlaintext, 0, text)
		return res, nil
	}
	in, err := c.sendTarget()
	if err != nil {
		return res, err
	}
	if in != nil && in.state == StateFinished {
		return res, ErrFinished
	}
	if len(text) > maxMessageText && (in != nil || c.opts.Policy.has(RequireEncryption)) {
		return res, ErrMessageTooLong
	}
	if in != nil && in.state == StateEncrypted {
		if err := c.sendData(&res, in, now, text, nil, 0); err != nil {
			return Result{}, err
		}
		c.lastText, c.lastTextAt, c.lastTextInst = text, now, in
		return res, nil
	}
	if c.opts.Policy.has(RequireEncryption) || len(c.held) > 0 || c.asked {
		// Held messages wait for encryption whatever the policy became
		// since: a later message must not overtake them in clear.
		if len(c.held) >= maxHeld || c.heldBytes+len(text) > maxHeldBytes {
			return res, ErrQueueFull
		}
		c.held = append(c.held, text)
		c.heldBytes += len(text)
		res.event(Event{Kind: EventMessageHeld, Count: len(c.held)})
		// One query per queryInterval, and none while a key exchange
		// runs: a query answered by nothing yet (the peer's D-H Commit is
		// on its way) is not a reason to ask again.
		if c.opts.Policy.versions() != 0 && (c.lastQuery.IsZero() || (now.Sub(c.lastQuery) >= queryInterval && !c.akePending())) {
			c.sendQuery(&res, now)
		}
		return res, nil
	}
	if c.opts.Policy.has(SendWhitespaceTag) && !c.gotPlaintext {
		// The tag goes first: servers strip trailing whitespace.
		text = whitespaceTag(c.opts.Policy.versions()) + text
	}
	res.send(OutPlaintext, 0, text)
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
	var tail []byte
	if len(tlvs) > 0 {
		tail = []byte{0}
		for _, t := range tlvs {
			tail = appendTLV(tail, t)
		}
	}
	msg, err := in.keys.sealData(c.header(in, in.version, msgData), flags, text, tail)
	wipe(tail)
	if err != nil {
		return err
	}
	in.lastSent = now
	in.recvSinceSent = false
	kind := OutText
	if text == "" {
		kind = OutControl
	}
	return c.emitEncoded(res, in, kind, in.version, msg)
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
	c.lastActivity = now
	var res Result
	in, err := c.sendTarget()
	if err != nil {
		return res, err
	}
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

// SendExtraKey sends TLV 8 to the peer and returns the extra symmetric
// key it refers to (Protocol-v3.html, "Extra symmetric key"). use and
// useData tell the peer what the key is for.
func (c *Conversation) SendExtraKey(now time.Time, use uint32, useData []byte) ([32]byte, Result, error) {
	c.lastActivity = now
	var res Result
	var key [32]byte
	in, err := c.sendTarget()
	if err == nil && (in == nil || in.state != StateEncrypted) {
		err = ErrNotEncrypted
	}
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

// Heartbeat sends an empty encrypted message to the current session, which
// rotates keys and reveals old MAC keys. It fails without a session.
func (c *Conversation) Heartbeat(now time.Time) (Result, error) {
	var res Result
	in, err := c.inSession()
	if err != nil {
		return res, err
	}
	return res, c.sendData(&res, in, now, "", nil, flagIgnoreUnreadable)
}
