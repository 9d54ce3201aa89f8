package otrcore

import (
	"fmt"
	"time"
)

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

// The SMP API acts on the current instance (Status, SetCurrentInstance),
// even when its key is not confirmed: SMP is how the user verifies it.
// An exchange is bound to the session's key (the secret mixes in both
// fingerprints and the session id), and every SMP event carries the
// Instance and Fingerprint it concerns: a success verifies that key, not
// the nick. A request from another instance is answered by making that
// instance current first.

// StartSMP starts the Socialist Millionaires' Protocol with the peer of
// the current encrypted session, optionally with a question. An exchange
// already running is aborted first.
func (c *Conversation) StartSMP(now time.Time, question string, hasQuestion bool, secret string) (Result, error) {
	c.lastActivity = now
	var res Result
	in, err := c.inSession()
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
			// The old exchange was reset on our side: tell the peer. If
			// even that cannot be sent, its error is the one to report.
			if serr := c.sendData(&res, in, now, "", out, flagIgnoreUnreadable); serr != nil {
				return Result{}, serr
			}
		}
		return res, err
	}
	out = append(out, t)
	return res, c.sendData(&res, in, now, "", out, flagIgnoreUnreadable)
}

// RespondSMP answers the SMP request of the current session's peer with
// our secret; ErrNoSMPRequest when that session has none pending.
func (c *Conversation) RespondSMP(now time.Time, secret string) (Result, error) {
	c.lastActivity = now
	var res Result
	in, err := c.inSession()
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

// AbortSMP aborts the current session's SMP exchange and tells the peer.
func (c *Conversation) AbortSMP(now time.Time) (Result, error) {
	c.lastActivity = now
	var res Result
	in, err := c.inSession()
	if err != nil {
		return res, err
	}
	t := in.smp.abort()
	res.event(Event{Kind: EventSMPAborted, Instance: in.tag, Fingerprint: in.fp})
	return res, c.sendData(&res, in, now, "", []tlv{t}, flagIgnoreUnreadable)
}
