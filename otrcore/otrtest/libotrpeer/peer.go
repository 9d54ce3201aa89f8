package libotrpeer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"otrbnc/otrcore/otrtest/linepeer"
)

// MaxLine is the longest command line, in bytes without the newline, that the
// peer accepts. Free-form arguments are hex-encoded, so a single payload can
// be at most about half of this.
const MaxLine = linepeer.MaxLine

// MinMaxMessageSize is the smallest non-zero Options.MaxMessageSize accepted.
// libotr does not guard against sizes at or below its fragment header length.
const MinMaxMessageSize = 64

// Policy is a set of libotr policy bits (OtrlPolicy, proto.h). The values are
// libotr's.
type Policy uint32

// libotr policy bits and the predefined policies from proto.h.
const (
	PolicyAllowV1            Policy = 0x01 // OTRL_POLICY_ALLOW_V1
	PolicyAllowV2            Policy = 0x02 // OTRL_POLICY_ALLOW_V2
	PolicyAllowV3            Policy = 0x04 // OTRL_POLICY_ALLOW_V3
	PolicyRequireEncryption  Policy = 0x08 // OTRL_POLICY_REQUIRE_ENCRYPTION
	PolicySendWhitespaceTag  Policy = 0x10 // OTRL_POLICY_SEND_WHITESPACE_TAG
	PolicyWhitespaceStartAKE Policy = 0x20 // OTRL_POLICY_WHITESPACE_START_AKE
	PolicyErrorStartAKE      Policy = 0x40 // OTRL_POLICY_ERROR_START_AKE

	// PolicyNever is OTRL_POLICY_NEVER. As Options.Policy it means
	// PolicyDefault; use (*Peer).SetPolicy to select it.
	PolicyNever Policy = 0
	// PolicyOpportunistic is OTRL_POLICY_OPPORTUNISTIC.
	PolicyOpportunistic = PolicyAllowV2 | PolicyAllowV3 | PolicySendWhitespaceTag |
		PolicyWhitespaceStartAKE | PolicyErrorStartAKE
	// PolicyManual is OTRL_POLICY_MANUAL: v2 and v3, nothing automatic.
	PolicyManual = PolicyAllowV2 | PolicyAllowV3
	// PolicyAlways is OTRL_POLICY_ALWAYS.
	PolicyAlways = PolicyAllowV2 | PolicyAllowV3 | PolicyRequireEncryption |
		PolicyWhitespaceStartAKE | PolicyErrorStartAKE
	// PolicyDefault is OTRL_POLICY_DEFAULT (opportunistic).
	PolicyDefault = PolicyOpportunistic
	// PolicyV2Only is a manual policy that allows protocol version 2 only,
	// like a potr-based client (weechat-otr).
	PolicyV2Only = PolicyAllowV2
)

// V2Only returns p restricted to protocol version 2: v1 and v3 are removed
// and v2 is allowed. For example PolicyDefault.V2Only() is an opportunistic
// v2-only policy.
func (p Policy) V2Only() Policy {
	return p&^(PolicyAllowV1|PolicyAllowV3) | PolicyAllowV2
}

// Event names: the libotr callback (or peer action) that produced an Event.
// Unless noted, events raised for a context carry the arguments "username"
// (the buddy) and "instance" (their instance tag, 8 hex digits; "00000000"
// for the master context or v2).
const (
	// EventGoneSecure: gone_secure. Extra args: "version" (protocol
	// version), "fingerprint" (their active fingerprint, 40 hex digits).
	EventGoneSecure = "gone_secure"
	// EventGoneInsecure: gone_insecure.
	EventGoneInsecure = "gone_insecure"
	// EventStillSecure: still_secure. Extra arg: "is_reply" ("0"/"1").
	EventStillSecure = "still_secure"
	// EventNewFingerprint: new_fingerprint. Args: "account", "protocol",
	// "username", "fingerprint" (40 hex digits).
	EventNewFingerprint = "new_fingerprint"
	// EventWriteFingerprints: write_fingerprints (the peer saves otr.fp).
	EventWriteFingerprints = "write_fingerprints"
	// EventMsg: handle_msg_event. Args: "event" (the OtrlMessageEvent
	// name, e.g. "OTRL_MSGEVENT_RCVDMSG_UNENCRYPTED"), "message" (only if
	// libotr passed one), "err" (gcry_strerror, only if non-zero).
	EventMsg = "handle_msg_event"
	// EventSMP: handle_smp_event. Args: "event" (the OtrlSMPEvent name,
	// e.g. "OTRL_SMPEVENT_SUCCESS"), "progress" (percent), "question"
	// (only if libotr passed one).
	EventSMP = "handle_smp_event"
	// EventSymkey: received_symkey. Args: "use" (decimal), "usedata" and
	// "key" (raw bytes, 32 for the key).
	EventSymkey = "received_symkey"
	// EventCreateInstag: create_instag. Args: "account", "protocol".
	EventCreateInstag = "create_instag"
	// EventCreatePrivkey: create_privkey. Args: "account", "protocol".
	EventCreatePrivkey = "create_privkey"
	// EventUpdateContextList: update_context_list. No args.
	EventUpdateContextList = "update_context_list"
	// EventTimerControl: timer_control. Arg: "interval" (seconds).
	EventTimerControl = "timer_control"
	// EventOTRErrorMessage: otr_error_message (libotr is about to send an
	// "?OTR Error:" message). Extra arg: "code" (OtrlErrorCode number).
	EventOTRErrorMessage = "otr_error_message"
	// EventTLV: a TLV returned by otrl_message_receiving (recv only).
	// Args: "type" (decimal), "data" (raw bytes).
	EventTLV = "tlv"
	// EventInjectEmpty: libotr asked to inject an empty message (it does
	// so when a message is blocked in the FINISHED state). The peer does
	// not send it, so it is not in Response.Out. Arg: "recipient".
	EventInjectEmpty = "inject_empty"
	// EventSendUnmodified: otrl_message_sending left the message alone,
	// so the peer sent the original text itself, as an application
	// would; it is in Response.Out.
	EventSendUnmodified = "send_unmodified"
)

// Event is one callback from libotr (or peer action) observed while a
// command ran; Name is one of the Event* constants.
type Event = linepeer.Event

// Response is everything the peer reported for one command, in the order it
// happened within each slice. EventArgs(EventMsg, "event") lists the
// OtrlMessageEvent names and EventArgs(EventSMP, "event") the OtrlSMPEvent
// names.
type Response = linepeer.Response

// Status describes one libotr context (by default the best instance of the
// conversation, OTRL_INSTAG_BEST).
type Status struct {
	// MsgState is "plaintext", "encrypted" or "finished".
	MsgState string
	// Version is the protocol version of the current or last session
	// (0 if none).
	Version int
	// Username is the buddy's name.
	Username string
	// OurInstance and TheirInstance are the instance tags of the context
	// (TheirInstance is 0 for a master context, e.g. with v2).
	OurInstance, TheirInstance uint32
	// Fingerprint is the active fingerprint in 40 lower-case hex digits,
	// or "" if there is none.
	Fingerprint string
	// Trust is libotr's free-text trust field of the active fingerprint;
	// Trusted is whether libotr considers it trusted (non-empty).
	Trust   string
	Trusted bool
	// SSID is the 8-byte secure session id (empty unless encrypted);
	// SSIDHalf is "first" or "second": which half is shown in bold.
	SSID     []byte
	SSIDHalf string
	// SMPExpect is the SMP message expected next (1 to 5); 0 if unknown.
	SMPExpect int
	// Master is whether this is the master context rather than a child
	// (per-instance) context.
	Master bool
}

// Encrypted reports whether MsgState is "encrypted".
func (s Status) Encrypted() bool { return s.MsgState == "encrypted" }

// CommandError is returned when the peer answered a command with "err".
type CommandError = linepeer.CommandError

// Options configure a peer started by Start.
type Options struct {
	// Account is our account name as passed to libotr (default "bob").
	// On IRC it is our nick; the other peer uses it as the sender or
	// recipient name.
	Account string
	// Protocol is the libotr protocol id (default "IRC").
	Protocol string
	// Dir holds otr.key (DSA key, generated if absent), otr.instag
	// (instance tag, generated if absent) and otr.fp (fingerprints). If
	// empty, a temporary directory is created and removed by Close.
	Dir string
	// Policy is the libotr policy returned by the policy callback. Zero
	// means PolicyDefault.
	Policy Policy
	// MaxMessageSize is returned by the max_message_size callback: 0
	// disables fragmentation, otherwise it must be at least
	// MinMaxMessageSize.
	MaxMessageSize int
	// Instag, if non-zero, fixes our instance tag (at least 0x100); it is
	// written to Dir/otr.instag.
	Instag uint32
	// Log, if set, receives a readable trace of commands and responses
	// (for example testing.T.Logf).
	Log func(format string, args ...any)
	// Binary is the peer executable; default is the result of Build.
	Binary string
}

// Peer is a running C peer. Its methods may be called from several
// goroutines; commands are serialized.
type Peer struct {
	opts      Options
	conn      *linepeer.Conn
	removeDir bool
	identity  map[string]string
	instag    uint32
	closeErr  error
	closeOnce sync.Once
}

// Start builds (if needed) and starts a peer, and waits until it has loaded
// or generated its key and instance tag. ctx bounds the lifetime of the
// process, as with exec.CommandContext: when ctx is done the process is
// killed. Call Close when done.
func Start(ctx context.Context, opts Options) (*Peer, error) {
	if opts.Account == "" {
		opts.Account = "bob"
	}
	if opts.Protocol == "" {
		opts.Protocol = "IRC"
	}
	if opts.Policy == 0 {
		opts.Policy = PolicyDefault
	}
	if opts.MaxMessageSize < 0 || (opts.MaxMessageSize > 0 && opts.MaxMessageSize < MinMaxMessageSize) {
		return nil, fmt.Errorf("libotrpeer: MaxMessageSize %d: want 0 or at least %d", opts.MaxMessageSize, MinMaxMessageSize)
	}
	if opts.Instag != 0 && opts.Instag < 0x100 {
		return nil, fmt.Errorf("libotrpeer: Instag %#x: want at least 0x100", opts.Instag)
	}
	for _, s := range []string{opts.Account, opts.Protocol} {
		if strings.ContainsAny(s, "\x00") {
			return nil, fmt.Errorf("libotrpeer: account and protocol must not contain NUL")
		}
	}
	if opts.Binary == "" {
		bin, err := Build()
		if err != nil {
			return nil, err
		}
		opts.Binary = bin
	}
	p := &Peer{opts: opts}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "libotrpeer-")
		if err != nil {
			return nil, fmt.Errorf("libotrpeer: creating key directory: %w", err)
		}
		p.opts.Dir = dir
		p.removeDir = true
	}
	args := []string{"serve",
		"--account", opts.Account,
		"--protocol", opts.Protocol,
		"--dir", p.opts.Dir,
		"--policy", strconv.FormatUint(uint64(opts.Policy), 10),
		"--mms", strconv.Itoa(opts.MaxMessageSize),
	}
	if opts.Instag != 0 {
		args = append(args, "--instag", fmt.Sprintf("%08x", opts.Instag))
	}
	var logf func(string, ...any)
	if opts.Log != nil {
		logf = func(format string, args ...any) { opts.Log(opts.Account+" "+format, args...) }
	}
	conn, err := linepeer.Start(exec.CommandContext(ctx, opts.Binary, args...), "libotrpeer", logf)
	if err != nil {
		p.cleanupDir()
		return nil, err
	}
	p.conn = conn

	// The peer announces itself with an identity response.
	resp, err := p.exchange(ctx, "start", "")
	if err != nil {
		p.Close()
		return nil, err
	}
	p.identity = resp.Values
	tag, err := strconv.ParseUint(resp.Values["instag"], 16, 32)
	if err != nil || len(resp.Values["fingerprint"]) != 40 {
		p.Close()
		return nil, fmt.Errorf("libotrpeer: bad identity from peer: %v", resp.Values)
	}
	p.instag = uint32(tag)
	p.logf("%s: started: fingerprint %s instag %08x libotr %s", p.opts.Account,
		resp.Values["fingerprint"], p.instag, resp.Values["libotr"])
	return p, nil
}

// Account returns the peer's account name.
func (p *Peer) Account() string { return p.opts.Account }

// Protocol returns the peer's protocol id.
func (p *Peer) Protocol() string { return p.opts.Protocol }

// Dir returns the directory holding the peer's key, instance tag and
// fingerprint files.
func (p *Peer) Dir() string { return p.opts.Dir }

// Fingerprint returns our DSA key's fingerprint in 40 lower-case hex digits.
func (p *Peer) Fingerprint() string { return p.identity["fingerprint"] }

// HumanFingerprint returns our fingerprint as libotr displays it (five
// groups of eight upper-case hex digits).
func (p *Peer) HumanFingerprint() string { return p.identity["human"] }

// Instag returns our instance tag.
func (p *Peer) Instag() uint32 { return p.instag }

// Stderr returns the last few KiB the peer wrote to its standard error.
func (p *Peer) Stderr() string { return p.conn.Stderr() }

// Recv passes a line received from `from` to otrl_message_receiving.
// Response.Delivered/Text say what the user would see; Response.Out holds
// whatever libotr sent in reply.
func (p *Peer) Recv(ctx context.Context, from, line string) (Response, error) {
	return p.do(ctx, "recv", from, line)
}

// Send passes text for `to` to otrl_message_sending with OTRL_INSTAG_BEST and
// OTRL_FRAGMENT_SEND_ALL. Response.Out holds all lines that went out, in
// order (fragments, a query, a whitespace-tagged plaintext, or the text
// itself when libotr left it alone).
func (p *Peer) Send(ctx context.Context, to, text string) (Response, error) {
	return p.do(ctx, "send", to, text)
}

// SendTo is Send addressed to the given instance tag of `to` (a tag >= 0x100,
// or a libotr meta tag: 0 master, 1 best, 2 recent, 3 recent received, 4
// recent sent).
func (p *Peer) SendTo(ctx context.Context, to string, instag uint32, text string) (Response, error) {
	return p.do(ctx, "send", to, text, rawWord(fmt.Sprintf("%08x", instag)))
}

// Query sends libotr's default query message (otrl_proto_default_query_msg:
// "?OTRv23?" or similar, followed by a newline and an HTML explanation) to
// `to`, as an application's "start private conversation" would.
func (p *Peer) Query(ctx context.Context, to string) (Response, error) {
	return p.do(ctx, "query", to)
}

// End calls otrl_message_disconnect_all_instances for `to`: encrypted
// instances send a disconnect message (in Response.Out) and go back to
// plaintext.
func (p *Peer) End(ctx context.Context, to string) (Response, error) {
	return p.do(ctx, "end", to)
}

// SMPStart starts SMP with `to` (best instance, which must be encrypted)
// using secret (otrl_message_initiate_smp).
func (p *Peer) SMPStart(ctx context.Context, to, secret string) (Response, error) {
	return p.do(ctx, "smp_start", to, secret)
}

// SMPStartQuestion starts SMP with a question (otrl_message_initiate_smp_q).
func (p *Peer) SMPStartQuestion(ctx context.Context, to, question, secret string) (Response, error) {
	return p.do(ctx, "smp_start", to, secret, question)
}

// SMPRespond answers an SMP request from `to` (otrl_message_respond_smp).
func (p *Peer) SMPRespond(ctx context.Context, to, secret string) (Response, error) {
	return p.do(ctx, "smp_respond", to, secret)
}

// SMPAbort aborts SMP with `to` (otrl_message_abort_smp).
func (p *Peer) SMPAbort(ctx context.Context, to string) (Response, error) {
	return p.do(ctx, "smp_abort", to)
}

// Symkey calls otrl_message_symkey for the best instance of `to`: it returns
// the 32-byte extra symmetric key; Response.Out holds the data message that
// tells the other side (use, usedata).
func (p *Peer) Symkey(ctx context.Context, to string, use uint32, usedata []byte) ([]byte, Response, error) {
	resp, err := p.do(ctx, "symkey", to, rawWord(strconv.FormatUint(uint64(use), 10)), string(usedata))
	if err != nil {
		return nil, resp, err
	}
	key := resp.Values["key"]
	if len(key) != 32 {
		return nil, resp, fmt.Errorf("libotrpeer: symkey: got %d key bytes, want 32", len(key))
	}
	return []byte(key), resp, nil
}

// Status describes the best instance of the conversation with `to`. It fails
// with a *CommandError if libotr has no context for `to`.
func (p *Peer) Status(ctx context.Context, to string) (Status, error) {
	return p.status(ctx, to)
}

// StatusOf describes the given instance (tag or meta tag, see SendTo).
func (p *Peer) StatusOf(ctx context.Context, to string, instag uint32) (Status, error) {
	return p.status(ctx, to, rawWord(fmt.Sprintf("%08x", instag)))
}

func (p *Peer) status(ctx context.Context, to string, extra ...any) (Status, error) {
	resp, err := p.do(ctx, "status", append([]any{to}, extra...)...)
	if err != nil {
		return Status{}, err
	}
	v := resp.Values
	st := Status{
		MsgState:    v["msgstate"],
		Username:    v["username"],
		Fingerprint: v["fingerprint"],
		Trust:       v["trust"],
		Trusted:     v["trusted"] == "1",
		SSID:        []byte(v["ssid"]),
		SSIDHalf:    v["ssid_half"],
		Master:      v["master"] == "1",
	}
	if len(st.SSID) == 0 {
		st.SSID = nil
	}
	var errs []error
	parse := func(key string, base int, bits int) uint64 {
		n, err := strconv.ParseUint(v[key], base, bits)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
		return n
	}
	st.Version = int(parse("version", 10, 16))
	st.OurInstance = uint32(parse("our_instance", 16, 32))
	st.TheirInstance = uint32(parse("their_instance", 16, 32))
	st.SMPExpect = int(parse("smp_expect", 10, 8))
	if len(errs) > 0 {
		return st, fmt.Errorf("libotrpeer: status: %w", errors.Join(errs...))
	}
	return st, nil
}

// Trust marks the active fingerprint of `to` as trusted ("verified") and
// saves the fingerprint file.
func (p *Peer) Trust(ctx context.Context, to string) (Response, error) {
	return p.SetTrust(ctx, to, "verified")
}

// SetTrust sets libotr's trust field of the active fingerprint of `to`; ""
// makes it untrusted.
func (p *Peer) SetTrust(ctx context.Context, to, trust string) (Response, error) {
	return p.do(ctx, "trust", to, trust)
}

// Poll calls otrl_message_poll (expiry of stale AKE keys).
func (p *Peer) Poll(ctx context.Context) (Response, error) {
	return p.do(ctx, "poll")
}

// SetMaxMessageSize changes what the max_message_size callback returns (0,
// or at least MinMaxMessageSize).
func (p *Peer) SetMaxMessageSize(ctx context.Context, n int) error {
	_, err := p.do(ctx, "mms", rawWord(strconv.Itoa(n)))
	return err
}

// SetPolicy changes what the policy callback returns. Unlike Options.Policy,
// zero here is PolicyNever.
func (p *Peer) SetPolicy(ctx context.Context, pol Policy) error {
	_, err := p.do(ctx, "policy", rawWord(strconv.FormatUint(uint64(pol), 10)))
	return err
}

// Close asks the peer to exit, kills it if it does not within a few seconds,
// and removes Dir if Start created it. It is safe to call more than once.
func (p *Peer) Close() error {
	p.closeOnce.Do(func() {
		p.conn.Close()
		p.cleanupDir()
	})
	return p.closeErr
}

func (p *Peer) cleanupDir() {
	if p.removeDir {
		if err := os.RemoveAll(p.opts.Dir); err != nil && p.closeErr == nil {
			p.closeErr = fmt.Errorf("libotrpeer: removing key directory: %w", err)
		}
	}
}

func (p *Peer) logf(format string, args ...any) {
	if p.opts.Log != nil {
		p.opts.Log(format, args...)
	}
}

// rawWord is a command argument sent as is (numbers, tags); other
// arguments are strings and are hex-encoded.
type rawWord = linepeer.Raw

// do sends one command and collects its response.
func (p *Peer) do(ctx context.Context, name string, args ...any) (Response, error) {
	return p.conn.Do(ctx, name, args...)
}

// exchange writes line (if any) and reads the response up to "ok" or "err".
func (p *Peer) exchange(ctx context.Context, name, line string) (Response, error) {
	return p.conn.Exchange(ctx, name, line)
}
