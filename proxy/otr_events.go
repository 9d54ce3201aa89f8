package proxy

import (
	"fmt"
	"strings"
	"time"

	"otrbnc/keystore"
	"otrbnc/otrcore"
)

// shortFP is the first group of a fingerprint, enough to tell keys apart
// in a window line; *otr notices give the whole fingerprint.
func shortFP(fp otrcore.Fingerprint) string { return fp.String()[:8] }

func trustWord(trusted bool) string {
	if trusted {
		return "verified"
	}
	return "UNVERIFIED"
}

// smpQuestionShown bounds how much of an SMP question is shown, in
// pieces of smpQuestionLine bytes, each quoted on its own *otr line.
const (
	smpQuestionShown = 1200
	smpQuestionLine  = 300
)

// smpPrompt returns the *otr lines that ask the user to answer nick's
// identity verification. The question, chosen by the peer, is quoted
// line by line (I2).
func smpPrompt(nick, q string, hasQ bool) []string {
	lead := "[" + nick + "] "
	if !hasQ {
		return []string{lead + fmt.Sprintf("%s wants to verify your identity with a shared secret — answer with: /msg *otr auth %s <secret>", nick, nick)}
	}
	q = neutralize(q)
	cut := ""
	if len(q) > smpQuestionShown {
		cut = fmt.Sprintf(" (the question is %d bytes long; only its beginning is shown)", len(q))
		q = q[:smpQuestionShown]
	}
	pieces := splitText(q, smpQuestionLine)
	if len(pieces) == 1 {
		return []string{lead + fmt.Sprintf("%s wants to verify your identity and asks: %s%s — answer with: /msg *otr auth %s <answer>", nick, quotePeer(q, smpQuestionLine+3), cut, nick)}
	}
	lines := []string{lead + fmt.Sprintf("%s wants to verify your identity and asks a question in %d parts%s:", nick, len(pieces), cut)}
	for i, piece := range pieces {
		lines = append(lines, lead+fmt.Sprintf("question, part %d of %d: %s", i+1, len(pieces), quotePeer(piece, smpQuestionLine+3)))
	}
	return append(lines, lead+fmt.Sprintf("answer with: /msg *otr auth %s <answer>", nick))
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
			n.tellClientsAbout(nick, "private conversation refreshed (new session keys)")
			return
		}
		p.asked = time.Time{}
		if ev.Current {
			p.closedAt = time.Time{} // a new private conversation
		}
		if !ev.Current {
			// Another client of the peer (another instance), with a key
			// the engine may not switch to by itself (I4).
			cur := p.conv.Status()
			n.stateToClients(nick, fmt.Sprintf("another session with %s started (instance %08x, key %s, %s); your messages still go to the current one (key %s)", nick, ev.Instance, shortFP(ev.Fingerprint), trustWord(ev.Trusted), shortFP(cur.Fingerprint)),
				fmt.Sprintf("another OTR client of %s (instance %08x) started a private conversation with key %s (%s). Your messages still go to the current session (instance %08x, key %s, %s), and what the other one sends is marked. To talk to it instead: /msg *otr instance %s %08x",
					nick, ev.Instance, ev.Fingerprint, trustWord(ev.Trusted), cur.Instance, cur.Fingerprint, trustWord(cur.Trusted), nick, ev.Instance))
			n.applyPolicy(p)
			return
		}
		n.stateToClients(nick, fmt.Sprintf("private conversation started (key %s, %s)", shortFP(ev.Fingerprint), trustWord(ev.Trusted)),
			fmt.Sprintf("private conversation with %s started (OTRv%d, %s). Their fingerprint: %s. Session id: %s (read the part in brackets aloud to compare it)",
				nick, ev.Version, trustWord(ev.Trusted), ev.Fingerprint, otrcore.SSIDString(ev.SSID, ev.WeSentRevealSig)))
		if !ev.Trusted {
			n.tellClientsAbout(nick, fmt.Sprintf("%s is not verified. Verify with a secret only you two know: /msg *otr auth %s <secret> — or compare fingerprints out of band (yours: %s, theirs: %s) and run: /msg *otr trust %s %s",
				nick, nick, n.otr.id.Key.Fingerprint(), ev.Fingerprint, nick, ev.Fingerprint))
		}
		n.applyPolicy(p) // "policy known" may now apply
	case otrcore.EventGoneInsecure:
		n.applyPolicy(p) // an ignore mask that matches the nick applies again
		if p.policy&otrcore.RequireEncryption != 0 {
			n.stateToClients(nick, "private conversation ended; your next messages wait for a new one (policy "+p.policy.String()+")",
				fmt.Sprintf("private conversation ended. Your policy for %s (%s) requires encryption: your next messages wait for a new private conversation (/msg *otr start %s); /msg *otr plain %s <text> sends one in clear", nick, p.policy, nick, nick))
		} else {
			n.stateToClients(nick, "private conversation ended; your messages now go in clear", "private conversation ended; messages now go in clear")
		}
	case otrcore.EventPeerFinished:
		n.stateToClients(nick, fmt.Sprintf("%s ended the private conversation; your messages are NOT sent until you finish or start it again", nick),
			fmt.Sprintf("%s ended the private conversation. Your messages to them are now refused: run /msg *otr finish %s to talk in clear, or /msg *otr start %s to start again", nick, nick, nick))
	case otrcore.EventPlaintextInSession:
		n.tellClientsAboutPeerEvent(p, noticeClearText, "", fmt.Sprintf("the message from %s marked %q was NOT encrypted, although your private conversation is", nick, n.marker()))
	case otrcore.EventUnreadable:
		n.tellClientsAboutPeerEvent(p, noticeUndecrypt, fmt.Sprintf("an encrypted message from %s could not be read", nick), fmt.Sprintf("an encrypted message from %s could not be read", nick))
	case otrcore.EventMalformed:
		n.tellClientsAboutPeerEvent(p, noticeMalformed, "", fmt.Sprintf("a malformed OTR message from %s was ignored", nick))
	case otrcore.EventNotInPrivate:
		n.tellClientsAboutPeerEvent(p, noticeUndecrypt, fmt.Sprintf("%s sent an encrypted message, but there is no private conversation: it could not be read", nick),
			fmt.Sprintf("%s sent an encrypted message but there is no private conversation; it could not be read. /msg *otr start %s starts one", nick, nick))
	case otrcore.EventMessageHeld:
		n.tellClientsAbout(nick, fmt.Sprintf("your message is queued until the private conversation with %s starts (policy %s); starting it now", nick, p.policy))
	case otrcore.EventHeldSent:
		n.stateToClients(nick, fmt.Sprintf("%d queued message(s) sent encrypted", ev.Count), fmt.Sprintf("%d queued message(s) sent encrypted", ev.Count))
	case otrcore.EventHeldBlocked:
		n.stateToClients(nick, fmt.Sprintf("%d queued message(s) NOT sent: %s uses a new, unverified key", ev.Count, nick),
			fmt.Sprintf("%d queued message(s) were NOT sent: %s uses a key never seen before and not verified (%s). Check it, then /msg *otr release %s to send them, or /msg *otr discard %s",
				ev.Count, nick, ev.Fingerprint, nick, nick))
	case otrcore.EventTooLarge:
		n.tellClientsAboutPeerEvent(p, noticeTooLarge, "", fmt.Sprintf("an OTR message from %s was too large (at least %d bytes) and was dropped", nick, ev.Size))
	case otrcore.EventPolicyIgnored:
		n.tellClientsAboutPeerEvent(p, noticeQuery, "", fmt.Sprintf("%s sent an OTR message, but your policy for %s is %s: it was ignored", nick, nick, p.policy))
	case otrcore.EventNewFingerprint:
		n.newFingerprint(p, ev.Fingerprint, now)
	case otrcore.EventPeerError:
		n.tellClientsAboutPeerEvent(p, noticePeerError, "", fmt.Sprintf("OTR error from %s (unauthenticated; anyone can send one): %s", nick, quotePeer(ev.Message, peerTextMax)))
	case otrcore.EventProtocolError:
		n.logger.Warn("OTR protocol problem", "err", ev.Err)
	case otrcore.EventSMPRequest:
		for _, dc := range n.downstreams {
			n.toClient(dc, n.windowLine(dc, nick, false, fmt.Sprintf("%s wants to verify your identity (key %s); see *otr to answer", nick, shortFP(ev.Fingerprint))))
		}
		for _, line := range smpPrompt(nick, ev.Question, ev.HasQuestion) {
			n.tellClients(line)
		}
	case otrcore.EventSMPSucceeded:
		if ev.Verified && n.otr.id.Trust != nil {
			if err := n.otr.id.Trust.SetTrust(ev.Fingerprint, keystore.TrustSMP, now); err != nil {
				n.logger.Error("could not record trust", "err", err)
				n.tellClientsAbout(nick, fmt.Sprintf("identity verified, but the trust could not be saved: %v", err))
				return
			}
			n.stateToClients(nick, fmt.Sprintf("%s's key %s is now verified", nick, shortFP(ev.Fingerprint)),
				fmt.Sprintf("identity verified: fingerprint %s of %s is now trusted", ev.Fingerprint, nick))
		} else {
			n.tellClientsAbout(nick, fmt.Sprintf("%s verified your identity (they asked a question only you could answer). That does not verify them: ask your own with /msg *otr authq %s \"<question>\" <answer>", nick, nick))
		}
	case otrcore.EventSMPFailed:
		n.stateToClients(nick, "identity verification FAILED", "identity verification FAILED: the secrets differ"+n.trustKept(ev.Fingerprint))
	case otrcore.EventSMPAborted:
		n.stateToClients(nick, "identity verification aborted", "identity verification aborted")
	case otrcore.EventSMPCheated:
		n.stateToClients(nick, "identity verification FAILED", fmt.Sprintf("identity verification aborted: %s sent an invalid message (%v)", nick, ev.Err)+n.trustKept(ev.Fingerprint))
	case otrcore.EventQueryReceived:
		if p.policy == otrcore.PolicyNever {
			n.tellClientsAboutPeerEvent(p, noticeQuery, fmt.Sprintf("%s asks for a private conversation, but your policy for %s is never", nick, nick),
				fmt.Sprintf("%s asks for a private conversation, but your policy for %s is never (%s), so nothing was answered. To talk privately: /msg *otr policy %s manual, then /msg *otr start %s", nick, nick, p.source, nick, nick))
			return
		}
		n.tellClientsAboutPeerEvent(p, noticeQuery, fmt.Sprintf("%s asks for a private conversation: /msg *otr start %s", nick, nick),
			fmt.Sprintf("%s asks for a private conversation; your policy (%s) does not start one by itself: /msg *otr start %s", nick, p.policy, nick))
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
		n.tellClientsAbout(nick, fmt.Sprintf("new fingerprint for %s: %s", nick, fp))
		return
	}
	seen, err := n.otr.id.Trust.SeenFingerprint(p.key, fp, now)
	if err != nil {
		n.logger.Error("could not record a fingerprint", "err", err)
		n.tellClientsAbout(nick, fmt.Sprintf("new fingerprint for %s: %s (it could not be saved: %v)", nick, fp, err))
		return
	}
	if seen.NotRecorded {
		n.logger.Warn("a new fingerprint was not recorded: the keystore holds only verified keys up to its limit")
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
		n.stateToClients(nick, fmt.Sprintf("WARNING: %s now uses a DIFFERENT key (%s, unverified); someone else may be using the nick", nick, shortFP(fp)), fmt.Sprintf("WARNING: %s now uses a DIFFERENT key: %s. Before, %s used: %s. Someone else may be using the nick; verify before trusting.",
			nick, fp, nick, strings.Join(olds, ", ")))
	default:
		n.tellClientsAbout(nick, fmt.Sprintf("new fingerprint for %s: %s", nick, fp))
	}
	if len(seen.OtherNicks) > 0 {
		w := "not verified"
		if seen.Trust != keystore.TrustNone {
			w = "verified (" + trustLevelWord(seen.Trust) + ")"
		}
		n.tellClientsAbout(nick, fmt.Sprintf("note: this key was seen before under the nick(s) %s; it is %s. Trust belongs to the key, whatever the nick.",
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
