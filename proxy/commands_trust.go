package proxy

import (
	"errors"
	"fmt"
	"strings"

	"otrbnc/keystore"
	"otrbnc/otrcore"
)

// knownFingerprints returns the keys nick presented: the one of the
// running session first, then those in the trust book.
func (n *network) knownFingerprints(nick string) (active otrcore.Fingerprint, hasActive bool, all []otrcore.Fingerprint) {
	if p := n.lookupPeer(nick); p != nil {
		if st := p.conv.Status(); st.HasFingerprint && st.State == otrcore.StateEncrypted {
			active, hasActive = st.Fingerprint, true
			all = append(all, active)
		}
	}
	if n.otr.id.Trust != nil {
		for _, fp := range n.otr.id.Trust.KnownFingerprints(n.casemap.fold(nick)) {
			if !hasActive || fp != active {
				all = append(all, fp)
			}
		}
	}
	return active, hasActive, all
}

// trustOf returns how fp is verified.
func (n *network) trustOf(fp otrcore.Fingerprint) keystore.TrustLevel {
	if n.otr.id.Trust == nil {
		return keystore.TrustNone
	}
	info, ok := n.otr.id.Trust.Lookup(fp)
	if !ok {
		return keystore.TrustNone
	}
	return info.Trust
}

func cmdFingerprint(n *network, dc *downstream, args []string) error {
	if len(args) == 0 || strings.EqualFold(args[0], "me") {
		n.tellClient(dc, fmt.Sprintf("your fingerprint on %s: %s", n.cfg.Name, n.otr.id.Key.Fingerprint()))
		return nil
	}
	nick := args[0]
	if err := validPeerNick(n, nick); err != nil {
		return err
	}
	active, hasActive, fps := n.knownFingerprints(nick)
	if len(fps) == 0 {
		return fmt.Errorf("no fingerprint known for %s (unknown nick); start a private conversation first: start %s", nick, nick)
	}
	for _, fp := range fps {
		line := fmt.Sprintf("[%s] %s %s", nick, fp, trustLevelWord(n.trustOf(fp)))
		if hasActive && fp == active {
			line += " (current session)"
		}
		n.tellClient(dc, line)
	}
	return nil
}

// parseFingerprintArgs reads a fingerprint typed as one or more words.
func parseFingerprintArgs(args []string) (otrcore.Fingerprint, error) {
	fp, err := otrcore.ParseFingerprint(strings.Join(args, ""))
	if err != nil {
		return fp, errors.New("a fingerprint is 40 hexadecimal digits (spaces allowed), as shown by fingerprint <nick>")
	}
	return fp, nil
}

func cmdTrust(n *network, dc *downstream, args []string) error {
	nick := args[0]
	if err := validPeerNick(n, nick); err != nil {
		return err
	}
	if n.otr.id.Trust == nil {
		return errors.New("no trust store")
	}
	active, hasActive, fps := n.knownFingerprints(nick)
	if len(args) == 1 {
		switch {
		case hasActive:
			n.tellClient(dc, fmt.Sprintf("[%s] the key %s uses now is %s (%s). Compare it with %s over another channel (in person, by phone; not over IRC), then run: /msg *otr trust %s %s",
				nick, nick, active, trustLevelWord(n.trustOf(active)), nick, nick, active))
		case len(fps) > 0:
			var list []string
			for _, fp := range fps {
				list = append(list, fmt.Sprintf("%s (%s)", fp, trustLevelWord(n.trustOf(fp))))
			}
			n.tellClient(dc, fmt.Sprintf("[%s] no private conversation now; keys %s used before: %s. Compare one with %s over another channel, then run: /msg *otr trust %s <fingerprint>",
				nick, nick, strings.Join(list, ", "), nick, nick))
		default:
			return fmt.Errorf("no fingerprint known for %s (unknown nick); start a private conversation first: start %s", nick, nick)
		}
		return errors.New("nothing was trusted: repeat the command with the fingerprint")
	}
	fp, err := parseFingerprintArgs(args[1:])
	if err != nil {
		return err
	}
	if !containsFP(fps, fp) {
		if hasActive {
			return fmt.Errorf("%s is not the key %s uses (%s) nor one they used before; nothing was trusted. Check the fingerprint", fp, nick, active)
		}
		return fmt.Errorf("%s is not a key %s has presented; nothing was trusted", fp, nick)
	}
	if lvl := n.trustOf(fp); lvl != keystore.TrustNone {
		n.tellClient(dc, fmt.Sprintf("[%s] %s is already verified (%s)", nick, fp, trustLevelWord(lvl)))
		return nil
	}
	if err := n.otr.id.Trust.SetTrust(fp, keystore.TrustManual, n.now()); err != nil {
		return fmt.Errorf("could not save the trust: %w", err)
	}
	n.tellClient(dc, fmt.Sprintf("[%s] %s is now trusted (verified by fingerprint)", nick, fp))
	n.applyPolicies()
	return nil
}

func containsFP(list []otrcore.Fingerprint, fp otrcore.Fingerprint) bool {
	for _, x := range list {
		if x == fp {
			return true
		}
	}
	return false
}

func cmdDistrust(n *network, dc *downstream, args []string) error {
	if n.otr.id.Trust == nil {
		return errors.New("no trust store")
	}
	var targets []otrcore.Fingerprint
	label := args[0]
	if fp, err := otrcore.ParseFingerprint(strings.Join(args, "")); err == nil {
		if _, ok := n.otr.id.Trust.Lookup(fp); !ok {
			return fmt.Errorf("unknown fingerprint %s", fp)
		}
		targets = []otrcore.Fingerprint{fp}
		label = fp.String()
	} else {
		if len(args) > 1 {
			return errUsage
		}
		if err := validPeerNick(n, args[0]); err != nil {
			return err
		}
		active, hasActive, fps := n.knownFingerprints(args[0])
		switch {
		case len(fps) == 0:
			return fmt.Errorf("no fingerprint known for %s (unknown nick)", args[0])
		case hasActive:
			targets = []otrcore.Fingerprint{active}
		default:
			for _, fp := range fps {
				if n.trustOf(fp) != keystore.TrustNone {
					targets = append(targets, fp)
				}
			}
		}
	}
	changed := 0
	for _, fp := range targets {
		if n.trustOf(fp) == keystore.TrustNone {
			continue
		}
		if err := n.otr.id.Trust.SetTrust(fp, keystore.TrustNone, n.now()); err != nil {
			return fmt.Errorf("could not save: %w", err)
		}
		changed++
		n.tellClient(dc, fmt.Sprintf("[%s] %s is no longer verified", label, fp))
	}
	if changed == 0 {
		n.tellClient(dc, fmt.Sprintf("[%s] nothing to do: no verified key", label))
	}
	n.applyPolicies()
	return nil
}

func cmdForget(n *network, dc *downstream, args []string) error {
	if n.otr.id.Trust == nil {
		return errors.New("no trust store")
	}
	fp, err := parseFingerprintArgs(args)
	if err != nil {
		return err
	}
	for _, p := range n.sortedPeers() {
		if st := p.conv.Status(); st.HasFingerprint && st.Fingerprint == fp && peerEncrypted(st) {
			return fmt.Errorf("%s is in use by the private conversation with %s; finish it first: finish %s", fp, p.nick, p.nick)
		}
	}
	if err := n.otr.id.Trust.Forget(fp); err != nil {
		if errors.Is(err, keystore.ErrUnknownFingerprint) {
			return fmt.Errorf("unknown fingerprint %s", fp)
		}
		return fmt.Errorf("could not forget: %w", err)
	}
	n.tellClient(dc, fmt.Sprintf("fingerprint %s forgotten", fp))
	n.applyPolicies()
	return nil
}

func encryptedPeer(n *network, nick string) (*otrPeer, error) {
	if err := validPeerNick(n, nick); err != nil {
		return nil, err
	}
	p := n.lookupPeer(nick)
	if p == nil {
		return nil, fmt.Errorf("no conversation with %s (unknown nick); start one first: start %s", nick, nick)
	}
	if p.conv.Status().State != otrcore.StateEncrypted {
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
	answering := p.conv.Status().SMPAwaitingSecret
	if answering {
		res, err = p.conv.RespondSMP(n.now(), secret)
	} else {
		res, err = p.conv.StartSMP(n.now(), "", false, secret)
	}
	if err != nil {
		return fmt.Errorf("verification: %w", err)
	}
	if answering {
		n.tellClient(dc, fmt.Sprintf("[%s] answer sent; waiting for the result…", p.nick))
	} else {
		n.tellClient(dc, fmt.Sprintf("[%s] verification started; %s must now type the same secret…", p.nick, p.nick))
	}
	return n.applyResult(p, res)
}

func cmdAuthQ(n *network, dc *downstream, args []string) error {
	p, err := encryptedPeer(n, args[0])
	if err != nil {
		return err
	}
	if strings.TrimSpace(args[1]) == "" {
		return errors.New("the question is empty")
	}
	res, err := p.conv.StartSMP(n.now(), args[1], true, strings.Join(args[2:], " "))
	if err != nil {
		return fmt.Errorf("verification: %w", err)
	}
	n.tellClient(dc, fmt.Sprintf("[%s] question sent; waiting for %s's answer…", p.nick, p.nick))
	return n.applyResult(p, res)
}

func cmdAuthAbort(n *network, dc *downstream, args []string) error {
	p, err := encryptedPeer(n, args[0])
	if err != nil {
		return err
	}
	if st := p.conv.Status(); !st.SMPInProgress && !st.SMPAwaitingSecret {
		return fmt.Errorf("no identity verification in progress with %s", p.nick)
	}
	res, err := p.conv.AbortSMP(n.now())
	if err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	return n.applyResult(p, res)
}
