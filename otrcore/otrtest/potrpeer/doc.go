// Package potrpeer runs python-potr 1.0.2 (the pure-Python OTRv2 library
// used by WeeChat's OTR script) as an OTR test peer.
//
// The peer is a Python driver script (peer.py), embedded in this package
// and run with "python3 -c". It imports potr, applies a compatibility shim
// and drives one potr Account over stdin/stdout. Tests call Require, which
// skips when python3 or potr is missing, except with CI=true where it
// fails.
//
// # Compatibility shim
//
// Debian's python3-potr does not work with Debian's pycryptodome: potr was
// written against PyCrypto's DSA key objects, PyCrypto's DSA sign/verify
// and stateful CTR counter objects. Before potr is used the script replaces
// DSAKey's constructor, sign, verify and generate, and AESCTR, with
// equivalents written on pycryptodome and Python integers: the signed value
// is the 32-byte MAC as an integer reduced mod q (as PyCrypto did and OTR
// specifies), and the CTR counter block is potr's 8-byte counter prefix
// followed by an 8-byte block counter.
//
// # Line protocol
//
// Like libotrpeer's: one command per line; free-form values hex-encoded
// ("-" is empty). Commands:
//
//	recv FROM LINE                Context.receiveMessage
//	send TO TEXT                  Context.sendMessage(FRAGMENT_SEND_ALL)
//	query TO                      send potr's default query ("?OTRv2?\n...")
//	end TO                        Context.disconnect
//	smp_start TO SECRET [QUESTION]  Context.smpInit
//	smp_respond TO SECRET         Context.smpGotSecret
//	smp_abort TO                  Context.smpAbort
//	status TO                     val msgstate= version= fingerprint= ssid=
//	                              smp_prog= smp_state= smp_question=
//	mms N                         change the account's max message size
//	quit                          answer ok and exit
//
// Responses: "out TO MSG" (a line potr injected or returned for sending),
// "event NAME K=V..." (state changes "state from= to=", "tlv type=",
// "encrypted", "unencrypted", "error_received message=", "not_encrypted",
// "send_unmodified"), "msg TEXT" (recv: text for the user), "ignored",
// "val K=V...", then exactly one "ok" or "err TEXT". Right after starting
// the peer writes "val account= fingerprint= potr=" and "ok".
//
// potr offers and accepts protocol version 2 only; its policy here is
// manual (ALLOW_V2 only, no whitespace tags, no automatic AKE).
package potrpeer
