package proxy

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

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
			details:  "Without a nick: the connection, how lines to the network are paced (and whether the network made otrbnc slow down), your fingerprint, and each conversation that is not plain. With a nick: state, protocol version, policy and where it comes from, fingerprint and session id, identity verification in progress, queued messages, instances. The session id (a1b2c3d4 [e5f6a7b8]) is the same on both sides, but your peer's program marks the other half: read your half in brackets aloud to your peer, and check that the half they read to you is your other half. If both match, nobody is in the middle of this session.",
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
			name: "instance", aliases: []string{"session"}, usage: "instance <nick> [instance]",
			help:     "list nick's OTR sessions, or choose the one your messages go to",
			details:  "Someone can run several OTR programs under one nick (OTRv3 instances), each with its own key. otrbnc never moves your messages on its own from a session with one key to a session with a different, unverified key: it keeps the current one, marks what the others send, and refuses your messages if the current session's key changes, until you choose here (or verify the key with auth). The instance is the 8 hex digits listed.",
			examples: []string{"instance bob", "instance bob 1a2b3c4d"}, minArgs: 1, maxArgs: 2, run: cmdInstance,
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
			help:     "show or change a setting: " + strings.Join(settingNames(), ", "),
			details:  "Without arguments, lists every setting with its value and whether it was set here. help set (or the Settings section of docs/commands.md) explains each one. unset returns a setting to the configuration file's value (or the default).",
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

func (n *network) requireUp() error {
	if n.up == nil {
		return fmt.Errorf("%s is not connected", n.cfg.Name)
	}
	return nil
}

func validPeerNick(n *network, nick string) error {
	if nick == "" || n.isChannel(nick) || strings.ContainsAny(nick, " ,*?!@:") || len(nick) > 64 {
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
	res, err := p.conv.Start(n.now())
	if err != nil {
		return fmt.Errorf("OTR is off for %s (policy %s); change it with: policy %s manual", p.nick, p.policy, p.nick)
	}
	p.closedAt = time.Time{} // the user chose: a new private conversation
	n.tellClient(dc, fmt.Sprintf("[%s] asking %s for a private conversation…", p.nick, p.nick))
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
		for _, p := range n.otr.peers {
			if !p.closedAt.IsZero() {
				p.closedAt = time.Time{}
				ended++
			}
		}
		ended += len(n.otr.closed)
		clear(n.otr.closed)
		if ended == 0 {
			n.tellClient(dc, "no private conversation to end")
		}
		return nil
	}
	if _, ok := n.otr.closed[n.casemap.fold(args[0])]; ok && validPeerNick(n, args[0]) == nil {
		n.peer(args[0]) // takes the closed conversation over (closedAt)
	}
	p, err := n.knownPeer(args[0])
	if err != nil {
		return err
	}
	if err := n.requireUp(); err != nil && peerEncrypted(p.conv.Status()) {
		return err
	}
	closed := !p.closedAt.IsZero()
	asked := p.conv.Status().Asked
	p.closedAt = time.Time{} // the user chose: clear text
	res := p.conv.End(n.now())
	if len(res.Events) == 0 {
		switch {
		case asked:
			n.tellClient(dc, fmt.Sprintf("[%s] no longer waiting for a private conversation: what you send to %s now goes in clear (queued messages stay queued: release or discard them)", p.nick, p.nick))
		case closed:
			n.tellClient(dc, fmt.Sprintf("[%s] the private conversation otrbnc had closed is finished: what you send to %s now goes in clear", p.nick, p.nick))
		default:
			n.tellClient(dc, fmt.Sprintf("[%s] no private conversation to end", p.nick))
		}
	}
	return n.applyResult(p, res)
}

func cmdRefresh(n *network, dc *downstream, args []string) error {
	p, err := encryptedPeer(n, args[0])
	if err != nil {
		return err
	}
	n.tellClient(dc, fmt.Sprintf("[%s] renewing the session keys…", p.nick))
	res, err := p.conv.Start(n.now())
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	return n.applyResult(p, res)
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
		n.tellClient(dc, fmt.Sprintf("network %s: %s, nick %s, default policy %s, fragment size %s, your fingerprint %s",
			n.cfg.Name, conn, n.nick, n.defaultPolicy(), fragDesc(n), n.otr.id.Key.Fingerprint()))
		n.tellClient(dc, n.pacingStatus())
		count := 0
		for _, p := range n.sortedPeers() {
			st := p.conv.Status()
			if st.State == otrcore.StatePlaintext && st.Held == 0 && !st.SMPInProgress {
				continue
			}
			count++
			line := fmt.Sprintf("[%s] %s, policy %s", p.nick, stateWord(st), p.policy)
			if st.Held > 0 {
				line += fmt.Sprintf(", %d queued", st.Held)
			}
			if st.SMPAwaitingSecret {
				line += ", waiting for your answer to a verification (status " + p.nick + ")"
			} else if st.SMPInProgress {
				line += ", identity verification in progress"
			}
			n.tellClient(dc, line)
		}
		if count == 0 {
			n.tellClient(dc, "no private conversations")
		}
		return nil
	}
	nick := args[0]
	if err := validPeerNick(n, nick); err != nil {
		return err
	}
	p := n.lookupPeer(nick)
	if p == nil {
		d := n.decidePolicy(nick)
		n.tellClient(dc, fmt.Sprintf("[%s] no conversation; policy %s (%s)", nick, d.policy, d.source))
		return nil
	}
	st := p.conv.Status()
	n.tellClient(dc, fmt.Sprintf("[%s] %s, policy %s (%s), fragment size %d", p.nick, stateWord(st), p.policy, p.source, p.fragSize))
	if st.HasFingerprint {
		n.tellClient(dc, fmt.Sprintf("[%s] fingerprint %s, session id %s", p.nick, st.Fingerprint, otrcore.SSIDString(st.SSID, st.WeSentRevealSig)))
	}
	if st.SMPAwaitingSecret {
		for _, line := range smpPrompt(p.nick, st.SMPQuestion, st.SMPHasQuestion) {
			n.tellClient(dc, line)
		}
	} else if st.SMPInProgress {
		n.tellClient(dc, fmt.Sprintf("[%s] identity verification in progress", p.nick))
	}
	if st.KeyNotConfirmed {
		n.tellClient(dc, fmt.Sprintf("[%s] the session's key changed to one you did not talk to before and have not verified: your messages are refused until you choose (/msg *otr instance %s <instance>) or verify it", p.nick, p.nick))
	}
	if st.Held > 0 {
		n.tellClient(dc, fmt.Sprintf("[%s] %d message(s) queued", p.nick, st.Held))
	}
	if !p.asked.IsZero() && st.State != otrcore.StateEncrypted {
		n.tellClient(dc, fmt.Sprintf("[%s] asked for a private conversation at %s, no answer yet", p.nick, p.asked.Local().Format("15:04:05")))
	}
	if len(st.Instances) > 1 || (len(st.Instances) == 1 && !st.Instances[0].Current) {
		n.tellInstances(dc, p, st)
	}
	return nil
}

// tellInstances lists the peer's OTR sessions, one line each.
func (n *network) tellInstances(dc *downstream, p *otrPeer, st otrcore.Status) {
	for _, in := range st.Instances {
		line := fmt.Sprintf("[%s] instance %08x: %s, OTRv%d", p.nick, in.Instance, in.State, in.Version)
		if in.HasFingerprint {
			line += fmt.Sprintf(", key %s (%s)", in.Fingerprint, trustWord(in.Trusted))
		}
		if in.Current {
			line += ", your messages go here"
		}
		n.tellClient(dc, line)
	}
}

func cmdInstance(n *network, dc *downstream, args []string) error {
	p, err := n.knownPeer(args[0])
	if err != nil {
		return err
	}
	st := p.conv.Status()
	if len(args) == 1 {
		if len(st.Instances) == 0 {
			n.tellClient(dc, fmt.Sprintf("[%s] no OTR session", p.nick))
			return nil
		}
		n.tellInstances(dc, p, st)
		return nil
	}
	tag, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(args[1]), "0x"), 16, 32)
	if err != nil {
		return fmt.Errorf("%q is not an instance; /msg *otr instance %s lists them", args[1], p.nick)
	}
	if err := p.conv.SetCurrentInstance(uint32(tag)); err != nil {
		if errors.Is(err, otrcore.ErrUnknownInstance) || errors.Is(err, otrcore.ErrNotEncrypted) {
			return fmt.Errorf("%s has no encrypted session with instance %08x; /msg *otr instance %s lists them", p.nick, tag, p.nick)
		}
		return err
	}
	p.engage(n.now())
	st = p.conv.Status()
	n.stateToClients(p.nick, fmt.Sprintf("your messages now go to instance %08x (key %s, %s)", st.Instance, shortFP(st.Fingerprint), trustWord(st.Trusted)),
		fmt.Sprintf("your messages to %s now go to the session with instance %08x, key %s (%s)", p.nick, st.Instance, st.Fingerprint, trustWord(st.Trusted)))
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
		n.tellClient(dc, "no peers known yet")
		return nil
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == maxListLines {
			n.tellClient(dc, fmt.Sprintf("… and %d more; use fingerprint <nick> or status <nick>", len(keys)-i))
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
		n.tellClient(dc, line)
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
	pieces := splitText(text, n.decidePolicy(nick).fragSize)
	lines := make([]string, len(pieces))
	for i, p := range pieces {
		lines[i] = formatMessage(msg("", "PRIVMSG", nick, p))
	}
	if err := n.toUpstream(lines...); err != nil {
		return fmt.Errorf("not sent: %w", err)
	}
	for _, p := range pieces {
		n.echoToClients(dc, "PRIVMSG", nick, p, nil)
	}
	n.tellClient(dc, fmt.Sprintf("[%s] sent in clear, NOT encrypted", nick))
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
		return fmt.Errorf("release: %w", err)
	}
	return n.applyResult(p, res)
}

func cmdDiscard(n *network, dc *downstream, args []string) error {
	p, err := n.knownPeer(args[0])
	if err != nil {
		return err
	}
	n.tellClient(dc, fmt.Sprintf("[%s] %d queued message(s) discarded", p.nick, p.conv.DiscardHeld()))
	return nil
}
