package otrcore

import (
	"crypto/rand"
	"io"
	"slices"
	"time"
)

// Timers and bounds of a conversation. Times come from the caller.
const (
	// heartbeatInterval: after receiving a data message, if we have not
	// sent one for this long, we send an empty one so keys rotate and old
	// MAC keys get revealed.
	heartbeatInterval = 60 * time.Second
	// akeTimeout: an unfinished AKE's secrets are forgotten after this.
	akeTimeout = 60 * time.Second
	// fragmentTimeout: a partial fragmented message that received no
	// piece for this long is forgotten. It counts from the last piece, not
	// the first: a long message at an IRC server's pace (a line every two
	// seconds or so) may take minutes, but never pauses this long.
	fragmentTimeout = 90 * time.Second
	// idleCompact: a session that has neither sent nor received for this
	// long drops the expanded cipher and MAC state it rebuilds on demand.
	idleCompact = 5 * time.Minute
	// resendWindow: after an OTR error, our last message is offered again
	// to a re-established session if it was sent this recently.
	resendWindow = 60 * time.Second
	// errorInterval: we send at most one OTR error message per peer per
	// interval, so two implementations cannot loop on errors.
	errorInterval = 10 * time.Second
	// queryInterval: while an AKE we asked for is pending, further held
	// messages do not send further queries more often than this.
	queryInterval = 10 * time.Second
	// maxHeld and maxHeldBytes bound the messages held for encryption.
	maxHeld      = 32
	maxHeldBytes = 64 * 1024
	// maxInstances bounds the remote instances tracked for one peer; a
	// hostile peer inventing tags cannot grow memory beyond it.
	maxInstances = 8
	// defaultErrorText is sent in OTR error messages.
	defaultErrorText = "Your message could not be decrypted by the recipient."
	// maxMessageText bounds one encrypted message, so that its encoding
	// stays well inside what receivers reassemble (64 KiB here).
	maxMessageText = 32 * 1024
	// maxSMPQuestion bounds the SMP question so that TLV 7 (question,
	// NUL, six 1536-bit MPIs) fits its 16-bit length.
	maxSMPQuestion = 16 * 1024
	// resentPrefix marks a message sent again after a re-key.
	resentPrefix = "[resent] "
)

// instance is our state for one remote instance of the peer: the OTRv2 or
// untagged context (tag 0) or one OTRv3 instance tag.
type instance struct {
	tag      uint32
	version  uint16
	state    MsgState
	ake      *ake // nil unless an AKE is under way
	keys     *keyState
	hasFP    bool // fp is set: a session was established at least once
	fp       Fingerprint
	ssid     [8]byte
	revealer bool // we sent the Reveal Signature in the AKE
	smp      smpState
	frag     reassembler
	lastSent time.Time
	lastRecv time.Time
	lastUsed time.Time
	// recvSinceSent: a data message with text or TLVs arrived after our
	// last one, so the peer is waiting for our next key (heartbeat
	// candidate). A heartbeat never sets it: two engines would otherwise
	// answer each other's heartbeats forever.
	recvSinceSent bool
}

// authState is the instance's AKE state (NONE when no AKE runs).
func (in *instance) authState() authState {
	if in.ake == nil {
		return authNone
	}
	return in.ake.state
}

// startingAKE returns the instance's AKE state, allocating it when an
// AKE begins; it is dropped again when the AKE ends.
func (in *instance) startingAKE() *ake {
	if in.ake == nil {
		in.ake = &ake{}
	}
	return in.ake
}

// dropAKE forgets the AKE state and its secrets.
func (in *instance) dropAKE() {
	in.ake.reset()
	in.ake = nil
}

// Conversation is the OTR state for one peer (on IRC, one nick) of one
// Account: a message state per remote instance, the AKE, the data-phase
// keys, SMP and fragment reassembly. It performs no I/O and reads no
// clock: every method takes the current time and returns what to send.
//
// A Conversation is not safe for concurrent use; the caller serialises
// calls (the proxy gives each network one owning goroutine).
type Conversation struct {
	acct *Account
	peer string
	opts Options
	gr   *group
	rand io.Reader

	master    *instance   // tag 0: OTRv2 and AKEs started before the peer's tag is known
	instances []*instance // OTRv3 instances, each with its own tag

	// current is the instance user messages and SMP go to (nil until a
	// session is set up, and after End). boundFP is the key the user was
	// talking to there, when bound: the engine never moves user messages
	// on its own to a different key that is not trusted (see selectable).
	current *instance
	boundFP Fingerprint
	bound   bool

	held      []string
	heldBytes int
	lastQuery time.Time
	// asked: the user asked for a private conversation (Start) and none
	// has started since, nor did the user End: what the user types is
	// held, whatever the policy, rather than sent in clear while the key
	// exchange the user asked for is on its way.
	asked bool

	// gotPlaintext: a plaintext message arrived since we last entered
	// PLAINTEXT, so we stop offering whitespace tags.
	gotPlaintext bool

	lastText     string
	lastTextAt   time.Time
	lastTextInst *instance
	resendArmed  bool

	lastError time.Time
	seenFPs   []Fingerprint

	// lastActivity is the time of the last call carrying traffic or a
	// user action (anything but Tick and Status).
	lastActivity time.Time
}

// NewConversation returns the conversation state for peer. acct must have
// a Key and a valid InstanceTag.
func NewConversation(acct *Account, peer string, opts Options) *Conversation {
	r := acct.Rand
	if r == nil {
		r = rand.Reader
	}
	c := &Conversation{acct: acct, peer: peer, opts: opts, gr: otrGroup(), rand: r}
	c.master = &instance{}
	return c
}

// Peer returns the peer name trust queries use.
func (c *Conversation) Peer() string { return c.peer }

// SetPeer renames the peer (on IRC, after a nick change): the sessions
// carry on, and trust and known-fingerprint queries use the new name.
func (c *Conversation) SetPeer(name string) { c.peer = name }

// SetPolicy changes the policy for future messages.
func (c *Conversation) SetPolicy(p Policy) { c.opts.Policy = p }

// Policy returns the current policy.
func (c *Conversation) Policy() Policy { return c.opts.Policy }

// SetMaxMessageSize changes the fragmentation limit (0 disables it).
func (c *Conversation) SetMaxMessageSize(n int) { c.opts.MaxMessageSize = n }

// enabled reports whether OTR is on at all for this peer: the policy
// allows a version, or a session set up earlier is still encrypted or
// finished (turning the policy off must not make it send in clear).
func (c *Conversation) enabled() bool {
	if c.opts.Policy.versions() != 0 {
		return true
	}
	for _, in := range c.all() {
		if in.state != StatePlaintext {
			return true
		}
	}
	return false
}

func (c *Conversation) env() akeEnv {
	return akeEnv{gr: c.gr, rand: c.rand, key: c.acct.Key, pool: c.acct.DHKeys}
}

func (r *Result) event(e Event) { r.Events = append(r.Events, e) }

// send appends one message of the given kind for the instance tagged tag.
func (r *Result) send(kind OutKind, tag uint32, lines ...string) {
	r.Send = append(r.Send, Outgoing{Kind: kind, Instance: tag, Lines: lines})
}

// instanceFor finds or creates the state for a v3 instance tag; it
// returns nil when create is false and the tag is unknown, or when the
// instance table is full of encrypted sessions.
func (c *Conversation) instanceFor(tag uint32, create bool, now time.Time) *instance {
	for _, in := range c.instances {
		if in.tag == tag {
			in.lastUsed = now
			return in
		}
	}
	if !create {
		return nil
	}
	if len(c.instances) >= maxInstances {
		victim := -1
		for i, in := range c.instances {
			if in.state == StatePlaintext && in != c.current && (victim < 0 || in.lastUsed.Before(c.instances[victim].lastUsed)) {
				victim = i
			}
		}
		if victim < 0 {
			return nil
		}
		c.forgetInstance(c.instances[victim])
		c.instances = slices.Delete(c.instances, victim, victim+1)
	}
	in := &instance{tag: tag, lastUsed: now}
	c.instances = append(c.instances, in)
	return in
}

// forgetInstance wipes every secret of an instance.
func (c *Conversation) forgetInstance(in *instance) {
	in.dropAKE()
	in.keys.wipe()
	in.keys = nil
	in.smp.reset()
	in.frag.reset()
}

// all returns the master context followed by every v3 instance.
func (c *Conversation) all() []*instance {
	return append([]*instance{c.master}, c.instances...)
}

// Status summarises the conversation for display: the current instance
// (where user messages and SMP go) and every instance with a session or
// an AKE under way.
func (c *Conversation) Status() Status {
	st := Status{Held: len(c.held), Asked: c.asked}
	if in := c.current; in != nil {
		st.State = in.state
		st.Version = int(in.version)
		st.Instance = in.tag
		if in.hasFP {
			st.Fingerprint, st.HasFingerprint = in.fp, true
			st.Trusted = c.trusted(in.fp)
		}
		st.SSID, st.WeSentRevealSig = in.ssid, in.revealer
		st.SMPInProgress = in.smp.inProgress()
		st.SMPAwaitingSecret = in.smp.awaitingSecret()
		st.SMPQuestion, st.SMPHasQuestion = in.smp.pendingQuestion()
		st.KeyNotConfirmed = in.state == StateEncrypted && !c.selectable(in)
	}
	for _, i := range c.all() {
		if i.state != StatePlaintext || i.ake.active() {
			is := InstanceStatus{Instance: i.tag, State: i.state, Version: int(i.version), Current: i == c.current}
			if i.hasFP {
				is.Fingerprint, is.HasFingerprint = i.fp, true
				is.Trusted = c.trusted(i.fp)
			}
			st.Instances = append(st.Instances, is)
		}
	}
	return st
}
