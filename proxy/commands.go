package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"otrbnc/keystore"
	"otrbnc/otrcore"
)

// otrCommands are the OTR rows of the service table. docs/commands.md is
// generated from them (TestCommandsDoc).
func otrCommands() []serviceCommand {
	return []serviceCommand{
		{
			name: "start", aliases: []string{"init", "connect"}, usage: "start <nick>",
			help:     "start a private (encrypted) conversation with nick",
			details:  "otrbnc sends nick an OTR query; the private conversation starts when their client answers, and every attached client is told, with the peer's fingerprint and whether it is verified. In a running conversation, start renews the session like refresh.",
			examples: []string{"start bob"}, minArgs: 1, maxArgs: 1, run: cmdStart,
		},
		{
			name: "finish", aliases: []string{"end", "disconnect"}, usage: "finish <nick>|*",
			help:     "end the private conversation with nick, or with everyone (*)",
			details:  "The peer is told that the conversation ended. After a peer ended a conversation, your messages to them are refused until you run finish (to talk in clear) or start (to start again).",
			examples: []string{"finish bob", "finish *"}, minArgs: 1, maxArgs: 1, run: cmdFinish,
		},
		{
			name: "refresh", aliases: []string{"reconnect"}, usage: "refresh <nick>",
			help:     "renew the keys of a running private conversation",
			details:  "Runs a new key exchange with the peer inside the current session; the fingerprint and verification stay the same.",
			examples: []string{"refresh bob"}, minArgs: 1, maxArgs: 1, run: cmdRefresh,
		},
		{
			name: "status", aliases: []string{"info"}, usage: "status [nick]",
			help:     "show the network and its private conversations, or one peer in detail",
			details:  "With a nick: state, protocol version, policy and where it comes from, fingerprint and session id, identity verification in progress, queued messages, instances.",
			examples: []string{"status", "status bob"}, maxArgs: 1, run: cmdStatus,
		},
		{
			name: "list", aliases: []string{"contexts"}, usage: "list",
			help:     "list every peer otrbnc knows: conversations, fingerprints and their trust",
			examples: []string{"list"}, maxArgs: 0, run: cmdList,
		},
		{
			name: "fingerprint", aliases: []string{"fp"}, usage: "fingerprint [nick|me]",
			help:     "show your own fingerprint, or every fingerprint known for nick",
			details:  "Read your fingerprint to your peer over another channel (in person, by phone) so they can verify you.",
			examples: []string{"fingerprint", "fingerprint bob"}, maxArgs: 1, run: cmdFingerprint,
		},
		{
			name: "trust", aliases: []string{"verify"}, usage: "trust <nick> [fingerprint]",
			help:     "mark nick's key as verified, after comparing fingerprints out of band",
			details:  "Without a fingerprint, otrbnc shows the key nick uses and asks you to repeat the command with it, so that nothing is trusted blindly by nick. The fingerprint (40 hex digits, spaces allowed) must be one nick has presented; any other is refused. Trust belongs to the key and is saved in the keystore.",
			examples: []string{"trust bob", "trust bob 1A2B3C4D 5E6F7081 92A3B4C5 D6E7F809 1A2B3C4D"}, minArgs: 1, maxArgs: -1, run: cmdTrust,
		},
		{
			name: "distrust", aliases: []string{"unverify"}, usage: "distrust <nick|fingerprint>",
			help:     "withdraw the verification of a key",
			details:  "With a nick: the key of the running conversation, or else every verified key of that nick. The fingerprint stays known (see forget).",
			examples: []string{"distrust bob"}, minArgs: 1, maxArgs: -1, run: cmdDistrust,
		},
		{
			name: "forget", usage: "forget <fingerprint>",
			help:     "delete everything known about a key (sightings and trust)",
			details:  "A key in use by a running private conversation cannot be forgotten: finish it first.",
			examples: []string{"forget 1A2B3C4D 5E6F7081 92A3B4C5 D6E7F809 1A2B3C4D"}, minArgs: 1, maxArgs: -1, run: cmdForget,
		},
		{
			name: "auth", aliases: []string{"smp"}, usage: "auth <nick> <secret>",
			help:     "verify nick with a secret only you two know, or answer their verification",
			details:  "Runs the Socialist Millionaires' Protocol: it succeeds only if both of you typed the same secret, and reveals nothing else. On success the peer's key is marked verified. A failed run never removes an earlier verification. The secret is the rest of the line; quote it to keep its spacing exact.",
			examples: []string{"auth bob the name of our first cat"}, minArgs: 2, maxArgs: -1, run: cmdAuth,
		},
		{
			name: "authq", aliases: []string{"smpq", "ask"}, usage: "authq <nick> <question> <answer>",
			help:     "verify nick by asking a question only they can answer",
			details:  "Quote the question. Only you learn whether the answer matched; to be verified by nick too, let them ask you one.",
			examples: []string{`authq bob "Where did we meet?" the old pier`}, minArgs: 3, maxArgs: -1, run: cmdAuthQ,
		},
		{
			name: "authabort", aliases: []string{"smpabort"}, usage: "authabort <nick>",
			help:     "abort a running identity verification",
			examples: []string{"authabort bob"}, minArgs: 1, maxArgs: 1, run: cmdAuthAbort,
		},
		{
			name: "policy", usage: "policy [<nick|mask>|default|known] [never|manual|opportunistic|always|unset]",
			help:     "show or set when OTR is used",
			details:  "A mask uses * and ? as wildcards (bot*). default is the policy of everyone else; known applies to nicks whose fingerprint otrbnc has seen. unset removes a policy set here (the configuration file applies again). Without arguments, every policy in effect is listed.",
			examples: []string{"policy", "policy bob always", "policy known always", "policy default opportunistic", "policy bob unset"},
			maxArgs:  2, run: cmdPolicy,
		},
		{
			name: "ignore", usage: "ignore add|del|list [mask]",
			help:     "manage the nicks otrbnc never touches (no OTR at all)",
			details:  "Services (*serv) are ignored by default, and nicks starting with * (bouncer modules such as *status) always are. Adding a mask ends private conversations with the nicks it matches.",
			examples: []string{"ignore list", "ignore add *bot", "ignore del *bot"}, minArgs: 1, maxArgs: 2, run: cmdIgnore,
		},
		{
			name: "genkey", aliases: []string{"keygen"}, usage: "genkey [confirmation]",
			help:     "replace your OTR key for this network with a new one",
			details:  "Without an argument, otrbnc explains the consequences and gives a confirmation word; run genkey again with it within 5 minutes. The key is generated in the background; then every private conversation on the network ends, and peers see a new fingerprint and must verify you again.",
			examples: []string{"genkey", "genkey 3f9a1c02"}, maxArgs: 1, run: cmdGenkey,
		},
		{
			name: "set", usage: "set [name] [value|unset]",
			help:     "show or change a setting (listed below)",
			examples: []string{"set", "set notify notice", "set marker [CLEAR]", "set fragment_size unset"},
			maxArgs:  -1, run: cmdSet,
		},
		{
			name: "plain", aliases: []string{"clear"}, usage: "plain <nick> <text>",
			help:     "send one message in clear, even when the policy or a private conversation would encrypt it",
			details:  "The text is sent exactly as typed, without quoting. The peer's client will flag it as unencrypted.",
			examples: []string{"plain bob my client cannot do OTR right now, call me"}, minArgs: 2, maxArgs: 2, raw: true, run: cmdPlain,
		},
		{
			name: "version", usage: "version",
			help:     "show otrbnc's version",
			examples: []string{"version"}, maxArgs: 0, run: cmdVersion,
		},
		{
			name: "release", usage: "release <nick>",
			help:     "send the queued messages to a peer whose key is new",
			details:  "Under policy always, messages queued before a private conversation are held back when the peer shows a key never seen before and not verified; check the key, then release them (or discard them).",
			examples: []string{"release bob"}, minArgs: 1, maxArgs: 1, run: cmdRelease,
		},
		{
			name: "discard", usage: "discard <nick>",
			help:     "drop the messages queued for nick",
			examples: []string{"discard bob"}, minArgs: 1, maxArgs: 1, run: cmdDiscard,
		},
	}
}

// Version is otrbnc's version as shown by "*otr version"; a release build
// sets it with -ldflags "-X otrbnc/proxy.Version=…". Empty means the
// module version or VCS revision from the build information.
var Version = ""

// versionString returns the version to show.
func versionString() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		return "devel"
	case dirty:
		return "devel-" + rev + "-dirty"
	}
	return "devel-" + rev
}

func (n *network) requireUp() error {
	if n.up == nil {
		return fmt.Errorf("%s is not connected", n.cfg.Name)
	}
	return nil
}

func validPeerNick(n *network, nick string) error {
	if nick == "" || isChannel(nick, n.chantypes) || strings.ContainsAny(nick, " ,*?!@:") || len(nick) > 64 {
		return fmt.Errorf("%q is not a nick", nick)
	}
	return nil
}

// ignoredError explains that nick is left alone.
func (n *network) ignoredError(nick string) error {
	switch m := n.ignoredBy(nick); m {
	case "":
		return nil
	case "*…":
		return fmt.Errorf("%s starts with * (a bouncer module): otrbnc never uses OTR with such nicks", nick)
	default:
		return fmt.Errorf("%s is on the ignore list (%s); to use OTR with it: ignore del %s", nick, m, m)
	}
}

// knownPeer returns the conversation with nick, or an error naming it.
func (n *network) knownPeer(nick string) (*otrPeer, error) {
	p := n.lookupPeer(nick)
	if p == nil {
		return nil, fmt.Errorf("no conversation with %s (unknown nick)", nick)
	}
	return p, nil
}

func cmdStart(n *network, dc *downstream, args []string) error {
	if err := validPeerNick(n, args[0]); err != nil {
		return err
	}
	if err := n.ignoredError(args[0]); err != nil {
		return err
	}
	if err := n.requireUp(); err != nil {
		return err
	}
	p := n.peer(args[0])
	res := p.conv.Start(n.now())
	if hasEvent(res, otrcore.EventMessageRefused) {
		return fmt.Errorf("OTR is off for %s (policy %s); change it with: policy %s manual", p.nick, p.conv.Policy(), p.nick)
	}
	n.notify(dc, fmt.Sprintf("[%s] asking %s for a private conversation…", p.nick, p.nick))
	return n.applyResult(p, res)
}

func cmdFinish(n *network, dc *downstream, args []string) error {
	if args[0] == "*" {
		ended := 0
		for _, p := range n.sortedPeers() {
			st := p.conv.Status()
			if st.State == otrcore.StatePlaintext && !peerEncrypted(st) {
				continue
			}
			ended++
			n.applyResult(p, p.conv.End(n.now()))
		}
		if ended == 0 {
			n.notify(dc, "no private conversation to end")
		}
		return nil
	}
	p, err := n.knownPeer(args[0])
	if err != nil {
		return err
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

func cmdRefresh(n *network, dc *downstream, args []string) error {
	p, err := encryptedPeer(n, args[0])
	if err != nil {
		return err
	}
	n.notify(dc, fmt.Sprintf("[%s] renewing the session keys…", p.nick))
	return n.applyResult(p, p.conv.Start(n.now()))
}

func stateWord(st otrcore.Status) string {
	switch st.State {
	case otrcore.StateEncrypted:
		return fmt.Sprintf("encrypted OTRv%d, %s", st.Version, trustWord(st.Trusted))
	case otrcore.StateFinished:
		return "finished by the peer (messages refused until finish or start)"
	}
	return "plaintext"
}

func cmdStatus(n *network, dc *downstream, args []string) error {
	if len(args) == 0 {
		conn := "not connected"
		if n.up != nil {
			conn = "connected"
		}
		n.notify(dc, fmt.Sprintf("network %s: %s, nick %s, default policy %s, fragment size %s, your fingerprint %s",
			n.cfg.Name, conn, n.nick, n.defaultPolicy(), fragDesc(n), n.otr.id.Key.Fingerprint()))
		count := 0
		for _, p := range n.sortedPeers() {
			st := p.conv.Status()
			if st.State == otrcore.StatePlaintext && st.Held == 0 && !st.SMPInProgress {
				continue
			}
			count++
			line := fmt.Sprintf("[%s] %s, policy %s", p.nick, stateWord(st), p.conv.Policy())
			if st.Held > 0 {
				line += fmt.Sprintf(", %d queued", st.Held)
			}
			if st.SMPAwaitingSecret {
				line += ", waiting for your answer to a verification (status " + p.nick + ")"
			} else if st.SMPInProgress {
				line += ", identity verification in progress"
			}
			n.notify(dc, line)
		}
		if count == 0 {
			n.notify(dc, "no private conversations")
		}
		return nil
	}
	nick := args[0]
	if err := validPeerNick(n, nick); err != nil {
		return err
	}
	pol, src := n.policySource(nick)
	if m := n.ignoredBy(nick); m != "" {
		pol, src = otrcore.PolicyNever, "ignored"
	}
	p := n.lookupPeer(nick)
	if p == nil {
		n.notify(dc, fmt.Sprintf("[%s] no conversation; policy %s (%s)", nick, pol, src))
		return nil
	}
	st := p.conv.Status()
	n.notify(dc, fmt.Sprintf("[%s] %s, policy %s (%s), fragment size %d", p.nick, stateWord(st), p.conv.Policy(), src, n.fragSize(p.nick)))
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
	if v := n.setting("fragment_size"); v != "auto" {
		return v + " (set)"
	}
	if n.host == "" {
		return "automatic (our host is not known yet)"
	}
	return fmt.Sprintf("automatic from %s", n.selfPrefix())
}

// maxListLines bounds the lines of list.
const maxListLines = 200

func cmdList(n *network, dc *downstream, args []string) error {
	type entry struct {
		nick  string
		state string
		fps   []string
	}
	entries := map[string]*entry{}
	get := func(key, nick string) *entry {
		e := entries[key]
		if e == nil {
			e = &entry{nick: nick}
			entries[key] = e
		}
		return e
	}
	for _, p := range n.sortedPeers() {
		st := p.conv.Status()
		if st.State == otrcore.StatePlaintext && !peerEncrypted(st) && st.Held == 0 {
			continue
		}
		get(p.key, p.nick).state = stateWord(st)
	}
	if n.otr.id.Trust != nil {
		for _, info := range n.otr.id.Trust.Fingerprints() {
			desc := fmt.Sprintf("%s (%s)", info.Fingerprint, trustLevelWord(info.Trust))
			for _, s := range info.Seen {
				e := get(n.casemap.fold(s.Nick), s.Nick)
				e.fps = append(e.fps, desc)
			}
			if len(info.Seen) == 0 {
				e := get("", "(no nick yet)")
				e.fps = append(e.fps, desc)
			}
		}
	}
	if len(entries) == 0 {
		n.notify(dc, "no peers known yet")
		return nil
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == maxListLines {
			n.notify(dc, fmt.Sprintf("… and %d more; use fingerprint <nick> or status <nick>", len(keys)-i))
			break
		}
		e := entries[k]
		state := e.state
		if state == "" {
			state = "no private conversation"
		}
		line := fmt.Sprintf("[%s] %s", e.nick, state)
		if len(e.fps) > 0 {
			line += "; keys: " + strings.Join(e.fps, ", ")
		}
		n.notify(dc, line)
	}
	return nil
}

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
		n.notify(dc, fmt.Sprintf("your fingerprint on %s: %s", n.cfg.Name, n.otr.id.Key.Fingerprint()))
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
		n.notify(dc, line)
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
			n.notify(dc, fmt.Sprintf("[%s] the key %s uses now is %s (%s). Compare it with %s over another channel (in person, by phone; not over IRC), then run: /msg *otr trust %s %s",
				nick, nick, active, trustLevelWord(n.trustOf(active)), nick, nick, active))
		case len(fps) > 0:
			var list []string
			for _, fp := range fps {
				list = append(list, fmt.Sprintf("%s (%s)", fp, trustLevelWord(n.trustOf(fp))))
			}
			n.notify(dc, fmt.Sprintf("[%s] no private conversation now; keys %s used before: %s. Compare one with %s over another channel, then run: /msg *otr trust %s <fingerprint>",
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
		n.notify(dc, fmt.Sprintf("[%s] %s is already verified (%s)", nick, fp, trustLevelWord(lvl)))
		return nil
	}
	if err := n.otr.id.Trust.SetTrust(fp, keystore.TrustManual, n.now()); err != nil {
		return fmt.Errorf("could not save the trust: %w", err)
	}
	n.notify(dc, fmt.Sprintf("[%s] %s is now trusted (verified by fingerprint)", nick, fp))
	n.refreshPolicies()
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
		n.notify(dc, fmt.Sprintf("[%s] %s is no longer verified", label, fp))
	}
	if changed == 0 {
		n.notify(dc, fmt.Sprintf("[%s] nothing to do: no verified key", label))
	}
	n.refreshPolicies()
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
	n.notify(dc, fmt.Sprintf("fingerprint %s forgotten", fp))
	n.refreshPolicies()
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
		return fmt.Errorf("verification: %s", errText(err))
	}
	if answering {
		n.notify(dc, fmt.Sprintf("[%s] answer sent; waiting for the result…", p.nick))
	} else {
		n.notify(dc, fmt.Sprintf("[%s] verification started; %s must now type the same secret…", p.nick, p.nick))
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
	if st := p.conv.Status(); !st.SMPInProgress && !st.SMPAwaitingSecret {
		return fmt.Errorf("no identity verification in progress with %s", p.nick)
	}
	res, err := p.conv.AbortSMP(n.now())
	if err != nil {
		return fmt.Errorf("abort: %s", errText(err))
	}
	return n.applyResult(p, res)
}

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
		n.notify(dc, "default: "+def)
		if n.saved.KnownPolicy != "" {
			n.notify(dc, "known (nicks whose fingerprint is known): "+n.saved.KnownPolicy)
		}
		for _, r := range n.saved.Policies {
			n.notify(dc, fmt.Sprintf("%s: %s", r.Mask, r.Policy))
		}
		keys := make([]string, 0, len(n.otr.policies))
		for k := range n.otr.policies {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.notify(dc, fmt.Sprintf("%s: %s (configuration file)", k, n.otr.policies[k]))
		}
		if n.setting("whitespace_tags") == "off" {
			n.notify(dc, "whitespace tags are off (set whitespace_tags)")
		}
		n.notify(dc, "ignored (never OTR): "+strings.Join(n.ignoreList(), ", ")+", and nicks starting with *")
		return nil
	}
	kind, name, err := policyTarget(n, args[0])
	if err != nil {
		return err
	}
	if len(args) == 1 {
		switch kind {
		case "default":
			n.notify(dc, fmt.Sprintf("default policy: %s", n.defaultPolicy()))
		case "known":
			if n.saved.KnownPolicy == "" {
				n.notify(dc, "no policy for known nicks (they get the default)")
			} else {
				n.notify(dc, "policy for known nicks: "+n.saved.KnownPolicy)
			}
		case "mask":
			for _, r := range n.saved.Policies {
				if n.casemap.fold(r.Mask) == n.casemap.fold(name) {
					n.notify(dc, fmt.Sprintf("[%s] policy %s", r.Mask, r.Policy))
					return nil
				}
			}
			return fmt.Errorf("no policy for the mask %s", name)
		default:
			pol, src := n.policySource(name)
			if m := n.ignoredBy(name); m != "" {
				n.notify(dc, fmt.Sprintf("[%s] policy never (ignored by %s)", name, m))
				return nil
			}
			n.notify(dc, fmt.Sprintf("[%s] policy %s (%s)", name, pol, src))
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
	n.refreshPolicies()
	saveErr := n.save()
	switch {
	case value != "unset":
		n.notify(dc, fmt.Sprintf("[%s] policy is now %s", name, value))
	case kind == "nick":
		pol, src := n.policySource(name)
		n.notify(dc, fmt.Sprintf("[%s] policy unset; now %s (%s)", name, pol, src))
	case kind == "default":
		n.notify(dc, fmt.Sprintf("[default] policy unset; now %s (configuration file)", n.defaultPolicy()))
	default:
		n.notify(dc, fmt.Sprintf("[%s] policy unset", name))
	}
	if kind == "nick" && n.ignoredBy(name) != "" {
		n.notify(dc, fmt.Sprintf("note: %s is ignored, so OTR stays off for it (see ignore)", name))
	}
	if saveErr != nil {
		n.notify(dc, "warning: "+saveErr.Error())
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
			n.notify(dc, "ignore list: empty (nicks starting with * are always ignored)")
		} else {
			n.notify(dc, "ignore list: "+strings.Join(list, ", ")+" (and nicks starting with *, always)")
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
		n.notify(dc, fmt.Sprintf("[%s] added to the ignore list", mask))
		fm := n.casemap.fold(mask)
		for _, p := range n.sortedPeers() {
			if !matchMask(fm, p.key) {
				continue
			}
			if st := p.conv.Status(); st.State != otrcore.StatePlaintext || peerEncrypted(st) {
				n.applyResult(p, p.conv.End(n.now()))
			}
			if k := p.conv.DiscardHeld(); k > 0 {
				n.notifyPeer(p.nick, fmt.Sprintf("%d queued message(s) discarded: %s is now ignored", k, p.nick))
			}
		}
	} else {
		n.notify(dc, fmt.Sprintf("[%s] removed from the ignore list", mask))
	}
	n.refreshPolicies()
	if saveErr != nil {
		n.notify(dc, "warning: "+saveErr.Error())
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
		n.notify(dc, fmt.Sprintf("your key on %s has the fingerprint %s. Replacing it ends every private conversation on %s, and every peer will see a new fingerprint and must verify you again; the old key cannot be brought back.",
			n.cfg.Name, n.otr.id.Key.Fingerprint(), n.cfg.Name))
		n.notify(dc, "Remember that encryption ends at otrbnc: the link from your client to otrbnc must be safe (TLS or a trusted host).")
		n.notify(dc, fmt.Sprintf("To replace the key, send within 5 minutes: /msg *otr genkey %s", n.genkey.token))
		return nil
	}
	if n.genkey.token == "" || args[0] != n.genkey.token || now.After(n.genkey.expires) {
		n.genkey.token = ""
		return errors.New("wrong or expired confirmation; nothing changed. Run genkey again for a new one")
	}
	n.genkey.token = ""
	n.genkey.running = true
	n.notify(dc, "generating a new key in the background; every client will be told when it is ready…")
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
		n.notifyAll(fmt.Sprintf("generating a new key failed (%v); the old key is still in use", err))
		return
	}
	now := n.now()
	for _, p := range n.sortedPeers() {
		st := p.conv.Status()
		if peerEncrypted(st) || st.State == otrcore.StateFinished {
			n.applyResult(p, p.conv.End(now))
		}
		if k := p.conv.DiscardHeld(); k > 0 {
			n.notifyPeer(p.nick, fmt.Sprintf("%d queued message(s) discarded: the key changed", k))
		}
	}
	id := &Identity{Key: key, InstanceTag: n.otr.id.InstanceTag, Trust: n.otr.id.Trust}
	n.otr.id = id
	n.otr.acct = &otrcore.Account{Key: id.Key, InstanceTag: id.InstanceTag, Trust: id.Trust}
	n.otr.peers = map[string]*otrPeer{}
	n.logger.Info("OTR key replaced")
	n.notifyAll(fmt.Sprintf("new key for %s ready: your fingerprint is now %s. Peers must verify you again.", n.cfg.Name, key.Fingerprint()))
}

func cmdSet(n *network, dc *downstream, args []string) error {
	if len(args) == 0 {
		for _, s := range settingsTable {
			src := "default"
			if _, ok := n.saved.Settings[s.name]; ok {
				src = "set"
			}
			n.notify(dc, fmt.Sprintf("%s = %s (%s; %s)", s.name, n.setting(s.name), s.values, src))
		}
		return nil
	}
	s, err := findSetting(args[0])
	if err != nil {
		return err
	}
	if len(args) == 1 {
		n.notify(dc, fmt.Sprintf("%s = %s (%s) — %s", s.name, n.setting(s.name), s.values, s.help))
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
		n.refreshPolicies()
	case "fragment_size":
		for _, p := range n.otr.peers {
			p.conv.SetMaxMessageSize(n.fragSize(p.nick))
		}
	}
	n.notify(dc, fmt.Sprintf("%s = %s", s.name, n.setting(s.name)))
	if saveErr != nil {
		n.notify(dc, "warning: "+saveErr.Error())
	}
	return nil
}

func cmdPlain(n *network, dc *downstream, args []string) error {
	nick, text := args[0], args[1]
	if err := validPeerNick(n, nick); err != nil {
		return err
	}
	if err := n.requireUp(); err != nil {
		return err
	}
	pieces := splitText(text, n.fragSize(nick))
	lines := make([]string, len(pieces))
	for i, p := range pieces {
		lines[i] = formatMessage(msg("", "PRIVMSG", nick, p))
	}
	if err := n.sendUpstreamBatch(lines); err != nil {
		return fmt.Errorf("not sent: %w", err)
	}
	for _, p := range pieces {
		n.echo(dc, "PRIVMSG", nick, p, nil)
	}
	n.notify(dc, fmt.Sprintf("[%s] sent in clear, NOT encrypted", nick))
	return nil
}

func cmdVersion(n *network, dc *downstream, args []string) error {
	n.notify(dc, fmt.Sprintf("otrbnc %s: OTR protocol versions 3 and 2; built with %s", versionString(), runtime.Version()))
	return nil
}

func cmdRelease(n *network, dc *downstream, args []string) error {
	p, err := n.knownPeer(args[0])
	if err != nil {
		return err
	}
	if err := n.requireUp(); err != nil {
		return err
	}
	if p.conv.Status().Held == 0 {
		return fmt.Errorf("no message queued for %s", p.nick)
	}
	res, err := p.conv.ReleaseHeld(n.now())
	if err != nil {
		return fmt.Errorf("release: %s", errText(err))
	}
	return n.applyResult(p, res)
}

func cmdDiscard(n *network, dc *downstream, args []string) error {
	p, err := n.knownPeer(args[0])
	if err != nil {
		return err
	}
	n.notify(dc, fmt.Sprintf("[%s] %d queued message(s) discarded", p.nick, p.conv.DiscardHeld()))
	return nil
}
