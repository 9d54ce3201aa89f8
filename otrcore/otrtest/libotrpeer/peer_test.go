package libotrpeer

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds every test; key generation dominates start-up.
const testTimeout = 2 * time.Minute

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// keys caches one generated otr.key per account for the whole test binary,
// so that tests do not each pay for DSA key generation.
var keys struct {
	sync.Mutex
	root  string
	files map[string]string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if keys.root != "" {
		os.RemoveAll(keys.root)
	}
	os.Exit(code)
}

// keyFile returns the path of a private key file for account.
func keyFile(t *testing.T, account string) string {
	t.Helper()
	keys.Lock()
	defer keys.Unlock()
	if f, ok := keys.files[account]; ok {
		return f
	}
	if keys.root == "" {
		root, err := os.MkdirTemp("", "libotrpeer-test-keys-")
		if err != nil {
			t.Fatal(err)
		}
		keys.root = root
		keys.files = map[string]string{}
	}
	dir := filepath.Join(keys.root, account)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := Start(testContext(t), Options{Account: account, Dir: dir})
	if err != nil {
		t.Fatalf("generating key for %s: %v", account, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "otr.key")
	keys.files[account] = f
	return f
}

// newPeer starts a peer in a fresh directory holding the cached key for
// opts.Account (fresh instance tag and fingerprint store).
func newPeer(t *testing.T, ctx context.Context, opts Options) *Peer {
	t.Helper()
	Require(t)
	if opts.Account == "" {
		opts.Account = "bob"
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
		if opts.Protocol == "" || opts.Protocol == "IRC" {
			key, err := os.ReadFile(keyFile(t, opts.Account))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(opts.Dir, "otr.key"), key, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if opts.Log == nil {
		opts.Log = t.Logf
	}
	p, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start(%s): %v", opts.Account, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close(%s): %v", opts.Account, err)
		}
	})
	return p
}

// arrival is one line delivered by a network, and the receiver's response.
type arrival struct {
	To, From, Line string
	Resp           Response
}

type arrivals []arrival

// events returns the events called name raised at peer `to`.
func (as arrivals) events(to, name string) []Event {
	var evs []Event
	for _, a := range as {
		if a.To == to {
			evs = append(evs, a.Resp.EventsNamed(name)...)
		}
	}
	return evs
}

// smpEvents returns the SMP event names raised at peer `to`.
func (as arrivals) smpEvents(to string) []string {
	var names []string
	for _, a := range as {
		if a.To == to {
			names = append(names, a.Resp.EventArgs(EventSMP, "event")...)
		}
	}
	return names
}

// delivered returns the texts delivered to the user at peer `to`.
func (as arrivals) delivered(to string) []string {
	var texts []string
	for _, a := range as {
		if a.To == to && a.Resp.Delivered {
			texts = append(texts, a.Resp.Text)
		}
	}
	return texts
}

// network carries lines between peers by account name until all are quiet.
type network struct {
	t     *testing.T
	ctx   context.Context
	peers map[string]*Peer
}

func newNetwork(t *testing.T, ctx context.Context, peers ...*Peer) *network {
	n := &network{t: t, ctx: ctx, peers: map[string]*Peer{}}
	for _, p := range peers {
		n.peers[p.Account()] = p
	}
	return n
}

// deliver sends r.Out (produced by from) to its recipients, then everything
// they answer, and so on, and returns all arrivals in order.
func (n *network) deliver(from *Peer, r Response) arrivals {
	n.t.Helper()
	type item struct {
		to         *Peer
		from, line string
	}
	var queue []item
	push := func(src *Peer, r Response) {
		for i, line := range r.Out {
			dst := n.peers[r.OutTo[i]]
			if dst == nil {
				n.t.Fatalf("%s sent a line to unknown %q", src.Account(), r.OutTo[i])
			}
			queue = append(queue, item{dst, src.Account(), line})
		}
	}
	push(from, r)
	var got arrivals
	for steps := 0; len(queue) > 0; steps++ {
		if steps > 1000 {
			n.t.Fatalf("network did not go quiet after %d lines", steps)
		}
		it := queue[0]
		queue = queue[1:]
		resp, err := it.to.Recv(n.ctx, it.from, it.line)
		if err != nil {
			n.t.Fatalf("%s: recv from %s: %v", it.to.Account(), it.from, err)
		}
		got = append(got, arrival{To: it.to.Account(), From: it.from, Line: it.line, Resp: resp})
		push(it.to, resp)
	}
	return got
}

// establish runs an AKE started by a's query and checks both sides are
// encrypted with the expected protocol version.
func establish(t *testing.T, n *network, a, b *Peer, version int) arrivals {
	t.Helper()
	q, err := a.Query(n.ctx, b.Account())
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Out) != 1 || q.OutTo[0] != b.Account() || !strings.HasPrefix(q.Out[0], "?OTRv") {
		t.Fatalf("query: got %q to %q", q.Out, q.OutTo)
	}
	arr := n.deliver(a, q)
	for _, p := range []*Peer{a, b} {
		other := a
		if p == a {
			other = b
		}
		evs := arr.events(p.Account(), EventGoneSecure)
		if len(evs) != 1 {
			t.Fatalf("%s: %d gone_secure events, want 1", p.Account(), len(evs))
		}
		if got := evs[0].Args["version"]; got != strconv.Itoa(version) {
			t.Errorf("%s: gone_secure version %s, want %d", p.Account(), got, version)
		}
		if got := evs[0].Args["fingerprint"]; got != other.Fingerprint() {
			t.Errorf("%s: gone_secure fingerprint %s, want %s", p.Account(), got, other.Fingerprint())
		}
		st, err := p.Status(n.ctx, other.Account())
		if err != nil {
			t.Fatal(err)
		}
		if !st.Encrypted() || st.Version != version {
			t.Fatalf("%s: status %+v, want encrypted v%d", p.Account(), st, version)
		}
	}
	return arr
}

// otrHeader decodes the protocol version, message type and (v3) instance
// tags of an encoded "?OTR:...." message.
func otrHeader(t *testing.T, line string) (version uint16, typ byte, sender, receiver uint32) {
	t.Helper()
	s, ok := strings.CutPrefix(line, "?OTR:")
	if !ok {
		t.Fatalf("not an encoded OTR message: %.60q", line)
	}
	s, _, _ = strings.Cut(s, ".")
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) < 3 {
		t.Fatalf("bad OTR message %.60q: %v", line, err)
	}
	version, typ = binary.BigEndian.Uint16(b), b[2]
	if version == 3 {
		if len(b) < 11 {
			t.Fatalf("short v3 message %.60q", line)
		}
		sender, receiver = binary.BigEndian.Uint32(b[3:]), binary.BigEndian.Uint32(b[7:])
	}
	return version, typ, sender, receiver
}

func startPair(t *testing.T, aliceOpts, bobOpts Options) (context.Context, *network, *Peer, *Peer) {
	t.Helper()
	ctx := testContext(t)
	aliceOpts.Account, bobOpts.Account = "alice", "bob"
	alice := newPeer(t, ctx, aliceOpts)
	bob := newPeer(t, ctx, bobOpts)
	return ctx, newNetwork(t, ctx, alice, bob), alice, bob
}

func TestAKEAndMessagesV3(t *testing.T) {
	t.Parallel()
	ctx, n, alice, bob := startPair(t, Options{}, Options{})
	if alice.Fingerprint() == bob.Fingerprint() || alice.Instag() == bob.Instag() {
		t.Fatal("peers share a key or instance tag")
	}
	arr := establish(t, n, alice, bob, 3)

	// Every AKE message is v3 and carries the sender's instance tag; all
	// but bob's initial D-H Commit know the receiver's tag.
	tags := map[string]uint32{"alice": alice.Instag(), "bob": bob.Instag()}
	var types []byte
	for _, a := range arr {
		if !strings.HasPrefix(a.Line, "?OTR:") {
			continue
		}
		v, typ, from, to := otrHeader(t, a.Line)
		types = append(types, typ)
		if v != 3 || from != tags[a.From] {
			t.Errorf("AKE message from %s: version %d sender tag %08x", a.From, v, from)
		}
		if want := tags[a.To]; to != want && !(typ == 0x02 && to == 0) {
			t.Errorf("AKE message type %#x to %s: receiver tag %08x, want %08x", typ, a.To, to, want)
		}
	}
	if fmt.Sprintf("%x", types) != "020a1112" {
		t.Errorf("AKE message types %x, want 02 0a 11 12", types)
	}
	if evs := arr.events("alice", EventNewFingerprint); len(evs) != 1 || evs[0].Args["fingerprint"] != bob.Fingerprint() {
		t.Errorf("alice new_fingerprint events: %v", evs)
	}

	sa, err := alice.Status(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := bob.Status(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if sa.OurInstance != alice.Instag() || sa.TheirInstance != bob.Instag() ||
		sb.OurInstance != bob.Instag() || sb.TheirInstance != alice.Instag() {
		t.Errorf("instance tags: alice %+v bob %+v", sa, sb)
	}
	if sa.Fingerprint != bob.Fingerprint() || sb.Fingerprint != alice.Fingerprint() {
		t.Errorf("active fingerprints: alice sees %s, bob sees %s", sa.Fingerprint, sb.Fingerprint)
	}
	if len(sa.SSID) != 8 || string(sa.SSID) != string(sb.SSID) || sa.SSIDHalf == sb.SSIDHalf {
		t.Errorf("SSID: alice %x %s, bob %x %s", sa.SSID, sa.SSIDHalf, sb.SSID, sb.SSIDHalf)
	}
	if sa.Trusted || sa.Master {
		t.Errorf("alice status %+v: want untrusted child context", sa)
	}
	master, err := alice.StatusOf(ctx, "bob", 0)
	if err != nil || !master.Master {
		t.Errorf("StatusOf master: %+v, %v", master, err)
	}

	texts := []string{
		"hello bob",
		"ünïcødé ✓ and <b>html</b>",
		"/me waves",
		"line one\nline two",
		strings.Repeat("x", 3000),
	}
	for _, dir := range []struct{ from, to *Peer }{{alice, bob}, {bob, alice}} {
		for _, text := range texts {
			r, err := dir.from.Send(ctx, dir.to.Account(), text)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Out) != 1 {
				t.Fatalf("send: %d lines out without fragmentation", len(r.Out))
			}
			v, typ, from, to := otrHeader(t, r.Out[0])
			if v != 3 || typ != 0x03 || from != dir.from.Instag() || to != dir.to.Instag() {
				t.Errorf("data message header: v%d type %#x tags %08x->%08x", v, typ, from, to)
			}
			if text != "" && strings.Contains(r.Out[0], text) {
				t.Errorf("plaintext %q leaked", text)
			}
			got := n.deliver(dir.from, r)
			if d := got.delivered(dir.to.Account()); len(d) != 1 || d[0] != text {
				t.Errorf("%s got %q, want %.40q", dir.to.Account(), d, text)
			}
		}
	}

	// An empty message is a heartbeat: libotr does not show it.
	r, err := alice.Send(ctx, "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.deliver(alice, r); len(got) != 1 || !got[0].Resp.Ignored {
		t.Errorf("empty message: %+v", got)
	}

	// Addressing bob's instance explicitly works too.
	r, err = alice.SendTo(ctx, "bob", bob.Instag(), "to your instance")
	if err != nil {
		t.Fatal(err)
	}
	if d := n.deliver(alice, r).delivered("bob"); len(d) != 1 || d[0] != "to your instance" {
		t.Errorf("SendTo: bob got %q", d)
	}
}

func TestWhitespaceTagStartsAKE(t *testing.T) {
	t.Parallel()
	ctx, n, alice, bob := startPair(t, Options{}, Options{})
	r, err := alice.Send(ctx, "bob", "hi there")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Out) != 1 || !strings.HasPrefix(r.Out[0], "hi there \t  \t\t\t\t \t \t \t  ") {
		t.Fatalf("plaintext with whitespace tag expected, got %q", r.Out)
	}
	arr := n.deliver(alice, r)
	if d := arr.delivered("bob"); len(d) != 1 || d[0] != "hi there" {
		t.Errorf("bob got %q, want the text without the tag", d)
	}
	if len(arr.events("alice", EventGoneSecure)) != 1 || len(arr.events("bob", EventGoneSecure)) != 1 {
		t.Errorf("whitespace tag did not lead to an encrypted session")
	}
	for _, p := range []*Peer{alice, bob} {
		other := map[string]string{"alice": "bob", "bob": "alice"}[p.Account()]
		if st, err := p.Status(ctx, other); err != nil || !st.Encrypted() {
			t.Errorf("%s: %+v %v", p.Account(), st, err)
		}
	}
}

var fragmentRE = regexp.MustCompile(`^\?OTR\|([0-9a-f]{8})\|([0-9a-f]{8}),(\d{5}),(\d{5}),[^,]+,$`)

func TestFragmentation(t *testing.T) {
	t.Parallel()
	for _, mms := range []int{400, 150} {
		t.Run(strconv.Itoa(mms), func(t *testing.T) {
			t.Parallel()
			ctx, n, alice, bob := startPair(t, Options{MaxMessageSize: mms}, Options{MaxMessageSize: mms})
			arr := establish(t, n, alice, bob, 3)
			fragments := 0
			for _, a := range arr[1:] { // the query is not fragmented
				if len(a.Line) >= mms {
					t.Errorf("AKE line of %d bytes exceeds mms %d", len(a.Line), mms)
				}
				if strings.HasPrefix(a.Line, "?OTR|") {
					fragments++
				}
			}
			if fragments == 0 {
				t.Errorf("no AKE message was fragmented at mms %d", mms)
			}

			for _, dir := range []struct {
				from, to *Peer
				size     int
			}{{alice, bob, 2000}, {bob, alice, 1000}} {
				text := strings.Repeat("0123456789", dir.size/10)
				r, err := dir.from.Send(ctx, dir.to.Account(), text)
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Out) < 2 {
					t.Fatalf("%d-byte message not fragmented at %d", dir.size, mms)
				}
				for i, f := range r.Out {
					m := fragmentRE.FindStringSubmatch(f)
					if m == nil || len(f) >= mms {
						t.Fatalf("fragment %d (%d bytes) malformed or too long: %.60q", i, len(f), f)
					}
					k, _ := strconv.Atoi(m[3])
					total, _ := strconv.Atoi(m[4])
					if m[1] != fmt.Sprintf("%08x", dir.from.Instag()) || m[2] != fmt.Sprintf("%08x", dir.to.Instag()) ||
						k != i+1 || total != len(r.Out) {
						t.Errorf("fragment %d header %q", i, m[1:5])
					}
				}
				for i, f := range r.Out {
					resp, err := dir.to.Recv(ctx, dir.from.Account(), f)
					if err != nil {
						t.Fatal(err)
					}
					last := i == len(r.Out)-1
					if resp.Delivered != last || (last && resp.Text != text) {
						t.Fatalf("fragment %d/%d: delivered=%v text %.40q", i+1, len(r.Out), resp.Delivered, resp.Text)
					}
				}
			}

			// Switching fragmentation off at run time.
			if err := alice.SetMaxMessageSize(ctx, 0); err != nil {
				t.Fatal(err)
			}
			r, err := alice.Send(ctx, "bob", strings.Repeat("y", 2000))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Out) != 1 {
				t.Errorf("mms 0: %d lines, want 1", len(r.Out))
			}
		})
	}
}

func TestV2Only(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		v2QueriesV3 bool
	}{{"v2 side queries", true}, {"v3 side queries", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, n, alice, bob := startPair(t,
				Options{Policy: PolicyV2Only, MaxMessageSize: 200},
				Options{MaxMessageSize: 200})
			first, second := alice, bob
			if !tc.v2QueriesV3 {
				first, second = bob, alice
			}
			arr := establish(t, n, first, second, 2)
			if tc.v2QueriesV3 && !strings.HasPrefix(arr[0].Line, "?OTRv2?") {
				t.Errorf("v2-only query is %.20q", arr[0].Line)
			}
			for _, a := range arr {
				if strings.HasPrefix(a.Line, "?OTR|") {
					t.Errorf("v3 fragment in a v2 session: %.40q", a.Line)
				}
				if strings.HasPrefix(a.Line, "?OTR:") {
					if v, _, _, _ := otrHeader(t, a.Line); v != 2 {
						t.Errorf("AKE message version %d", v)
					}
				}
			}
			st, err := bob.Status(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if st.TheirInstance != 0 || !st.Master {
				t.Errorf("v2 session status %+v: want master context without instance tag", st)
			}
			for _, dir := range []struct{ from, to *Peer }{{alice, bob}, {bob, alice}} {
				text := "v2 says hello " + dir.from.Account()
				r, err := dir.from.Send(ctx, dir.to.Account(), text)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range r.Out {
					if !strings.HasPrefix(f, "?OTR,") {
						t.Errorf("want v2 fragments at mms 200, got %.40q", f)
					}
				}
				if d := n.deliver(dir.from, r).delivered(dir.to.Account()); len(d) != 1 || d[0] != text {
					t.Errorf("%s got %q", dir.to.Account(), d)
				}
			}
		})
	}
}

func TestSMP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, question, secretA, secretB string
		success                          bool
	}{
		{"success", "", "our secret", "our secret", true},
		{"question", "Where did we meet?", "paris", "paris", true},
		{"failure", "", "our secret", "not our secret", false},
		{"binary secret", "", "\x00\x01\xff", "\x00\x01\xff", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, n, alice, bob := startPair(t, Options{}, Options{})
			establish(t, n, alice, bob, 3)
			var r Response
			var err error
			if tc.question != "" {
				r, err = alice.SMPStartQuestion(ctx, "bob", tc.question, tc.secretA)
			} else {
				r, err = alice.SMPStart(ctx, "bob", tc.secretA)
			}
			if err != nil {
				t.Fatal(err)
			}
			arr := n.deliver(alice, r)
			asks := arr.events("bob", EventSMP)
			wantAsk := "OTRL_SMPEVENT_ASK_FOR_SECRET"
			if tc.question != "" {
				wantAsk = "OTRL_SMPEVENT_ASK_FOR_ANSWER"
			}
			if len(asks) != 1 || asks[0].Args["event"] != wantAsk || asks[0].Args["question"] != tc.question {
				t.Fatalf("bob SMP events %v, want %s", asks, wantAsk)
			}
			r, err = bob.SMPRespond(ctx, "alice", tc.secretB)
			if err != nil {
				t.Fatal(err)
			}
			arr = n.deliver(bob, r)
			want := "OTRL_SMPEVENT_FAILURE"
			if tc.success {
				want = "OTRL_SMPEVENT_SUCCESS"
			}
			for _, p := range []string{"alice", "bob"} {
				evs := arr.smpEvents(p)
				if len(evs) == 0 || evs[len(evs)-1] != want {
					t.Errorf("%s SMP events %q, want ... %s", p, evs, want)
				}
			}
			sa, err := alice.Status(ctx, "bob")
			if err != nil {
				t.Fatal(err)
			}
			if sa.Trusted != tc.success {
				t.Errorf("alice trusts bob: %v (trust %q), want %v", sa.Trusted, sa.Trust, tc.success)
			}
			sb, err := bob.Status(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			// libotr: the responder to a question does not set trust.
			if want := tc.success && tc.question == ""; sb.Trusted != want {
				t.Errorf("bob trusts alice: %v (trust %q), want %v", sb.Trusted, sb.Trust, want)
			}
		})
	}

	t.Run("abort", func(t *testing.T) {
		t.Parallel()
		ctx, n, alice, bob := startPair(t, Options{}, Options{})
		establish(t, n, alice, bob, 3)
		r, err := alice.SMPStart(ctx, "bob", "secret")
		if err != nil {
			t.Fatal(err)
		}
		n.deliver(alice, r)
		r, err = bob.SMPAbort(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		arr := n.deliver(bob, r)
		if evs := arr.smpEvents("alice"); len(evs) != 1 || evs[0] != "OTRL_SMPEVENT_ABORT" {
			t.Errorf("alice SMP events after abort: %q", evs)
		}
	})
}

func TestEnd(t *testing.T) {
	t.Parallel()
	ctx, n, alice, bob := startPair(t, Options{}, Options{})
	establish(t, n, alice, bob, 3)

	r, err := alice.End(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Out) != 1 || !strings.HasPrefix(r.Out[0], "?OTR:AAMD") {
		t.Fatalf("end: want one data message, got %q", r.Out)
	}
	if st, err := alice.Status(ctx, "bob"); err != nil || st.MsgState != "plaintext" {
		t.Errorf("alice after end: %+v %v", st, err)
	}
	resp, err := bob.Recv(ctx, "alice", r.Out[0])
	if err != nil {
		t.Fatal(err)
	}
	if resp.Delivered || !resp.Ignored || len(resp.Out) != 0 {
		t.Errorf("bob's view of the disconnect: %+v", resp)
	}
	if st, err := bob.Status(ctx, "alice"); err != nil || st.MsgState != "finished" {
		t.Fatalf("bob after disconnect: %+v %v", st, err)
	}

	// In FINISHED libotr refuses to send.
	resp, err = bob.Send(ctx, "alice", "are you there?")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Out) != 0 || !resp.HasEvent(EventInjectEmpty) ||
		!strings.Contains(strings.Join(resp.EventArgs(EventMsg, "event"), " "), "OTRL_MSGEVENT_CONNECTION_ENDED") {
		t.Errorf("send in FINISHED: %+v", resp)
	}
	if _, err := bob.End(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if st, err := bob.Status(ctx, "alice"); err != nil || st.MsgState != "plaintext" {
		t.Errorf("bob after his end: %+v %v", st, err)
	}

	// A new AKE works after both ended.
	establish(t, n, bob, alice, 3)
}

func TestSymkey(t *testing.T) {
	t.Parallel()
	ctx, n, alice, bob := startPair(t, Options{}, Options{})
	establish(t, n, alice, bob, 3)
	usedata := []byte("file\x00name.txt")
	key, r, err := alice.Symkey(ctx, "bob", 0x1234, usedata)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Out) != 1 {
		t.Fatalf("symkey: %d lines out", len(r.Out))
	}
	arr := n.deliver(alice, r)
	evs := arr.events("bob", EventSymkey)
	if len(evs) != 1 {
		t.Fatalf("bob received_symkey events: %v", evs)
	}
	if e := evs[0]; e.Args["use"] != "4660" || e.Args["usedata"] != string(usedata) || e.Args["key"] != string(key) {
		t.Errorf("bob got %v, want use 4660 usedata %q key %x", e, usedata, key)
	}
	if len(arr.delivered("bob")) != 0 {
		t.Errorf("symkey message was shown to the user")
	}
}

func TestTrustAndPersistence(t *testing.T) {
	t.Parallel()
	ctx, n, alice, bob := startPair(t, Options{Instag: 0x12345678}, Options{})
	if alice.Instag() != 0x12345678 {
		t.Fatalf("fixed instag: got %08x", alice.Instag())
	}
	establish(t, n, alice, bob, 3)
	if _, err := alice.Trust(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	st, err := alice.Status(ctx, "bob")
	if err != nil || !st.Trusted || st.Trust != "verified" {
		t.Fatalf("after trust: %+v %v", st, err)
	}
	fp, err := os.ReadFile(filepath.Join(alice.Dir(), "otr.fp"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "bob\talice\tIRC\t" + bob.Fingerprint() + "\tverified\n"; !strings.Contains(string(fp), want) {
		t.Errorf("otr.fp = %q, want a line %q", fp, want)
	}
	if _, err := alice.SetTrust(ctx, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if st, err := alice.Status(ctx, "bob"); err != nil || st.Trusted {
		t.Errorf("after untrust: %+v %v", st, err)
	}
	if _, err := alice.Trust(ctx, "bob"); err != nil {
		t.Fatal(err)
	}

	// A restarted peer keeps its key, instance tag and trusted fingerprint.
	fpr, dir := alice.Fingerprint(), alice.Dir()
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	again := newPeer(t, ctx, Options{Account: "alice", Dir: dir})
	if again.Instag() != 0x12345678 || again.Fingerprint() != fpr {
		t.Errorf("restart: instag %08x fingerprint %s, want 12345678 %s", again.Instag(), again.Fingerprint(), fpr)
	}
	n = newNetwork(t, ctx, again, bob)
	if _, err := bob.End(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	establish(t, n, again, bob, 3)
	if st, err := again.Status(ctx, "bob"); err != nil || !st.Trusted {
		t.Errorf("trust not persisted: %+v %v", st, err)
	}
}

func TestPolicyAlwaysQueuesMessage(t *testing.T) {
	t.Parallel()
	ctx, n, alice, _ := startPair(t, Options{Policy: PolicyAlways}, Options{})
	r, err := alice.Send(ctx, "bob", "secret plans")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Out) != 1 || !strings.HasPrefix(r.Out[0], "?OTRv") ||
		strings.Join(r.EventArgs(EventMsg, "event"), " ") != "OTRL_MSGEVENT_ENCRYPTION_REQUIRED" {
		t.Fatalf("REQUIRE_ENCRYPTION send: %+v", r)
	}
	arr := n.deliver(alice, r)
	// libotr resends the stored message once the session is up.
	if d := arr.delivered("bob"); len(d) != 1 || d[0] != "secret plans" {
		t.Errorf("bob got %q after the AKE", d)
	}
}

func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	p := newPeer(t, ctx, Options{Account: "carol"})

	var ce *CommandError
	if _, err := p.do(ctx, "bogus"); !errors.As(err, &ce) || ce.Message != "unknown command" {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := p.exchange(ctx, "recv", "recv zz 00\n"); !errors.As(err, &ce) {
		t.Errorf("bad hex: %v", err)
	}
	if _, err := p.exchange(ctx, "recv", "recv 61 6200\n"); !errors.As(err, &ce) {
		t.Errorf("NUL in message: %v", err)
	}
	if _, err := p.exchange(ctx, "recv", "recv 1 2 3 4 5 6 7 8 9\n"); !errors.As(err, &ce) {
		t.Errorf("too many words: %v", err)
	}
	long := "recv " + strings.Repeat("61", MaxLine/2+8) + "\n"
	if _, err := p.exchange(ctx, "recv", long); !errors.As(err, &ce) || ce.Message != "line too long" {
		t.Errorf("long line: %v", err)
	}
	if _, err := p.Recv(ctx, "dave", strings.Repeat("a", MaxLine/2+8)); err == nil {
		t.Errorf("Recv with an oversized line succeeded")
	}
	if _, err := p.Status(ctx, "nobody"); !errors.As(err, &ce) || !strings.Contains(ce.Message, "no such context") {
		t.Errorf("status of unknown: %v", err)
	}
	r, err := p.Recv(ctx, "dave", "just plaintext")
	if err != nil || !r.Delivered || r.Text != "just plaintext" {
		t.Errorf("plaintext recv: %+v %v", r, err)
	}
	if _, err := p.SMPStart(ctx, "dave", "x"); !errors.As(err, &ce) || !strings.Contains(ce.Message, "not encrypted") {
		t.Errorf("SMP without session: %v", err)
	}
	if err := p.SetMaxMessageSize(ctx, 10); !errors.As(err, &ce) {
		t.Errorf("tiny mms: %v", err)
	}
	if err := p.SetPolicy(ctx, PolicyNever); err != nil {
		t.Fatal(err)
	}
	r, err = p.Send(ctx, "dave", "plain")
	if err != nil || len(r.Out) != 1 || r.Out[0] != "plain" || !r.HasEvent(EventSendUnmodified) {
		t.Errorf("send with policy never: %+v %v", r, err)
	}
	// The peer is still in step after all that.
	if _, err := p.Poll(ctx); err != nil {
		t.Errorf("poll: %v", err)
	}

	if _, err := Start(ctx, Options{MaxMessageSize: 10}); err == nil {
		t.Error("Start accepted MaxMessageSize 10")
	}
	if _, err := Start(ctx, Options{Instag: 0x42}); err == nil {
		t.Error("Start accepted Instag 0x42")
	}
}

func TestContextCancelKillsCommand(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	p := newPeer(t, ctx, Options{Account: "erin"})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Poll(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Poll with canceled context: %v", err)
	}
	// The peer is still usable: the command was never sent.
	if _, err := p.Poll(ctx); err != nil {
		t.Errorf("Poll: %v", err)
	}
}

func TestPolicyHelpers(t *testing.T) {
	if PolicyDefault != 0x76 || PolicyAlways != 0x6e || PolicyManual != 0x06 {
		t.Errorf("policy constants: default %#x always %#x manual %#x", PolicyDefault, PolicyAlways, PolicyManual)
	}
	if got := PolicyDefault.V2Only(); got != 0x72 {
		t.Errorf("PolicyDefault.V2Only() = %#x", got)
	}
	if PolicyV2Only.V2Only() != PolicyV2Only {
		t.Error("PolicyV2Only.V2Only() changed it")
	}
}

// fakeTB records the Skipf and Fatalf calls made by require; other
// testing.TB methods are not used by it.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }

func TestRequire(t *testing.T) {
	unavailable := func() (string, error) { return "", fmt.Errorf("%w: no cc", ErrUnavailable) }
	broken := func() (string, error) { return "", errors.New("compile error") }
	ok := func() (string, error) { return "/bin/peer", nil }
	for _, tc := range []struct {
		name, ci    string
		build       func() (string, error)
		skip, fatal bool
	}{
		{"missing", "", unavailable, true, false},
		{"missing in CI", "true", unavailable, false, true},
		{"missing, CI=false", "false", unavailable, true, false},
		{"broken", "", broken, false, true},
		{"ok in CI", "true", ok, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			f := &fakeTB{}
			path := require(f, tc.build)
			if f.skipped != tc.skip || f.failed != tc.fatal {
				t.Errorf("skipped=%v failed=%v, want %v %v", f.skipped, f.failed, tc.skip, tc.fatal)
			}
			if !tc.skip && !tc.fatal && path != "/bin/peer" {
				t.Errorf("path %q", path)
			}
		})
	}
}

func TestMissingPrerequisite(t *testing.T) {
	for _, tc := range []struct {
		diag string
		want bool
	}{
		{"peer.c:31:10: fatal error: libotr/proto.h: No such file or directory", true},
		{"/usr/include/libotr/context.h:23:10: fatal error: gcrypt.h: No such file or directory", true},
		{"/usr/bin/ld: cannot find -lotr: No such file or directory", true},
		{"/usr/bin/ld: cannot find -lgcrypt", true},
		{"peer.c:99:5: error: expected ';' before '}' token", false},
		{"peer.c:1:10: fatal error: stdio.h: No such file or directory", false},
	} {
		if got := missingPrerequisite([]byte(tc.diag)); got != tc.want {
			t.Errorf("missingPrerequisite(%q) = %v", tc.diag, got)
		}
	}
	t.Setenv("CC", "/nonexistent/cc")
	if _, _, err := compilerCommand(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("missing $CC: %v", err)
	}
}

func TestBuildCachedAndWarningFree(t *testing.T) {
	t.Parallel()
	path := Require(t)
	again, err := Build()
	if err != nil || again != path {
		t.Fatalf("second Build: %q %v", again, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("binary %s: %v", path, err)
	}
	cc, ccArgs, err := compilerCommand()
	if err != nil {
		t.Fatal(err)
	}
	bin, diag, err := compile(cc, ccArgs, t.TempDir(), []string{"-Werror"})
	if err != nil || diag != "" {
		t.Fatalf("compiling with -Wall -Wextra -Werror: %v\n%s", err, diag)
	}
	os.Remove(bin)
}

func TestRunBench(t *testing.T) {
	t.Parallel()
	Require(t)
	ctx := testContext(t)
	sizes := map[string]int{BenchAKE: 3, BenchAlternating: 10, BenchBurst100: 200, BenchBurst400: 200,
		BenchFrag2000: 20, BenchSMP: 1, BenchHeap: 5}
	for _, w := range Workloads() {
		r, err := RunBench(ctx, w, sizes[w])
		if err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		t.Log(r)
		if r.Workload != w || r.N != sizes[w] || r.Op == "" ||
			r.Min <= 0 || r.Min > r.Median || r.Median > r.Max || r.Mean < r.Min || r.Mean > r.Max {
			t.Errorf("%s: implausible result %+v", w, r)
		}
		if (w == BenchHeap) != (r.HeapBytesPerPair > 0) {
			t.Errorf("%s: HeapBytesPerPair %v", w, r.HeapBytesPerPair)
		}
	}
	if _, err := RunBench(ctx, "nonsense", 1); err == nil || !strings.Contains(err.Error(), "unknown workload") {
		t.Errorf("unknown workload: %v", err)
	}
}

func TestParseBenchOutput(t *testing.T) {
	out := "bench workload=ake n=3 median_ns=4560000 mean_ns=4600000 min_ns=4500000 max_ns=4700000 op=6f70\n" +
		"bench workload=heap n=2 median_ns=1 mean_ns=1 min_ns=1 max_ns=1 heap_bytes_per_pair=92979 op=\nok\n"
	rs, err := parseBenchOutput(out)
	if err != nil || len(rs) != 2 {
		t.Fatalf("%v %v", rs, err)
	}
	if rs[0].Median != 4560*time.Microsecond || rs[0].Op != "op" || rs[1].HeapBytesPerPair != 92979 {
		t.Errorf("%+v", rs)
	}
	if _, err := parseBenchOutput("err boom\n"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err line: %v", err)
	}
	if _, err := parseBenchOutput("bench n=x\nok\n"); err == nil {
		t.Error("accepted bad n")
	}
}

// BenchmarkLibotr reports libotr's own per-operation figures (ns/op is
// libotr's median; key generation and warm-up are excluded).
func BenchmarkLibotr(b *testing.B) {
	Require(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for _, w := range Workloads() {
		b.Run(w, func(b *testing.B) {
			r, err := RunBench(ctx, w, b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(r.Median.Nanoseconds()), "ns/op")
			r.ReportMetrics(b)
		})
	}
}
