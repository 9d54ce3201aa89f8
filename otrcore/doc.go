// Package otrcore is a sans-I/O implementation of Off-the-Record
// messaging, protocol versions 3 and 2 (Protocol-v3.html as shipped with
// libotr 4.1.1). Version 1 is never spoken: its queries are ignored and its
// messages dropped.
//
// The engine does no I/O, starts no goroutines and never reads the clock.
// Lines received from the peer and messages the user types go in; text to
// show, lines to send and events come out, as a Result. Time is passed in
// by the caller on every call.
//
// # Driving it
//
// Create one Account per local identity (long-term DSA key, instance tag,
// trust store) and one Conversation per peer:
//
//	acct := &otrcore.Account{Key: key, InstanceTag: tag, Trust: store}
//	conv := otrcore.NewConversation(acct, "bob", otrcore.Options{
//		Policy:         otrcore.PolicyOpportunistic,
//		MaxMessageSize: 400, // longest line the transport carries
//	})
//
// Then, for every line the peer sends, call Receive; for every message the
// user types, call Send; call Tick every few seconds. Each returns a
// Result:
//
//   - show Result.Text when Result.HasText. Encrypted tells whether it was
//     protected; for encrypted text, Instance, Fingerprint, Trusted and
//     Current say which session (and key) it came from and whether that is
//     the one the user's replies go to;
//   - transmit every element of Result.Send in order. Each is one Outgoing
//     message whose lines go out back to back; its Kind (plaintext, query,
//     error, AKE, text, control) and Instance let a transport pace and
//     coalesce without parsing the wire;
//   - act on Result.Events: what the peer caused or what happened on its
//     own (gone secure, peer finished, SMP requests, new fingerprints, held
//     messages released or blocked, unreadable or ignored OTR lines …).
//
// What the caller asked for and was refused (Send, Start, SMP, …) is the
// returned error, never an event. Error texts carry the "otrcore:" prefix
// once, at the start.
//
// Classify tells what a line is (plain text, query, error, data or AKE
// message, fragment, malformed) without a conversation; Receive starts
// from the same parse, so a caller may rely on it for lines it handles
// itself (history, echoes of its own messages).
//
// # Instances and keys
//
// One peer may run several OTRv3 instances (clients), each with its own
// session and key. User messages and SMP go to the current instance,
// which is bound to the key the user is talking to. The engine moves them
// on its own only to an instance with that key or a trusted key; any
// other switch is the user's, through SetCurrentInstance. Status lists
// every instance with its key, trust and state.
//
// # Memory
//
// MemoryUse approximates what a peer makes a conversation hold, Shed drops
// what needs no session, and LastActivity tells how long it has been idle,
// so a caller can keep many conversations under one budget. A session
// idle for five minutes (Tick) or shed drops the cipher state it can
// rebuild from its keys, and MemoryUse shows it.
//
// # Idle-time work
//
// The public-key work of a conversation can be done while it is idle
// rather than while the user waits. Give the Account a DHKeyPool and call
// its Fill method now and then (with Tick, say): key rotation and the AKE
// then take ready key pairs. Call Conversation.PrepareKeys after a
// message has been handled, off the path of the reply: it derives the
// session keys the next message each way will use.
//
// # Safety properties
//
//   - Nothing the user types leaves in clear when the policy requires
//     encryption or a session exists: the message is held
//     (REQUIRE_ENCRYPTION) or refused (ErrFinished, ErrKeyNotConfirmed).
//     Turning the policy to never does not end a session: it keeps
//     encrypting and decrypting until ended.
//   - Held messages are released to a new session only if its key was
//     seen before for this peer, or is trusted, or this is the first key
//     ever seen for the peer. Otherwise EventHeldBlocked reports them and
//     they wait for ReleaseHeld or DiscardHeld. The same rule guards the
//     resend of the last message after an OTR error.
//   - No OTR protocol line is ever shown as text, whatever the policy:
//     lines starting like OTR that do not parse give EventMalformed (or
//     EventTooLarge), and with policy never OTR messages are reported
//     (EventQueryReceived, EventPolicyIgnored), not shown.
//   - Every received DH and SMP group element is range-checked, including
//     the next key announced in data messages; MACs are compared in
//     constant time and counters checked after the MAC; secret
//     exponentiations and DSA signing run in constant time (bigmod).
//   - Every buffer a peer can fill is bounded and grows only with what the
//     peer sent: fragment reassembly (64 KiB per instance, forgotten after
//     90 s without a piece), encoded messages (256 KiB), peer instances per
//     conversation, held messages.
//   - No input panics. OTR error messages are never answered with errors,
//     the errors we send are rate-limited, and heartbeats answer only
//     messages with content, so two engines never ping-pong.
//
// # Where things are
//
// The Conversation and its methods, by concern:
//
//   - api.go: the public types (Account, Options, Result, Outgoing, Event,
//     Status) and the error values.
//   - conversation.go: the Conversation and its per-instance state,
//     setters, Status.
//   - classify.go: Classify and the parse of a received line.
//   - receive.go: Receive and what it does with each kind of line:
//     plaintext, queries, errors, fragments, data messages.
//   - send.go: Send, Start, End, held messages, heartbeats, the extra key;
//     how a message is encrypted, encoded and fragmented.
//   - session.go: the AKE as the conversation drives it (starting it,
//     dispatching the four messages, going secure) and which instance is
//     current (SetCurrentInstance).
//   - smp_api.go: StartSMP, RespondSMP, AbortSMP and SMP events.
//   - timers.go: Tick. memory.go: MemoryUse, Shed, LastActivity.
//   - keypool.go: DHKeyPool, the key pairs computed ahead of need, where
//     a session's new key pairs come from, and PrepareKeys.
//   - policy.go: Policy flags and presets.
//
// The protocol underneath, one file per part of the spec:
//
//   - wire.go (data types, headers), messages.go (the four AKE
//     messages), envelope.go ("?OTR:" messages and error messages) and
//     base64.go (the base64 they use, decoded straight from the line),
//     fragment.go (fragmentation), query.go (queries, whitespace tags),
//     tlv.go (TLVs).
//   - ake.go (the AKE state machine), keys.go (data-phase keys and their
//     rotation), data.go (the data message: its codec, sealing and
//     opening), mac.go (HMAC-SHA1 with a prefix cache for bursts),
//     group.go (the DH group), smp.go and smp_math.go (the SMP state
//     machine and its arithmetic), dsa.go (long-term keys and
//     fingerprints).
//
// Tests drive real peers too: otrtest/libotrpeer (libotr 4.1.1),
// otrtest/potrpeer (python-potr), and golang.org/x/crypto/otr.
//
// A Conversation is not safe for concurrent use.
package otrcore
