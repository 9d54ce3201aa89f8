package proxy

import (
	"fmt"
	"slices"
	"time"

	"otrbnc/otrcore"
)

// Memory that other nicks can fill. Every nick that sends a private
// message gets a conversation, and every conversation can be made to hold
// partial fragmented messages, key exchanges under way, instances and
// sessions (otrcore.Conversation.MemoryUse). A network keeps the sum under
// peer_memory_mb: when a message pushes it over, the conversations of
// strangers (peers the user never addressed) shed what they hold without
// a session (Conversation.Shed), then the ones idle longest are forgotten,
// sessions included, until the sum is back under the budget. Peers the
// user ever addressed, verified keys and queued messages are never
// touched, so strangers cannot crowd out the user's conversations, nor,
// by holding sessions, every newcomer's. A stranger's conversation is
// also forgotten after peerIdle without traffic, and there are at most
// maxPeers conversations.
//
// Conversations of peers the user addressed are forgotten too, once they
// hold nothing (expirable): no session on any instance, encrypted or
// finished by the peer, no key exchange, nothing queued, the user has not
// addressed the peer for the engagement time and it saw no traffic for
// peerIdle. A conversation the peer finished is kept: it refuses the
// user's messages until the user runs finish or start, and a new one
// would send them in clear.

const (
	// maxPeers bounds the conversations kept per network.
	maxPeers = 20000
	// peerIdle is how long a conversation without a session, queued
	// messages or engagement is kept after its last traffic.
	peerIdle = 10 * time.Minute
	// peerOverhead is what a conversation costs the proxy beyond the
	// engine's own estimate (the otrPeer, its map entry and strings).
	peerOverhead = 384
)

// peerMemory is a network's account of the memory its conversations hold.
type peerMemory struct {
	total  int // sum of otrPeer.mem
	limit  int
	high   int       // the highest total since memory was last given back (osmem.go)
	warned time.Time // when the last over-budget warning was logged
}

// accountPeer updates the network's memory account after an engine call
// on p, and sheds state if the budget is exceeded.
func (n *network) accountPeer(p *otrPeer) {
	if n.otr.peers[p.key] != p {
		return // forgotten meanwhile
	}
	m := p.memoryUse()
	n.mem.total += m - p.mem
	n.mem.high = max(n.mem.high, n.mem.total)
	p.mem = m
	if n.mem.total > n.mem.limit {
		n.shedPeers(n.mem.limit * 9 / 10)
	}
}

// memoryUse is what p holds: the engine's estimate, the tags kept for the
// message being reassembled, and the proxy's own overhead.
func (p *otrPeer) memoryUse() int {
	m := p.conv.MemoryUse() + peerOverhead
	for k, v := range p.fragTags {
		m += len(k) + len(v) + tagOverhead
	}
	return m
}

// tagOverhead is what one kept tag costs beyond its key and value.
const tagOverhead = 64

// forgetPeer removes p from the network; a session it held is wiped
// without telling the peer (it learns at its next message). If the
// conversation was private (encrypted or finished), the user is told, and
// the nick is remembered in otrState.closed so that the user's next
// message to it is refused instead of going out in clear: the user saw
// the conversation start and has not seen it end.
func (n *network) forgetPeer(p *otrPeer) {
	now := n.now()
	st := p.conv.Status()
	wasPrivate := st.State != otrcore.StatePlaintext || peerEncrypted(st)
	p.conv.End(now) // wipes the session keys; nothing is sent
	delete(n.otr.peers, p.key)
	n.mem.total -= p.mem
	p.mem = 0
	switch {
	case wasPrivate:
		n.rememberClosed(p.key, now)
		n.tellClientsAboutPeerEvent(p, noticeClosed, "otrbnc closed this private conversation; your next message will NOT be sent until you run start or finish",
			fmt.Sprintf("otrbnc closed the private conversation %s started (you never wrote to %s, and otrbnc keeps such conversations only while they are active). Your next message to %s will NOT be sent: run /msg *otr start %s for a new private conversation, or /msg *otr finish %s to talk in clear",
				p.nick, p.nick, p.nick, p.nick, p.nick))
	case !p.closedAt.IsZero():
		n.rememberClosed(p.key, p.closedAt)
	}
}

// maxClosed bounds the nicks remembered in otrState.closed; beyond it
// the oldest is dropped (logged).
const maxClosed = maxPeers

// rememberClosed records that otrbnc forgot a private conversation with
// the nick key at t.
func (n *network) rememberClosed(key string, t time.Time) {
	if len(n.otr.closed) >= maxClosed {
		oldest := ""
		for k, v := range n.otr.closed {
			if oldest == "" || v.Before(n.otr.closed[oldest]) {
				oldest = k
			}
		}
		delete(n.otr.closed, oldest)
		n.logger.Warn("too many closed private conversations remembered; the oldest is forgotten", "count", maxClosed)
	}
	n.otr.closed[key] = t
}

// lastActive is when p last saw traffic, or was created.
func (p *otrPeer) lastActive() time.Time {
	if t := p.conv.LastActivity(); t.After(p.created) {
		return t
	}
	return p.created
}

// sheddable reports whether p is a stranger whose state otrbnc may drop:
// the user never addressed it, nothing is queued for it, and its key, if
// any, is not verified.
func (n *network) sheddable(p *otrPeer, now time.Time) bool {
	if p.addressed || p.engaged(now) {
		return false
	}
	st := p.conv.Status()
	return st.Held == 0 && !(st.HasFingerprint && st.Trusted)
}

// shedPeers brings the memory account down to target: first the
// sheddable conversations drop their partial state, idle ones first, then
// the idle ones are forgotten.
func (n *network) shedPeers(target int) {
	now := n.now()
	var cands []*otrPeer
	for _, p := range n.otr.peers {
		if n.sheddable(p, now) {
			cands = append(cands, p)
		}
	}
	slices.SortFunc(cands, func(a, b *otrPeer) int { return a.lastActive().Compare(b.lastActive()) })
	for _, p := range cands {
		if n.mem.total <= target {
			return
		}
		p.conv.Shed()
		p.fragTags = nil // the partial message they belonged to is gone
		m := p.memoryUse()
		n.mem.total += m - p.mem
		p.mem = m
	}
	for _, p := range cands {
		if n.mem.total <= target {
			return
		}
		n.forgetPeer(p)
	}
	if now := n.now(); n.mem.total > target && now.Sub(n.mem.warned) >= time.Minute {
		n.mem.warned = now
		n.logger.Warn("peer memory over budget: what remains belongs to peers you talked to, verified keys or queued messages",
			"bytes", n.mem.total, "budget", n.mem.limit)
	}
}

// expirePeers forgets conversations that saw no traffic for peerIdle
// and hold nothing worth keeping: strangers' (sheddable), and any that
// is expirable (called from the network's tick).
func (n *network) expirePeers(now time.Time) {
	for _, p := range n.otr.peers {
		if now.Sub(p.lastActive()) >= peerIdle && (n.sheddable(p, now) || expirable(p, now)) {
			n.forgetPeer(p)
		}
	}
}

// expirable reports whether forgetting p changes nothing the user could
// notice in what otrbnc sends or refuses: the user has not addressed p
// for the engagement time, and its conversation has no session on any
// instance (encrypted or finished by the peer), no key exchange under
// way and nothing queued. A conversation created anew for the nick then
// behaves as this one would: its policy is decided from the same inputs
// (decidePolicy), and the keys the nick showed stay in the trust book.
func expirable(p *otrPeer, now time.Time) bool {
	if p.engaged(now) {
		return false
	}
	st := p.conv.Status()
	return st.State == otrcore.StatePlaintext && len(st.Instances) == 0 && st.Held == 0
}

// evictPeer makes room for one more conversation: the sheddable one idle
// longest is forgotten. With none, the table grows past maxPeers (every
// conversation then holds a session, queued messages or engagement).
func (n *network) evictPeer() {
	now := n.now()
	var victim *otrPeer
	for _, p := range n.otr.peers {
		if n.sheddable(p, now) && (victim == nil || p.lastActive().Before(victim.lastActive())) {
			victim = p
		}
	}
	if victim != nil {
		n.forgetPeer(victim)
	}
}
