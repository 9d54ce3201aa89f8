package otrcore

import (
	"errors"
	"fmt"
	"io"
)

// TrustStore answers the engine's questions about a peer's long-term
// keys. The keystore package provides the real implementation; peer is the
// name the caller gave the Conversation (on IRC, a case-folded nick).
type TrustStore interface {
	// IsTrusted reports whether fp has been verified (by hand or by SMP)
	// for peer.
	IsTrusted(peer string, fp [20]byte) bool
	// KnownFingerprints returns every fingerprint seen before for peer,
	// trusted or not.
	KnownFingerprints(peer string) [][20]byte
}

// Account is what all conversations of one local identity share: the
// long-term key, the instance tag and the trust store. Its fields are
// read-only once conversations use it.
type Account struct {
	// Key is our long-term DSA key.
	Key *PrivateKey
	// InstanceTag is our OTRv3 instance tag, at least 0x100, persisted by
	// the caller.
	InstanceTag uint32
	// Trust answers trust queries; nil means nothing is trusted and no
	// fingerprint is known beyond this Conversation's memory.
	Trust TrustStore
	// Rand is the source of randomness; nil means crypto/rand.Reader.
	Rand io.Reader
	// DHKeys, when set, supplies DH key pairs computed ahead of need (see
	// DHKeyPool); nil computes each when needed.
	DHKeys *DHKeyPool
}

// Options are the per-conversation settings; they can be changed between
// calls with the Conversation's setters.
type Options struct {
	// Policy decides when OTR is offered, started and required.
	Policy Policy
	// MaxMessageSize is the longest line, in bytes, the transport carries
	// to the peer; longer OTR messages are fragmented. 0 disables
	// fragmentation.
	MaxMessageSize int
	// QueryText follows the "?OTRv23?" marker in query messages. Line
	// breaks are replaced by spaces so the query stays one line.
	QueryText string
	// ErrorText is what we send in an OTR error message when a message
	// from the peer cannot be read. Empty means a built-in text.
	ErrorText string
}

// MsgState is the message state of a conversation with one peer instance.
type MsgState int

// Message states (Protocol-v3.html, "The protocol state machine").
const (
	// StatePlaintext: messages are sent and received in clear.
	StatePlaintext MsgState = iota
	// StateEncrypted: an authenticated session is established.
	StateEncrypted
	// StateFinished: the peer ended the session; nothing is sent until the
	// user ends or restarts it.
	StateFinished
)

// String returns the state's name.
func (s MsgState) String() string {
	switch s {
	case StatePlaintext:
		return "plaintext"
	case StateEncrypted:
		return "encrypted"
	case StateFinished:
		return "finished"
	}
	return fmt.Sprintf("MsgState(%d)", int(s))
}

// Result is what one call into a Conversation produced.
type Result struct {
	// Text is the human-readable message received from the peer, with
	// whitespace tags and TLVs removed. It is valid when HasText is set.
	Text string
	// HasText reports whether Text should be shown to the user. It is false
	// for protocol messages, heartbeats and fragments still being
	// reassembled.
	HasText bool
	// Encrypted reports whether Text arrived inside an authenticated OTR
	// data message.
	Encrypted bool
	// Instance is the peer instance tag the received message came from
	// (0 for OTRv2 and plaintext).
	Instance uint32
	// For Encrypted text: Fingerprint is the key of the session it came
	// from, Trusted whether that key is verified, and Current whether
	// that session is the current one, where the user's replies go. Text
	// from a session that is not current (another instance of the peer,
	// perhaps with another key) should be marked as such.
	Fingerprint Fingerprint
	Trusted     bool
	Current     bool
	// Send lists the messages to transmit to the peer, in order.
	Send []Outgoing
	// Events reports what happened, in order.
	Events []Event
}

// Outgoing is one message to transmit to the peer. Its lines (fragments of
// one OTR message, or a single line) must go out in order, back to back,
// with nothing else to the same peer in between.
type Outgoing struct {
	// Kind says what the message is, so that a transport can pace and
	// coalesce without parsing the wire: a newer OutAKE message to the
	// same peer and Instance supersedes an older one not yet sent.
	Kind OutKind
	// Instance is the peer instance tag the message is addressed to; 0
	// for plaintext, queries, errors, OTRv2, and AKE messages sent before
	// the peer's tag is known.
	Instance uint32
	Lines    []string
}

// OutKind classifies an Outgoing message.
type OutKind int

// Kinds of outgoing messages.
const (
	// OutPlaintext is the user's message in clear (policy and state allow
	// it), possibly with a whitespace tag.
	OutPlaintext OutKind = iota + 1
	// OutQuery is an OTR Query Message.
	OutQuery
	// OutError is an OTR Error Message.
	OutError
	// OutAKE is one of the four AKE messages.
	OutAKE
	// OutText is a data message carrying the user's text (typed, released
	// from the queue or resent).
	OutText
	// OutControl is a data message without user text: a heartbeat, SMP,
	// the end of a session, an extra key.
	OutControl
)

var outKindNames = [...]string{OutPlaintext: "plaintext", OutQuery: "query", OutError: "error", OutAKE: "ake",
	OutText: "text", OutControl: "control"}

// String returns the kind's name.
func (k OutKind) String() string {
	if k > 0 && int(k) < len(outKindNames) {
		return outKindNames[k]
	}
	return fmt.Sprintf("OutKind(%d)", int(k))
}

// EventKind classifies an Event.
type EventKind int

// Event kinds.
const (
	// EventGoneSecure: an AKE completed. Fingerprint, SSID, Instance,
	// Version, Trusted, Refresh and Current are set.
	EventGoneSecure EventKind = iota + 1
	// EventGoneInsecure: an encrypted session ended on our side (the user
	// ended it), back to plaintext.
	EventGoneInsecure
	// EventPeerFinished: the peer ended the session (TLV 1); the
	// conversation is FINISHED and refuses to send until ended or
	// restarted.
	EventPeerFinished
	// EventPlaintextInSession: a plaintext message arrived while the
	// session is encrypted; Result.Text holds it, unauthenticated.
	EventPlaintextInSession
	// EventPlaintextWhileRequired: a plaintext message arrived with no
	// session while the policy requires encryption; Result.Text holds it,
	// to be shown with a warning that it was not encrypted (spec
	// "Receiving plaintext").
	EventPlaintextWhileRequired
	// EventUnreadable: an encrypted message could not be decrypted (wrong
	// or expired keys, failed MAC, replayed counter).
	EventUnreadable
	// EventMalformed: a line that starts like OTR (a LineMalformed line, see
	// Classify) or a reassembled message could not be parsed; it was not
	// shown. Err says why.
	EventMalformed
	// EventNotInPrivate: an encrypted data message arrived while we have no
	// session with that instance.
	EventNotInPrivate
	// EventMessageHeld: a message was queued until the session is
	// encrypted (REQUIRE_ENCRYPTION); a query was sent.
	EventMessageHeld
	// EventHeldSent: held messages went out encrypted. Count is set.
	EventHeldSent
	// EventHeldBlocked: held messages were not sent because the new
	// session's key is neither one seen before for this peer nor trusted.
	// They stay queued until ReleaseHeld or DiscardHeld.
	EventHeldBlocked
	// EventNewFingerprint: the peer presented a fingerprint not known
	// before for this peer (per TrustStore and this conversation).
	EventNewFingerprint
	// EventExtraKey: the peer sent TLV 8; ExtraKey, KeyUse and KeyUseData
	// are set.
	EventExtraKey
	// EventPeerError: the peer sent an OTR error message; Message holds
	// its text (unauthenticated, from the network).
	EventPeerError
	// EventProtocolError: a log-worthy protocol problem; Err describes it.
	// It never contains message plaintext.
	EventProtocolError
	// EventSMPRequest: the peer started SMP; Question/HasQuestion are set.
	// Answer with RespondSMP or AbortSMP (they act on the current
	// instance). Every SMP event carries the Instance and Fingerprint of
	// the session it belongs to.
	EventSMPRequest
	// EventSMPProgress: an SMP step completed; the protocol goes on.
	EventSMPProgress
	// EventSMPSucceeded: SMP finished and the secrets matched. Verified
	// tells whether this side may mark the fingerprint as trusted.
	EventSMPSucceeded
	// EventSMPFailed: SMP finished and the secrets differed.
	EventSMPFailed
	// EventSMPAborted: SMP was aborted by either side.
	EventSMPAborted
	// EventSMPCheated: the peer's SMP message failed a check; SMP was
	// aborted. Err says which.
	EventSMPCheated
	// EventQueryReceived: the peer asked for OTR with a query message, but
	// the policy does not allow answering (for instance it is never).
	EventQueryReceived
	// EventPolicyIgnored: an OTR message (or the first fragment of one)
	// arrived while the policy allows no OTR version (never), for an
	// instance without a session; it was ignored and not shown. Queries
	// give EventQueryReceived and errors EventPeerError instead.
	EventPolicyIgnored
	// EventTooLarge: an OTR message was longer than the engine accepts
	// (64 KiB reassembled, 256 KiB encoded) and was dropped. Size is the
	// number of bytes received for it when the limit was crossed.
	EventTooLarge
)

var eventNames = map[EventKind]string{
	EventGoneSecure: "gone-secure", EventGoneInsecure: "gone-insecure", EventPeerFinished: "peer-finished",
	EventPlaintextInSession: "plaintext-in-session", EventPlaintextWhileRequired: "plaintext-while-required",
	EventUnreadable: "unreadable", EventMalformed: "malformed",
	EventNotInPrivate: "not-in-private", EventMessageHeld: "message-held", EventHeldSent: "held-sent",
	EventHeldBlocked: "held-blocked", EventNewFingerprint: "new-fingerprint",
	EventExtraKey: "extra-key", EventPeerError: "peer-error", EventProtocolError: "protocol-error",
	EventSMPRequest: "smp-request", EventSMPProgress: "smp-progress", EventSMPSucceeded: "smp-succeeded",
	EventSMPFailed: "smp-failed", EventSMPAborted: "smp-aborted", EventSMPCheated: "smp-cheated",
	EventQueryReceived: "query-received", EventPolicyIgnored: "policy-ignored", EventTooLarge: "too-large",
}

// String returns the event kind's name.
func (k EventKind) String() string {
	if n, ok := eventNames[k]; ok {
		return n
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something the caller may want to show, log or act on.
// Only the fields documented for its Kind are set.
type Event struct {
	Kind EventKind
	// Instance is the peer instance tag concerned (0 for OTRv2).
	Instance uint32
	// Version is the protocol version of the session (2 or 3).
	Version int
	// Fingerprint is the peer's long-term key fingerprint.
	Fingerprint Fingerprint
	// SSID is the secure session id; see SSIDString for display.
	SSID [8]byte
	// WeSentRevealSig tells which SSID half to emphasise for display.
	WeSentRevealSig bool
	// Trusted reports whether Fingerprint is verified per the TrustStore.
	Trusted bool
	// Refresh is set on EventGoneSecure when the session was already
	// encrypted with the same key (a re-key), not a new session.
	Refresh bool
	// Current is set on EventGoneSecure when the session is the current
	// one, where user messages go. A new session with a different key
	// that is not trusted does not become current while the user is
	// talking to another key, and a session whose key changed that way
	// refuses user messages (Status.KeyNotConfirmed): the user chooses
	// with SetCurrentInstance.
	Current bool
	// Count is a number of messages (EventHeldSent, EventHeldBlocked).
	Count int
	// Question is the SMP question (EventSMPRequest, when HasQuestion).
	Question    string
	HasQuestion bool
	// Verified reports, for EventSMPSucceeded, whether this side has
	// verified the peer and may mark Fingerprint trusted.
	Verified bool
	// ExtraKey, KeyUse and KeyUseData are set for EventExtraKey.
	ExtraKey   [32]byte
	KeyUse     uint32
	KeyUseData []byte
	// Message is peer-supplied text (EventPeerError).
	Message string
	// Size is a message size in bytes (EventTooLarge).
	Size int
	// Err explains failures; it never contains message plaintext.
	Err error
}

// SSIDString formats an SSID the way OTR clients show it: two 32-bit hex
// halves, the one to read aloud in brackets.
func SSIDString(ssid [8]byte, weSentRevealSig bool) string {
	a, b := fmt.Sprintf("%x", ssid[:4]), fmt.Sprintf("%x", ssid[4:])
	if weSentRevealSig {
		return "[" + a + "] " + b
	}
	return a + " [" + b + "]"
}

// Status summarises a conversation for display. The fields up to
// SMPHasQuestion describe the current instance: the one user messages and
// SMP go to.
type Status struct {
	// State is the message state of the current instance (plaintext when
	// there is none).
	State MsgState
	// Version is the protocol version of the current session, 0 if none.
	Version int
	// Instance is the current peer instance tag.
	Instance uint32
	// Fingerprint of the current session's peer key, when HasFingerprint.
	Fingerprint    Fingerprint
	HasFingerprint bool
	// Trusted reports whether Fingerprint is verified.
	Trusted bool
	// KeyNotConfirmed reports that the current session's key changed to
	// one that is neither the key the user was talking to nor trusted:
	// Send refuses with ErrKeyNotConfirmed until SetCurrentInstance
	// confirms it (SMP still works, to verify it).
	KeyNotConfirmed bool
	// SSID of the current session.
	SSID            [8]byte
	WeSentRevealSig bool
	// SMPInProgress reports whether an SMP exchange is running;
	// SMPAwaitingSecret whether the peer asked and we must answer, with
	// SMPQuestion when SMPHasQuestion.
	SMPInProgress     bool
	SMPAwaitingSecret bool
	SMPQuestion       string
	SMPHasQuestion    bool
	// Held is the number of queued outgoing messages.
	Held int
	// Asked: the user asked for a private conversation (Start) that has
	// not started yet; messages typed meanwhile are held.
	Asked bool
	// Instances lists every peer instance with a session or an AKE under
	// way, the current one included.
	Instances []InstanceStatus
}

// InstanceStatus describes one remote instance of the peer.
type InstanceStatus struct {
	// Instance is the peer's instance tag (0 for OTRv2).
	Instance uint32
	State    MsgState
	Version  int
	// Fingerprint of the instance's (last) session key, when
	// HasFingerprint, and whether it is verified.
	Fingerprint    Fingerprint
	HasFingerprint bool
	Trusted        bool
	// Current marks the instance user messages go to.
	Current bool
}

// Errors returned by Conversation methods.
var (
	// ErrFinished: the peer ended the session; end or restart it first.
	ErrFinished = errors.New("otrcore: the peer has ended the private conversation; end it or start a new one before sending")
	// ErrNotEncrypted: the operation needs an encrypted session.
	ErrNotEncrypted = errors.New("otrcore: no encrypted session")
	// ErrQueueFull: too many messages are already held for this peer.
	ErrQueueFull = errors.New("otrcore: too many messages waiting for the encrypted session")
	// ErrPolicy: the policy forbids the operation (e.g. OTR disabled).
	ErrPolicy = errors.New("otrcore: the policy does not allow OTR with this peer")
	// ErrNoSMPRequest: RespondSMP without a pending request.
	ErrNoSMPRequest = errors.New("otrcore: no SMP request to answer")
	// ErrMessageTooLong: the message cannot be encoded.
	ErrMessageTooLong = errors.New("otrcore: message too long")
	// ErrKeyNotConfirmed: the current session's key is not the one the
	// user was talking to and is not trusted, or only another instance has
	// a session; the user must choose (SetCurrentInstance) or verify.
	ErrKeyNotConfirmed = errors.New("otrcore: the session's key is not the one you were talking to and is not verified; confirm or verify it first")
	// ErrUnknownInstance: SetCurrentInstance with a tag no instance has.
	ErrUnknownInstance = errors.New("otrcore: no such instance of the peer")
)
