package proxy

import (
	"context"
	"fmt"
	"sort"
	"strconv"
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
}

func newOTRState(n *network) (*otrState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), identityTimeout)
	defer cancel()
	id, err := n.srv.opts.Identities.Identity(ctx, n.cfg.Name)
	if err != nil {
		return nil, err
	}
	pol, err := otrcore.ParsePolicy(n.cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	o := &otrState{
		id:       id,
		acct:     &otrcore.Account{Key: id.Key, InstanceTag: id.InstanceTag, Trust: id.Trust},
		policy:   pol,
		policies: map[string]otrcore.Policy{},
		peers:    map[string]*otrPeer{},
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

// fragSize is the OTR fragment size for messages to nick.
func (n *network) fragSize(nick string) int {
	if k, err := strconv.Atoi(n.setting("fragment_size")); err == nil && k > 0 {
		return k
	}
	return fragmentSize(n.nick, n.user, n.host, nick)
}

// encryptsTo reports whether a private message to nick would travel
// encrypted (or wait for encryption) rather than in clear.
func (n *network) encryptsTo(nick string) bool {
	if n.ignoredBy(nick) != "" {
		return false
	}
	if p := n.lookupPeer(nick); p != nil {
		if st := p.conv.Status(); st.State != otrcore.StatePlaintext || peerEncrypted(st) {
			return true
		}
	}
	return n.effectivePolicy(nick)&otrcore.RequireEncryption != 0
}

// peer returns (creating) the conversation with nick.
func (n *network) peer(nick string) *otrPeer {
	key := n.casemap.fold(nick)
	p := n.otr.peers[key]
	if p == nil {
		if len(n.otr.peers) >= maxPeers {
			n.evictPeer()
		}
		p = &otrPeer{key: key, nick: nick}
		p.conv = otrcore.NewConversation(n.otr.acct, key, otrcore.Options{
			Policy:         n.effectivePolicy(nick),
			MaxMessageSize: n.fragSize(nick),
			QueryText:      n.nick + " has requested an Off-the-Record private conversation, but your client does not seem to support OTR.",
		})
		n.otr.peers[key] = p
	}
	p.nick = nick
	if p.prefix == nil || p.prefix.Name != nick {
		p.prefix = &irc.Prefix{Name: nick}
	}
	p.conv.SetMaxMessageSize(n.fragSize(nick))
	p.conv.SetPolicy(n.effectivePolicy(nick))
	return p
}

// maxPeers bounds the conversations kept per network: every nick that
// sends us a private message gets one.
const maxPeers = 20000

// evictPeer forgets one conversation that holds nothing worth keeping (no
// session, nothing queued).
func (n *network) evictPeer() {
	for key, p := range n.otr.peers {
		st := p.conv.Status()
		if st.State == otrcore.StatePlaintext && st.Held == 0 && !peerEncrypted(st) {
			delete(n.otr.peers, key)
			return
		}
	}
}

// lookupPeer finds an existing conversation. Like peer, it brings the
// conversation's policy up to date: policies depend on settings, the
// ignore list, the trust book and the configuration (which Reload
// changes), so they are recomputed whenever a conversation is used.
func (n *network) lookupPeer(nick string) *otrPeer {
	p := n.otr.peers[n.casemap.fold(nick)]
	if p != nil {
		p.conv.SetPolicy(n.effectivePolicy(p.nick))
	}
	return p
}

// policyFor is the policy a conversation with nick runs under.
func (n *network) policyFor(nick string) otrcore.Policy { return n.effectivePolicy(nick) }

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
	oldKey, newKey := n.casemap.fold(oldNick), n.casemap.fold(newNick)
	p := n.otr.peers[oldKey]
	if p == nil || oldKey == newKey {
		if p != nil {
			p.nick = newNick
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
	p.conv.SetPolicy(n.effectivePolicy(newNick))
	if st := p.conv.Status(); st.State != otrcore.StatePlaintext {
		n.tellClientsAbout(newNick, fmt.Sprintf("%s is now known as %s; the private conversation follows the nick", oldNick, newNick))
	}
}
