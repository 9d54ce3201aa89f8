// Package proxy is otrbnc's bouncer: it keeps one connection per configured
// IRC network, lets IRC clients attach to it, and carries private messages
// through OTR (version 3, with version 2 fallback) so that clients only
// ever see plaintext.
//
// # Concurrency
//
// Every connection has exactly one reader goroutine and one writer
// goroutine (ircConn, conn.go). Each network has one owner goroutine
// (network.run) that holds all IRC state and every otrcore.Conversation;
// the engine is not safe for concurrent use and never needs to be. Once a
// connection is registered its reader posts each parsed message straight
// to the owner's event channel (bounded: a busy owner slows the readers
// down); the owner hands batches of lines to connections without
// blocking: when nothing is queued and the socket takes them at once it
// writes them itself with one non-blocking system call, otherwise they
// wait in the connection's queue for its writer. So a line crosses two
// goroutines, not four. Lines read from the
// network or from clients are bounded (512 bytes plus the IRCv3 tag
// budget); longer lines are dropped. A separate goroutine per network
// (upstreamLoop) dials, registers (CAP, SASL PLAIN or EXTERNAL,
// PASS/NICK/USER with nick fallback) and reconnects with exponential
// backoff and jitter; the upstream stays up while no client is attached.
//
// # Where things are
//
//   - server.go: Server, Options, listeners; auth.go: client registration
//     and passwords; dial.go: connecting and registering upstream.
//   - network.go: the network type, its events and owner loop, and the
//     output verbs: toClient, toClients and toUpstream for IRC messages,
//     tellClient, tellClients and tellClientsAbout for *otr notices
//     (notices.go), deliverToClients for what peers say, echoToClients and
//     replayToClient for the user's own lines and kept ones.
//   - upstream.go: everything the network sends (handleUpstream); history.go
//     tells history from live traffic. downstream.go: everything a client
//     sends (handleDownstream), attach and detach.
//   - peers.go: one otrPeer per nick, with its Conversation and the policy
//     decided for it when an input changes (decidePolicy, applyPolicy);
//     guarded and leftAlone, the two questions the routing asks. policy.go:
//     masks, the ignore list, where a policy comes from. otr.go: private
//     messages through the engine both ways; otr_events.go: engine events
//     as notices and trust updates. peermem.go: the peer memory budget and
//     which idle conversations are forgotten; osmem.go: giving freed
//     memory back to the system after a large drop.
//   - service.go, commands*.go: the *otr service and its command table;
//     settings.go: what *otr changes, saved in the state directory.
//   - conn.go, sendqueue.go, lines.go: connections, the outgoing queue and
//     line framing; caps.go: IRCv3 towards clients.
//
// # Output
//
// Upstream lines are paced (pacing.go: a line bucket and, for servers
// that charge by size, a lag bucket, chosen by the server's software), so
// what waits in front of a line decides when it leaves. The outgoing
// queue (sendqueue.go) has lanes, served in this order:
//
//  1. PING and PONG, between two batches, without pacing;
//  2. the user's own traffic — client commands, channel messages, private
//     messages, what *otr commands send — and the engine's replies to
//     peers the user addressed in the last 30 minutes (engaged peers),
//     first in, first out;
//  3. the engine's replies to every other peer (key exchanges, errors,
//     heartbeats), one lane per peer served round-robin, at most 8 batches
//     per peer and 512 in all, the oldest of the longest lane giving way.
//     A newer AKE message to a peer and instance replaces an unsent older
//     one, and each such peer has a reply budget of 6 batches, then one per
//     30 seconds: a nick flooding key exchanges earns a handful of answers
//     and cannot delay anything of the user's. A batch of these lanes
//     leaves only when the token bucket keeps three tokens after it
//     (userReserve), so that the user's next message never waits for
//     tokens the replies took.
//
// The lines of one OTR message (its fragments) are written back to back.
// When nothing waits and the pacer has the tokens, the owner goroutine
// writes to the socket itself (conn.go, writeDirect), everything it wrote
// while handling one event in one system call; otherwise the writer
// goroutine writes, flushing only when it would wait.
//
// # What is encrypted
//
//   - PRIVMSG to a nick goes through that nick's OTR conversation according
//     to the policy (never, manual, opportunistic, always; per network,
//     overridable per nick).
//   - CTCP ACTION to a nick goes inside OTR as the text "/me …" (the
//     convention of irssi, WeeChat and znc-otr) and comes back as an
//     ACTION; without a session and without policy always it stays a CTCP
//     ACTION in clear.
//   - Other CTCP (VERSION, PING, DCC, …) and NOTICE pass in clear, both
//     ways, as in every IRC OTR plugin — except with a nick whose
//     conversation is guarded (encrypted or finished, holding queued
//     messages, or policy always; docs/security.md): then they are refused
//     outgoing, a NOTICE is marked incoming and a CTCP request is held back
//     with a notice. Channel messages pass untouched; only #&+! start a
//     channel name, whatever CHANTYPES says.
//   - OTR traffic from peers is consumed: clients see the decrypted text
//     from the peer's real prefix, split to fit client lines, never "?OTR"
//     data. Plaintext received during an encrypted session is shown after a
//     configurable marker, with formatting, control and bidi characters
//     removed so the peer cannot disguise it, followed by a *otr warning.
//   - What one client sends privately is echoed, as plaintext, to the other
//     attached clients that ask for it (echo-message or
//     znc.in/self-message), and to the sender with echo-message. Upstream
//     echoes of our own OTR traffic are dropped.
//   - Under policy always, a message typed before the session is up is
//     queued by the engine and sent once the AKE completes with a key seen
//     before or trusted; the client is told at each step, and a message
//     that cannot be sent is reported, never dropped silently or sent in
//     clear.
//
// Conversations are keyed by the nick folded with the network's
// CASEMAPPING. When a peer we share a channel with changes nick, the
// conversation follows the new nick. Keys are remembered per nick in the
// trust book: a nick that shows a different key, or a known key under a
// new nick, is reported. Nicks on the ignore list (services, "*" bouncer
// modules) are never touched.
//
// History replayed by an upstream bouncer (chathistory or playback
// batches, server-time tags over a minute old) never reaches the engine:
// OTR data in it is shown as a placeholder, and nothing is sent to the
// peer because of it (history.go).
//
// # Fragment size
//
// OTR fragments are sized so that the line the peer receives,
// ":nick!user@host PRIVMSG peer :fragment", fits in 512 bytes with a
// margin, using our visible user@host as learnt from RPL_WELCOME, WHO on
// ourselves, JOIN echoes, RPL_VISIBLEHOST (396) and CHGHOST; until they are
// known, the longest user (11) and host (63) are assumed. fragment_size in
// the configuration overrides the computation.
//
// # Control
//
// Clients talk to the "*otr" service (/msg *otr help). Its commands are
// rows of a table (serviceCommands, commands.go) that also generates
// docs/commands.md; they accept any unique prefix and shell-like quoting.
// Replies go to the asking client; events go to all attached clients,
// and wait in the backlog for the others, and pending verification
// questions are asked again on attach. Nobody on the network
// can speak as *otr. Policies, the ignore list and settings changed there
// are saved in the state directory (settings.go) and take precedence over
// the configuration file; trust lives in the keystore.
//
// # Several clients
//
// Any number of clients may attach to a network. Lines from the network
// reach every client, except replies to one client's command, which go to
// that client only (routing.go: by label when the network supports
// labeled-response, else by reply family and target). A client's own
// messages reach the others only if they negotiated echo-message or
// znc.in/self-message. A client names its identity in its username
// ("network@client"); each identity is shown, when it attaches, the
// channel and private messages and *otr notices it missed, kept in
// memory only and bounded (backlog.go).
//
// # IRCv3 towards clients
//
// The capabilities offered to clients are otrbnc's own (caps.go):
// batch, cap-notify, echo-message, labeled-response, message-tags,
// sasl, server-time, standard-replies and znc.in/self-message; sts,
// draft/multiline, chathistory and the bouncer history capabilities are
// never offered. Every line a client receives carries only the tags its
// capabilities allow. otrbnc answers labels
// itself for what it handles (private messages, whatever their number of
// OTR fragments, *otr commands, PING, CAP); commands passed to the network
// lose their label. Client-only tags (+typing, +draft/reply, …) on
// messages to a peer whose messages are encrypted are stripped (setting
// client_tags), and TAGMSG to such a peer is dropped, since they would
// travel in clear.
//
// # Privacy
//
// The text of private messages is never logged, at any level. Logs carry
// event kinds, errors and addresses only.
package proxy
