// Package otrcore is a sans-I/O implementation of Off-the-Record messaging,
// protocol versions 3 and 2 (Protocol-v3.html as shipped with libotr
// 4.1.1). Version 1 is never spoken: its queries are ignored and its
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
// Result: show Result.Text when Result.HasText (Result.Encrypted tells
// whether it was protected), transmit every element of Result.Send in
// order (each element is one OTR message as fragments that must go out
// back to back), and act on Result.Events (gone secure, peer finished,
// SMP requests, new fingerprints, messages held or refused …).
//
// # Safety properties
//
//   - Nothing the user types leaves in clear when the policy requires
//     encryption or the peer has finished the session: the message is
//     held (REQUIRE_ENCRYPTION) or refused with ErrFinished.
//   - Held messages are released to a new session only if its key was
//     seen before for this peer, or is trusted, or this is the first key
//     ever seen for the peer. Otherwise EventHeldBlocked reports them and
//     they wait for ReleaseHeld or DiscardHeld. The same rule guards the
//     resend of the last message after an OTR error.
//   - Every received DH and SMP group element is range-checked, including
//     the next key announced in data messages; MACs are compared in
//     constant time and counters checked after the MAC; secret
//     exponentiations and DSA signing run in constant time (bigmod).
//   - Every buffer a peer can fill is bounded: fragment reassembly
//     (64 KiB), encoded messages (256 KiB), peer instances per
//     conversation, held messages.
//   - No input panics; malformed messages produce EventMalformed. OTR
//     error messages are never answered with errors, and the errors we
//     send are rate-limited.
//
// A Conversation is not safe for concurrent use.
package otrcore
