package otrcore

import (
	"errors"
	"time"
)

// startAKE sends a D-H Commit in the highest common version. A commit
// sent moments ago is repeated instead of starting over, so repeated
// queries cannot make us burn key generations.
func (c *Conversation) startAKE(res *Result, now time.Time, offered versionSet) error {
	v := (offered & c.opts.Policy.versions()).best()
	if v == 0 {
		return nil
	}
	a := c.master.startingAKE()
	if a.state == authAwaitingDHKey && a.version == v && now.Sub(a.started) < queryInterval {
		return c.emitAKE(res, c.master, a.commit)
	}
	m, err := a.startCommit(c.env(), v, now)
	if err != nil {
		return err
	}
	return c.emitAKE(res, c.master, m)
}

// receiveAKE applies one decoded AKE message to instance in and sends the
// reply the state machine produces, if any.
func (c *Conversation) receiveAKE(res *Result, in *instance, now time.Time, msg akeMessage) error {
	// Our commit went out before we knew the peer's tag when the master
	// context awaits a D-H Key of this version; a new instance answering
	// it continues from a copy of the master's state.
	masterCommit := in != c.master && in.authState() == authNone &&
		c.master.authState() == authAwaitingDHKey && c.master.ake.version == msg.hdr().version
	switch m := msg.(type) {
	case *dhCommitMsg:
		if masterCommit {
			// The commits crossed: the collision rule compares the two
			// hashes here.
			cl := c.master.ake.clone()
			in.ake = &cl
		}
		out, err := in.startingAKE().handleCommit(c.env(), m, now)
		if err != nil {
			return err
		}
		return c.emitAKE(res, in, out)
	case *dhKeyMsg:
		a := in.ake
		var trial *ake
		if masterCommit {
			// This instance answers our commit; the copy is kept only if
			// the D-H Key is accepted.
			cl := c.master.ake.clone()
			trial = &cl
			a = trial
		}
		if a == nil {
			return nil // NONE: a D-H Key is ignored
		}
		out, err := a.handleDHKey(c.env(), m)
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
	case *revealSigMsg:
		if in.ake == nil {
			return nil // NONE: ignored
		}
		out, result, err := in.ake.handleRevealSig(c.env(), m)
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
	case *signatureMsg:
		if in.ake == nil {
			return nil // NONE: ignored
		}
		result, err := in.ake.handleSig(c.env(), m)
		if err != nil {
			res.event(Event{Kind: EventProtocolError, Instance: in.tag, Err: err})
			return nil
		}
		if result == nil {
			return nil
		}
		return c.goneSecure(res, in, now, result)
	}
	return nil
}

// emitAKE sends an AKE message with in's instance tags.
func (c *Conversation) emitAKE(res *Result, in *instance, m akeMessage) error {
	h := m.hdr()
	*h = c.header(in, h.version, h.msgType)
	return c.emit(res, in, OutAKE, h.version, m.marshal())
}

// goneSecure installs the data-phase keys of a completed AKE and sends
// what was waiting for it.
func (c *Conversation) goneSecure(res *Result, in *instance, now time.Time, r *akeResult) error {
	fp := r.theirPub.fingerprint()
	refresh := in.state == StateEncrypted && in.fp == fp
	ks, err := newKeyState(c.gr, c.keySource(), r.ourKey, r.theirKeyID, r.theirY)
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
	c.asked = false
	c.lastQuery = time.Time{} // answered: a later held message may ask again at once
	in.lastRecv = now
	in.lastSent = now
	if c.selectable(in) {
		c.setCurrent(in)
	}
	current := c.current == in

	trusted := c.trusted(fp)
	known, others := c.fingerprintHistory(fp)
	if !known {
		res.event(Event{Kind: EventNewFingerprint, Instance: in.tag, Version: int(r.version), Fingerprint: fp, Trusted: trusted})
		c.seenFPs = append(c.seenFPs, fp)
	}
	res.event(Event{Kind: EventGoneSecure, Instance: in.tag, Version: int(r.version), Fingerprint: fp,
		SSID: r.ssid, WeSentRevealSig: r.weSentRevealSig, Trusted: trusted, Refresh: refresh, Current: current})
	if !current || !c.selectable(in) {
		// Another session carries on, or this one's key changed: user
		// messages wait for the user's choice.
		return nil
	}

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

// trusted reports whether fp is verified for the peer.
func (c *Conversation) trusted(fp Fingerprint) bool {
	return c.acct.Trust != nil && c.acct.Trust.IsTrusted(c.peer, fp)
}

// selectable reports whether the engine may, on its own, send the user's
// messages to the encrypted instance in: nothing binds the user yet (no
// session since the start or since End), in has the key the user was
// talking to, or a trusted key. Never, on its own, from one key to a
// different key that is not trusted: that takes SetCurrentInstance.
func (c *Conversation) selectable(in *instance) bool {
	return !c.bound || in.fp == c.boundFP || c.trusted(in.fp)
}

// setCurrent makes in the instance user messages go to, bound to its key.
func (c *Conversation) setCurrent(in *instance) {
	c.current = in
	c.boundFP, c.bound = in.fp, in.hasFP
}

// sendTarget returns the instance user messages go to: the current one
// when it has a session (encrypted or finished), nil when no instance has
// one. It never falls back to another instance: it fails with
// ErrKeyNotConfirmed when the current session's key changed to one that
// is not trusted, or when the current instance has no session but another
// has (the user has to choose with SetCurrentInstance).
func (c *Conversation) sendTarget() (*instance, error) {
	if in := c.current; in != nil && in.state != StatePlaintext {
		if in.state == StateEncrypted && !c.selectable(in) {
			return nil, ErrKeyNotConfirmed
		}
		return in, nil
	}
	for _, in := range c.all() {
		if in.state != StatePlaintext {
			return nil, ErrKeyNotConfirmed
		}
	}
	return nil, nil
}

// anySession returns the current instance if it has a session (encrypted
// or finished), else any instance that has one, else nil.
func (c *Conversation) anySession() *instance {
	if c.current != nil && c.current.state != StatePlaintext {
		return c.current
	}
	for _, in := range c.all() {
		if in.state != StatePlaintext {
			return in
		}
	}
	return nil
}

// inSession returns the current instance if it is encrypted, whatever
// its key: SMP (which verifies the key) and heartbeats go there.
func (c *Conversation) inSession() (*instance, error) {
	if in := c.current; in != nil && in.state == StateEncrypted {
		return in, nil
	}
	return nil, ErrNotEncrypted
}

// SetCurrentInstance makes the encrypted session with the peer instance
// tag (0 for an OTRv2 session) the one user messages and SMP go to, and
// binds them to its key. It is how the user chooses between sessions
// with different keys, or confirms that the current session's new key is
// the one they mean; Status lists the instances.
func (c *Conversation) SetCurrentInstance(tag uint32) error {
	for _, in := range c.all() {
		if in.tag == tag {
			if in.state != StateEncrypted {
				return ErrNotEncrypted
			}
			c.setCurrent(in)
			return nil
		}
	}
	return ErrUnknownInstance
}
