package otrcore

import "time"

// Approximate heap sizes behind MemoryUse. sessionBytes is the measured
// heap of one side of an established session (BenchmarkSessionHeap,
// docs/performance.md); the others are the sizes of the structures and
// the DH and SMP values they hold, rounded up.
const (
	conversationBytes = 512  // the Conversation and its master context
	instanceBytes     = 512  // one peer instance's own state
	sessionBytes      = 4096 // data-phase keys of a session
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
		if in.keys != nil {
			n += sessionBytes
		}
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
// SMP exchanges and the user's held messages are kept.
func (c *Conversation) Shed() {
	c.master.frag.reset()
	c.master.dropAKE()
	kept := c.instances[:0]
	for _, in := range c.instances {
		in.frag.reset()
		in.dropAKE()
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
