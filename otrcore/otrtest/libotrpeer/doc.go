// Package libotrpeer runs libotr 4.1.1 as an OTR test peer and as a
// benchmark reference.
//
// The peer is a small C program (csrc/peer.c) written against libotr's public
// API. It is embedded in this package and compiled on demand with the system
// C compiler (Build; link flags -lotr -lgcrypt) into a cache directory; it is
// not built by cgo, so the rest of the module builds without libotr. Tests
// call Require, which skips when libotr or a compiler is missing, except with
// CI=true where it fails.
//
// Start runs one peer process (one libotr userstate, one account) and drives
// it over stdin/stdout. The Go test moves lines between peers itself, which
// makes it easy to drop, reorder, split or modify traffic:
//
//	alice, _ := libotrpeer.Start(ctx, libotrpeer.Options{Account: "alice", Dir: t.TempDir()})
//	bob, _ := libotrpeer.Start(ctx, libotrpeer.Options{Account: "bob", Dir: t.TempDir()})
//	q, _ := alice.Query(ctx, "bob")          // q.Out[0] is "?OTRv23?\n..."
//	r, _ := bob.Recv(ctx, "alice", q.Out[0]) // r.Out[0] is bob's D-H Commit
//	...
//
// RunBench times libotr itself on standard workloads (see the Bench*
// constants), so Go benchmarks can report libotr's figures next to their own.
//
// # Line protocol
//
// The protocol is line based, one command per line, and binary safe: every
// free-form value (names, messages, secrets, questions, usedata) is
// hex-encoded, lower or upper case; in positional arguments a single "-"
// stands for the empty string. Words are separated by one space. Lines
// longer than MaxLine bytes are rejected with "err line too long" (the peer
// stays usable). Numbers (USE, sizes, policies) are decimal or 0x-prefixed
// hex; INSTAG is 8 hex digits, or a libotr meta tag such as 1
// (OTRL_INSTAG_BEST, the default wherever INSTAG is optional).
//
// Commands (driver to peer):
//
//	recv FROM LINE             otrl_message_receiving(sender FROM, message LINE)
//	send TO TEXT [INSTAG]      otrl_message_sending(..., OTRL_FRAGMENT_SEND_ALL)
//	query TO                   inject otrl_proto_default_query_msg(account, policy)
//	end TO                     otrl_message_disconnect_all_instances
//	smp_start TO SECRET [QUESTION]  otrl_message_initiate_smp / _smp_q
//	smp_respond TO SECRET      otrl_message_respond_smp
//	smp_abort TO               otrl_message_abort_smp
//	symkey TO USE USEDATA [INSTAG]  otrl_message_symkey; val key=
//	status TO [INSTAG]         val msgstate= version= username= our_instance=
//	                           their_instance= fingerprint= trust= trusted=
//	                           ssid= ssid_half= smp_expect= master=
//	trust TO [TRUST [INSTAG]]  set trust of the active fingerprint
//	                           (default "verified"; "-" untrusts), save otr.fp
//	fingerprint | instag | whoami   val account= protocol= fingerprint=
//	                           human= instag= libotr=
//	poll                       otrl_message_poll
//	mms N                      change the max_message_size result
//	policy BITS                change the policy result
//	quit                       answer ok and exit
//
// smp_*, symkey operate on the best instance (OTRL_INSTAG_BEST) and fail if it
// is not encrypted. Commands that name a context fail with "err ...: no such
// context" if libotr has none.
//
// Response lines (peer to driver), in the order things happened, ended by
// exactly one terminator:
//
//	out TO MSG          a line sent to the network: libotr's inject_message,
//	                    or the original text when otrl_message_sending left
//	                    it alone (after "event send_unmodified")
//	event NAME K=V ...  a libotr callback; every V is hex (may be empty)
//	msg TEXT            recv: the message is for the user; TEXT is what to show
//	ignored             recv: libotr consumed the message internally
//	val K=V ...         results of status, symkey and identity queries
//	ok                  terminator: success
//	err TEXT            terminator: failure, TEXT is plain single-line text
//
// Right after starting, before any command, the peer writes an identity
// response ("val account=... fingerprint=... instag=..." then "ok"), or "err"
// and exits if it cannot load or create its key or instance tag.
//
// The callbacks are set so that the peer behaves like a simple, always
// online IM client: is_logged_in returns 1 (so libotr sends disconnect
// messages and heartbeats), policy returns the configured policy,
// max_message_size returns the configured size (0: never fragment),
// otr_error_message returns fixed English texts, create_instag and
// create_privkey generate and save into the key directory, write_fingerprints
// saves otr.fp. inject_message writes an "out" line, except that an empty
// message (libotr's way of blocking a message in the FINISHED state) is
// reported as "event inject_empty" and not sent. File descriptor 1 is
// redirected to stderr at startup, so libotr and libgcrypt cannot write to
// the protocol stream.
//
// Event names and their arguments are listed with the Event* constants.
//
// # Benchmark mode
//
// "peer bench WORKLOAD N" (WORKLOAD one of the Bench* names, or "all") prints
// one line per workload,
//
//	bench workload=W n=N median_ns= mean_ns= min_ns= max_ns= [heap_bytes_per_pair=] op=HEX
//
// then "ok" (or "err TEXT"). RunBench runs it and parses the result.
package libotrpeer
