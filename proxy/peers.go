package proxy

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
)

// identityTimeout bounds waiting for a key at startup (first run
// generates one).
const identityTimeout = 2 * time.Minute

// otrState is the OTR side of a network: the identity and one
// Conversation per peer nick. Owned by the network goroutine.
type otrState struct {
	id       *Identity
	acct     *otrcore.Account
	policy   otrcore.Policy
	policies map[string]otrcore.Policy // by folded nick
	peers    map[string]*otrPeer       // by folded nick
	// closed remembers, by folded nick, the private conversations otrbnc
	// forgot while they were encrypted or finished (peermem.go): the
	// user's next message to the nick is refused rather than sent in clear.
	closed map[string]time.Time
}

// otrPeer is one nick we talk to privately.
type otrPeer struct {
	key    string // folded nick
	nick   string // as last seen or typed
	prefix *irc.Prefix
	conv   *otrcore.Conversation
	// fragTags are the tags of the first fragment of the message being
	// reassembled; the whole message is shown with them.
	fragTags irc.Tags
	// engagedUntil is when the user last addressed this peer (a message,
	// a command about it) plus engagement: until then, replies to the peer
	// travel with the user's own traffic.
	engagedUntil time.Time
	// closedAt is when otrbnc forgot a private conversation with this nick
	// that was encrypted or finished (see otrState.closed); until the user
	// runs start or finish, or a new session starts, clear text is refused.
	closedAt time.Time
	// addressed says the user addressed this peer at least once: its
	// conversation is never dropped to make room (peermem.go).
	addressed bool
	// replies limits protocol replies to the peer while not engaged.
	replies replyBudget
	// created is when otrbnc created the conversation.
	created time.Time
	// mem is what the conversation counted in the network's memory
	// account when last measured (peermem.go).
	mem int
	// asked is when the user last asked the peer for a private
	// conversation (start, or a message queued under policy always) and
	// no session has started since; askHinted says the user was told that
	// no answer came.
	asked     time.Time
	askHinted bool
	// peerPolicy is what the policy inputs decided for this nick; it is
	// recomputed (applyPolicy) whenever an input changes, never on a
	// look-up.
	peerPolicy
}

// engagement is how long a peer counts as one the user talks to after the
// user last addressed it.
const engagement = 30 * time.Minute

// engage records that the user addressed p.
func (p *otrPeer) engage(now time.Time) {
	p.engagedUntil = now.Add(engagement)
	p.addressed = true
}

// engaged reports whether the user addressed p recently.
func (p *otrPeer) engaged(now time.Time) bool { return now.Before(p.engagedUntil) }

// replyBudget is a token bucket for the protocol replies otrbnc sends a
// peer the user is not talking to: replyBurst at once, then one per
// replyRefill. A nick flooding key exchanges gets a few answers, not one
// per message.
type replyBudget struct {
	tokens float64
	at     time.Time
}

const (
	replyBurst  = 6
	replyRefill = 30 * time.Second
)

// take spends a token if there is one.
func (b *replyBudget) take(now time.Time) bool {
	if b.at.IsZero() {
		b.tokens, b.at = replyBurst, now
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(replyBurst, b.tokens+d.Seconds()/replyRefill.Seconds())
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// peerPolicy is what the policy inputs (configuration, *otr settings,
// policy rules, ignore list, trust book, our visible prefix) decide for
// one nick.
type peerPolicy struct {
	// policy is what the engine runs under (PolicyNever when ignored).
	policy otrcore.Policy
	// source says where policy comes from, for status.
	source string
	// ignored is the ignore mask that matches the nick, or "".
	ignored string
	// fragSize is the OTR fragment size for messages to the nick.
	fragSize int
}

func newOTRState(n *network) (*otrState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), identityTimeout)
	defer cancel()
	id, err := n.srv.opts.Identities.Identity(ctx, n.cfg.Name)
	if err != nil {
		return nil, err
	}
	// The log is where an administrator first sees the key (generated
	// just now the first time): peers verify this fingerprint.
	n.logger.Info("OTR key ready", "fingerprint", id.Key.Fingerprint().String())
	pol, err := otrcore.ParsePolicy(n.cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	o := &otrState{
		id:       id,
		acct:     &otrcore.Account{Key: id.Key, InstanceTag: id.InstanceTag, Trust: id.Trust, DHKeys: otrcore.NewDHKeyPool(dhKeyPoolSize, nil)},
		policy:   pol,
		policies: map[string]otrcore.Policy{},
		peers:    map[string]*otrPeer{},
		closed:   map[string]time.Time{},
	}
	for nick, pc := range n.cfg.Peers {
		p, err := otrcore.ParsePolicy(pc.Policy)
		if err != nil {
			return nil, fmt.Errorf("peers.%s: %w", nick, err)
		}
		o.policies[n.casemap.fold(nick)] = p
	}
	return o, nil
}

// refold re-keys the maps after a CASEMAPPING change (networks announce
// it before any private message, so this is rare). A conversation keeps
// the peer name it was created with for the engine and the trust book.
func (o *otrState) refold(cm casemapping) {
	peers := make(map[string]*otrPeer, len(o.peers))
	for _, p := range o.peers {
		p.key = cm.fold(p.nick)
		peers[p.key] = p
	}
	o.peers = peers
	pols := make(map[string]otrcore.Policy, len(o.policies))
	for k, v := range o.policies {
		pols[cm.fold(k)] = v
	}
	o.policies = pols
}

// decidePolicy computes the policy inputs' decision for nick. It has no
// side effects; conversations keep its result (applyPolicy).
func (n *network) decidePolicy(nick string) peerPolicy {
	d := peerPolicy{fragSize: fragmentSize(n.nick, n.user, n.host, nick)}
	if k, err := strconv.Atoi(n.setting("fragment_size")); err == nil && k > 0 {
		d.fragSize = k
	}
	if d.ignored = n.matchIgnore(nick); d.ignored != "" {
		d.policy, d.source = otrcore.PolicyNever, "ignored by "+d.ignored
		return d
	}
	d.policy, d.source = n.policySource(nick)
	if n.setting("whitespace_tags") == "off" {
		d.policy &^= otrcore.SendWhitespaceTag
	}
	return d
}

// applyPolicy recomputes p's policy and fragment size and hands them to
// the engine. Call it when an input changes for p (its nick, its known
// fingerprints).
func (n *network) applyPolicy(p *otrPeer) {
	d := n.decidePolicy(p.nick)
	if d.ignored != "" && p.conv != nil && p.sessionGuarded() {
		// The nick became ignored mid-conversation (a rename into an
		// ignored mask): the conversation keeps its policy until it ends,
		// so that nothing it holds leaves in clear.
		d.policy, d.source = p.policy, p.source
		if p.ignored == "" {
			d.source += "; kept while the private conversation lasts, although the ignore mask " + d.ignored + " matches"
		}
	}
	if d.policy != p.policy {
		p.conv.SetPolicy(d.policy)
	}
	if d.fragSize != p.fragSize {
		p.conv.SetMaxMessageSize(d.fragSize)
	}
	p.peerPolicy = d
}

// applyPolicies recomputes every conversation's policy and fragment
// size. Call it when an input changes for everyone: a setting, a policy
// rule, the ignore list, a reload, the trust book, the case mapping, our
// nick or visible user@host.
func (n *network) applyPolicies() {
	for _, p := range n.otr.peers {
		n.applyPolicy(p)
	}
}

// ignoredBy returns the ignore mask that makes otrbnc leave nick alone,
// or "": the conversation's recorded decision when there is one.
func (n *network) ignoredBy(nick string) string {
	if p := n.lookupPeer(nick); p != nil {
		return p.ignored
	}
	return n.matchIgnore(nick)
}

// guarded reports whether text to and from nick must never travel in
// clear (docs/security.md, I1 and I3): its conversation is encrypted or
// finished, holds queued messages, or its policy requires encryption. A
// conversation in such a state stays guarded even if the nick is now on
// the ignore list (a peer renamed into an ignored mask).
func (n *network) guarded(nick string) bool {
	p := n.lookupPeer(nick)
	switch {
	case p != nil && n.isChannel(nick):
		return p.sessionGuarded() // policies are for nicks
	case p != nil:
		return p.guarded()
	case n.otr.closed[n.casemap.fold(nick)] != time.Time{}:
		return true
	case n.isChannel(nick):
		return false
	}
	return n.decidePolicy(nick).policy&otrcore.RequireEncryption != 0
}

// guarded is network.guarded for an existing conversation.
func (p *otrPeer) guarded() bool {
	return p.sessionGuarded() || p.policy&otrcore.RequireEncryption != 0
}

// sessionGuarded reports whether the conversation's own state forbids
// clear text: encrypted or finished, or messages queued, or a private
// conversation otrbnc closed (closedAt) and the user has not said what
// next.
func (p *otrPeer) sessionGuarded() bool {
	st := p.conv.Status()
	return st.State != otrcore.StatePlaintext || peerEncrypted(st) || st.Held > 0 || !p.closedAt.IsZero()
}

// leftAlone reports whether otrbnc passes text to and from nick untouched
// (no OTR at all): the nick is ignored and no conversation with it must
// stay private.
func (n *network) leftAlone(nick string) bool {
	return n.ignoredBy(nick) != "" && !n.guarded(nick)
}

// peer returns the conversation with nick, creating it.
func (n *network) peer(nick string) *otrPeer {
	key := n.casemap.fold(nick)
	p := n.otr.peers[key]
	if p == nil {
		if len(n.otr.peers) >= maxPeers {
			n.evictPeer()
		}
		key, nick = strings.Clone(key), strings.Clone(nick)
		p = &otrPeer{key: key, nick: nick, created: n.now(), peerPolicy: n.decidePolicy(nick)}
		if t, ok := n.otr.closed[key]; ok {
			p.closedAt = t
			delete(n.otr.closed, key)
		}
		p.conv = otrcore.NewConversation(n.otr.acct, key, otrcore.Options{
			Policy:         p.policy,
			MaxMessageSize: p.fragSize,
			QueryText:      n.nick + " has requested an Off-the-Record private conversation, but your client does not seem to support OTR.",
		})
		n.otr.peers[key] = p
	}
	if p.nick != nick {
		p.nick = strings.Clone(nick)
	}
	if p.prefix == nil || p.prefix.Name != nick {
		p.prefix = &irc.Prefix{Name: p.nick}
	}
	return p
}

// ownedTags copies tags into strings of their own (see ownedPrefix); nil
// for none.
func ownedTags(tags irc.Tags) irc.Tags {
	if len(tags) == 0 {
		return nil
	}
	out := make(irc.Tags, len(tags))
	for k, v := range tags {
		out[strings.Clone(k)] = strings.Clone(v)
	}
	return out
}

// ownedPrefix copies pr into strings of its own: a prefix parsed from a
// line shares the line's memory, and a peer kept for long (there may be
// 20,000) must not keep a whole line alive through its nick.
func ownedPrefix(pr *irc.Prefix) *irc.Prefix {
	return &irc.Prefix{Name: strings.Clone(pr.Name), User: strings.Clone(pr.User), Host: strings.Clone(pr.Host)}
}

// lookupPeer finds an existing conversation, or nil.
func (n *network) lookupPeer(nick string) *otrPeer {
	return n.otr.peers[n.casemap.fold(nick)]
}

func peerEncrypted(st otrcore.Status) bool {
	if st.State == otrcore.StateEncrypted {
		return true
	}
	for _, in := range st.Instances {
		if in.State == otrcore.StateEncrypted {
			return true
		}
	}
	return false
}

func (n *network) sortedPeers() []*otrPeer {
	ps := make([]*otrPeer, 0, len(n.otr.peers))
	for _, p := range n.otr.peers {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].key < ps[j].key })
	return ps
}

// otrNickChange moves a conversation to a peer's new nick: the session
// (and the peer's OTR context, which is keyed by our nick) goes on.
func (n *network) otrNickChange(oldNick, newNick string) {
	if newNick == "" {
		return
	}
	newNick = strings.Clone(newNick) // kept: see ownedPrefix
	oldKey, newKey := n.casemap.fold(oldNick), strings.Clone(n.casemap.fold(newNick))
	p := n.otr.peers[oldKey]
	if p == nil || oldKey == newKey {
		if p != nil {
			p.nick = newNick
			n.applyPolicy(p) // the fragment size depends on the nick's length
		}
		return
	}
	if q := n.otr.peers[newKey]; q != nil {
		if st := q.conv.Status(); st.State != otrcore.StatePlaintext || st.Held > 0 {
			return // the new nick has a conversation of its own
		}
	}
	delete(n.otr.peers, oldKey)
	p.key, p.nick = newKey, newNick
	p.conv.SetPeer(newKey)
	if p.prefix != nil {
		p.prefix = &irc.Prefix{Name: newNick, User: p.prefix.User, Host: p.prefix.Host}
	}
	p.fragTags = nil
	n.otr.peers[newKey] = p
	n.applyPolicy(p)
	if st := p.conv.Status(); st.State != otrcore.StatePlaintext {
		n.tellClientsAbout(newNick, fmt.Sprintf("%s is now known as %s; the private conversation follows the nick", oldNick, newNick))
	}
}
