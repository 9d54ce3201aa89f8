package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"

	"otrbnc/otrcore"
)

// policyTarget is what a policy command is about.
func policyTarget(n *network, word string) (kind, name string, err error) {
	switch strings.ToLower(word) {
	case "default":
		return "default", "default", nil
	case "known":
		return "known", "known", nil
	}
	if err := validMask(word); err != nil {
		return "", "", err
	}
	if isMask(word) {
		return "mask", word, nil
	}
	if err := validPeerNick(n, word); err != nil {
		return "", "", err
	}
	return "nick", word, nil
}

func cmdPolicy(n *network, dc *downstream, args []string) error {
	if len(args) == 0 {
		def := n.otr.policy.String() + " (configuration file)"
		if n.saved.DefaultPolicy != "" {
			def = n.saved.DefaultPolicy + " (set here)"
		}
		n.tellClient(dc, "default: "+def)
		if n.saved.KnownPolicy != "" {
			n.tellClient(dc, "known (nicks whose fingerprint is known): "+n.saved.KnownPolicy)
		}
		for _, r := range n.saved.Policies {
			n.tellClient(dc, fmt.Sprintf("%s: %s", r.Mask, r.Policy))
		}
		keys := make([]string, 0, len(n.otr.policies))
		for k := range n.otr.policies {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.tellClient(dc, fmt.Sprintf("%s: %s (configuration file)", k, n.otr.policies[k]))
		}
		if n.setting("whitespace_tags") == "off" {
			n.tellClient(dc, "whitespace tags are off (set whitespace_tags)")
		}
		n.tellClient(dc, "ignored (never OTR): "+strings.Join(n.ignoreList(), ", ")+", and nicks starting with *")
		return nil
	}
	kind, name, err := policyTarget(n, args[0])
	if err != nil {
		return err
	}
	if len(args) == 1 {
		switch kind {
		case "default":
			n.tellClient(dc, fmt.Sprintf("default policy: %s", n.defaultPolicy()))
		case "known":
			if n.saved.KnownPolicy == "" {
				n.tellClient(dc, "no policy for known nicks (they get the default)")
			} else {
				n.tellClient(dc, "policy for known nicks: "+n.saved.KnownPolicy)
			}
		case "mask":
			for _, r := range n.saved.Policies {
				if n.casemap.fold(r.Mask) == n.casemap.fold(name) {
					n.tellClient(dc, fmt.Sprintf("[%s] policy %s", r.Mask, r.Policy))
					return nil
				}
			}
			return fmt.Errorf("no policy for the mask %s", name)
		default:
			pol, src := n.policySource(name)
			if m := n.ignoredBy(name); m != "" {
				n.tellClient(dc, fmt.Sprintf("[%s] policy never (ignored by %s)", name, m))
				return nil
			}
			n.tellClient(dc, fmt.Sprintf("[%s] policy %s (%s)", name, pol, src))
		}
		return nil
	}
	value := strings.ToLower(args[1])
	if value != "unset" {
		pol, err := otrcore.ParsePolicy(value)
		if err != nil {
			return errors.New("a policy is never, manual, opportunistic or always (or unset)")
		}
		value = pol.String()
	}
	switch kind {
	case "default":
		if value == "unset" {
			n.saved.DefaultPolicy = ""
		} else {
			n.saved.DefaultPolicy = value
		}
	case "known":
		if value == "unset" {
			n.saved.KnownPolicy = ""
		} else {
			n.saved.KnownPolicy = value
		}
	default:
		if value == "unset" {
			if !n.setPolicyRule(name, "") {
				return fmt.Errorf("no policy was set for %s here", name)
			}
		} else {
			if len(n.saved.Policies) >= maxRules {
				return fmt.Errorf("too many policies (%d)", maxRules)
			}
			n.setPolicyRule(name, value)
		}
	}
	n.applyPolicies()
	saveErr := n.save()
	switch {
	case value != "unset":
		n.tellClient(dc, fmt.Sprintf("[%s] policy is now %s", name, value))
	case kind == "nick":
		pol, src := n.policySource(name)
		n.tellClient(dc, fmt.Sprintf("[%s] policy unset; now %s (%s)", name, pol, src))
	case kind == "default":
		n.tellClient(dc, fmt.Sprintf("[default] policy unset; now %s (configuration file)", n.defaultPolicy()))
	default:
		n.tellClient(dc, fmt.Sprintf("[%s] policy unset", name))
	}
	if kind == "nick" && n.ignoredBy(name) != "" {
		n.tellClient(dc, fmt.Sprintf("note: %s is ignored, so OTR stays off for it (see ignore)", name))
	}
	if saveErr != nil {
		n.tellClient(dc, "warning: "+saveErr.Error())
	}
	return nil
}

func cmdIgnore(n *network, dc *downstream, args []string) error {
	sub := strings.ToLower(args[0])
	switch sub {
	case "list", "ls":
		if len(args) != 1 {
			return errUsage
		}
		list := n.ignoreList()
		if len(list) == 0 {
			n.tellClient(dc, "ignore list: empty (nicks starting with * are always ignored)")
		} else {
			n.tellClient(dc, "ignore list: "+strings.Join(list, ", ")+" (and nicks starting with *, always)")
		}
		return nil
	case "add", "del", "delete", "rm", "remove":
	default:
		return errUsage
	}
	if len(args) != 2 {
		return errUsage
	}
	mask := args[1]
	if err := validMask(mask); err != nil {
		return err
	}
	list := append([]string(nil), n.ignoreList()...)
	idx := -1
	for i, m := range list {
		if n.casemap.fold(m) == n.casemap.fold(mask) {
			idx = i
		}
	}
	if sub == "add" {
		if idx >= 0 {
			return fmt.Errorf("%s is already on the ignore list", mask)
		}
		if len(list) >= maxRules {
			return fmt.Errorf("the ignore list is full (%d)", maxRules)
		}
		list = append(list, mask)
	} else {
		if idx < 0 {
			return fmt.Errorf("%s is not on the ignore list (%s)", mask, strings.Join(list, ", "))
		}
		list = append(list[:idx], list[idx+1:]...)
	}
	n.saved.Ignore = &list
	saveErr := n.save()
	if sub == "add" {
		n.tellClient(dc, fmt.Sprintf("[%s] added to the ignore list", mask))
		fm := n.casemap.fold(mask)
		for _, p := range n.sortedPeers() {
			if !matchMask(fm, p.key) {
				continue
			}
			if st := p.conv.Status(); st.State != otrcore.StatePlaintext || peerEncrypted(st) {
				n.applyResult(p, p.conv.End(n.now()))
			}
			if k := p.conv.DiscardHeld(); k > 0 {
				n.tellClientsAbout(p.nick, fmt.Sprintf("%d queued message(s) discarded: %s is now ignored", k, p.nick))
			}
		}
	} else {
		n.tellClient(dc, fmt.Sprintf("[%s] removed from the ignore list", mask))
	}
	n.applyPolicies()
	if saveErr != nil {
		n.tellClient(dc, "warning: "+saveErr.Error())
	}
	return nil
}

// genkeyState tracks the confirmation and the background generation of
// a new key.
type genkeyState struct {
	token   string
	expires time.Time
	running bool
}

// genkeyTimeout bounds key generation; genkeyConfirmWindow how long a
// confirmation word is valid.
const (
	genkeyTimeout       = 10 * time.Minute
	genkeyConfirmWindow = 5 * time.Minute
)

func cmdGenkey(n *network, dc *downstream, args []string) error {
	kr, ok := n.srv.opts.Identities.(KeyReplacer)
	if !ok {
		return errors.New("this otrbnc cannot replace keys")
	}
	if n.genkey.running {
		return errors.New("a new key is already being generated")
	}
	now := n.now()
	if len(args) == 0 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("making a confirmation word: %w", err)
		}
		n.genkey.token = hex.EncodeToString(b[:])
		n.genkey.expires = now.Add(genkeyConfirmWindow)
		n.tellClient(dc, fmt.Sprintf("your key on %s has the fingerprint %s. Replacing it ends every private conversation on %s, and every peer will see a new fingerprint and must verify you again; the old key cannot be brought back.",
			n.cfg.Name, n.otr.id.Key.Fingerprint(), n.cfg.Name))
		n.tellClient(dc, "Remember that encryption ends at otrbnc: the link from your client to otrbnc must be safe (TLS or a trusted host).")
		n.tellClient(dc, fmt.Sprintf("To replace the key, send within 5 minutes: /msg *otr genkey %s", n.genkey.token))
		return nil
	}
	if n.genkey.token == "" || args[0] != n.genkey.token || now.After(n.genkey.expires) {
		n.genkey.token = ""
		return errors.New("wrong or expired confirmation; nothing changed. Run genkey again for a new one")
	}
	n.genkey.token = ""
	n.genkey.running = true
	n.tellClient(dc, "generating a new key in the background; every client will be told when it is ready…")
	ctx := n.ctx
	name := n.cfg.Name
	go func() {
		kctx, cancel := context.WithTimeout(ctx, genkeyTimeout)
		defer cancel()
		key, err := kr.ReplaceKey(kctx, name)
		n.post(ctx, evCall{f: func(n *network) { n.installKey(key, err) }, done: make(chan struct{})})
	}()
	return nil
}

// installKey switches the network to a newly generated key: running
// private conversations end (the peer is told), conversations restart
// from scratch with the new key.
func (n *network) installKey(key *otrcore.PrivateKey, err error) {
	n.genkey.running = false
	if err != nil {
		n.logger.Error("key generation failed", "err", err)
		n.tellClients(fmt.Sprintf("generating a new key failed (%v); the old key is still in use", err))
		return
	}
	now := n.now()
	for _, p := range n.sortedPeers() {
		st := p.conv.Status()
		if peerEncrypted(st) || st.State == otrcore.StateFinished {
			n.applyResult(p, p.conv.End(now))
		}
		if k := p.conv.DiscardHeld(); k > 0 {
			n.tellClientsAbout(p.nick, fmt.Sprintf("%d queued message(s) discarded: the key changed", k))
		}
	}
	id := &Identity{Key: key, InstanceTag: n.otr.id.InstanceTag, Trust: n.otr.id.Trust}
	n.otr.id = id
	n.otr.acct = &otrcore.Account{Key: id.Key, InstanceTag: id.InstanceTag, Trust: id.Trust}
	n.otr.peers = map[string]*otrPeer{}
	n.logger.Info("OTR key replaced", "fingerprint", key.Fingerprint().String())
	n.tellClients(fmt.Sprintf("new key for %s ready: your fingerprint is now %s. Peers must verify you again.", n.cfg.Name, key.Fingerprint()))
}

func cmdSet(n *network, dc *downstream, args []string) error {
	if len(args) == 0 {
		for _, s := range settingsTable {
			src := "default"
			if _, ok := n.saved.Settings[s.name]; ok {
				src = "set"
			}
			n.tellClient(dc, fmt.Sprintf("%s = %s (%s; %s)", s.name, n.setting(s.name), s.values, src))
		}
		return nil
	}
	s, err := findSetting(args[0])
	if err != nil {
		return err
	}
	if len(args) == 1 {
		n.tellClient(dc, fmt.Sprintf("%s = %s (%s) — %s", s.name, n.setting(s.name), s.values, s.help))
		return nil
	}
	raw := strings.Join(args[1:], " ")
	if strings.EqualFold(raw, "unset") {
		delete(n.saved.Settings, s.name)
	} else {
		v, err := s.parse(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if n.saved.Settings == nil {
			n.saved.Settings = map[string]string{}
		}
		n.saved.Settings[s.name] = v
	}
	saveErr := n.save()
	switch s.name {
	case "whitespace_tags":
		n.applyPolicies()
	case "fragment_size":
		n.applyPolicies()
	}
	n.tellClient(dc, fmt.Sprintf("%s = %s", s.name, n.setting(s.name)))
	if saveErr != nil {
		n.tellClient(dc, "warning: "+saveErr.Error())
	}
	return nil
}

func cmdVersion(n *network, dc *downstream, args []string) error {
	n.tellClient(dc, fmt.Sprintf("otrbnc %s: OTR protocol versions 3 and 2; built with %s", n.srv.opts.Version, runtime.Version()))
	return nil
}
