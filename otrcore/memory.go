package otrcore

import "time"

// Approximate heap sizes behind MemoryUse. sessionBytes is the measured
// heap of one side of an established session once idle
// (BenchmarkSessionHeap's idle-heapB/session, docs/performance.md),
// rounded up; directionBytes (AES key schedule, HMAC states, MAC prefix
// cache) and dataWorkBytes (the SHA-1 digest and buffers of sealing and
// opening) are what an active session holds on top, measured the same
// way; the others are the sizes of the structures and the DH and SMP
// values they hold, rounded up.
const (
	conversationBytes = 512  // the Conversation and its master context
	instanceBytes     = 512  // one peer instance's own state
	sessionBytes      = 2560 // data-phase keys of a session
	directionBytes    = 1024 // one expanded direction of a pair of session keys
	dataWorkBytes     = 512  // a session's work area
	akeBytes          = 2048 // an AKE under way: DH key pair, messages
	smpBytes          = 2048 // an SMP exchange under way
)

// MemoryUse returns an approximate number of bytes the conversation
// holds: partial fragmented messages, AKEs and SMP exchanges under way,
// per-instance and session state, held messages. A caller holding many
// conversations can keep their sum under a budget with Shed and by
// dropping idle ones (LastActivity).
func (c *Conversation) MemoryUse() int {
	n := conversationBytes + c.heldBytes + len(c.lastText) + 20*len(c.seenFPs)
	for _, in := range c.all() {
		n += instanceBytes + cap(in.frag.buf)
		n += in.keys.memoryUse()
		if in.ake != nil {
			n += akeBytes
		}
		if in.smp.inProgress() {
			n += smpBytes
		}
	}
	return n
}

// Shed drops what a peer can make the conversation hold without a
// session: partial fragmented messages, AKEs under way (ours included:
// a pending handshake then fails and has to be started again), and the
// instances that have no session, except the current one. Sessions, their
// SMP exchanges and the user's held messages are kept; sessions drop the
// cipher state they rebuild on their next message, as after a long idle
// time (see Tick).
func (c *Conversation) Shed() {
	c.master.frag.reset()
	c.master.dropAKE()
	c.master.keys.compact()
	kept := c.instances[:0]
	for _, in := range c.instances {
		in.frag.reset()
		in.dropAKE()
		in.keys.compact()
		if in.state == StatePlaintext && in != c.current {
			c.forgetInstance(in)
			continue
		}
		kept = append(kept, in)
	}
	clear(c.instances[len(kept):])
	c.instances = kept
}

// LastActivity returns the time passed to the last call that carried
// traffic or a user action (Receive, Send, Start, End, the SMP and held
// message calls), or the zero time if none yet; Tick and Status do not
// count. With it a caller can forget conversations idle for long.
func (c *Conversation) LastActivity() time.Time { return c.lastActivity }

// memoryUse approximates the heap a session's keys hold: the keys
// themselves, each direction whose cipher and MAC state is expanded, and
// the work area (see compact). A nil keyState holds nothing.
func (ks *keyState) memoryUse() int {
	if ks == nil {
		return 0
	}
	n := sessionBytes
	for _, p := range ks.pairs {
		if p.send != nil {
			n += directionBytes
		}
		if p.recv != nil {
			n += directionBytes
		}
	}
	if ks.work != nil {
		n += dataWorkBytes
	}
	return n
}
