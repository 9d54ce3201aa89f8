package otrcore

import (
	"bytes"
	"fmt"
	"math/big"
	mathrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fuzz targets for whole conversations. The seeds added with f.Add run as
// ordinary tests under `go test`; fuzz with
//
//	go test -run XXX -fuzz=FuzzConversationReceive -fuzztime=60s ./otrcore/
//	go test -run XXX -fuzz=FuzzConversationAKE -fuzztime=60s ./otrcore/

const (
	fzTagA     uint32 = 0x0100_a11c // alice: the conversation under test
	fzTagB     uint32 = 0x0200_0b0b // bob: her peer
	fzMMS             = 160         // alice's and bob's line limit
	fzMaxLines        = 16          // lines per FuzzConversationReceive input
)

// fzNow is the fixed clock of the fuzz targets.
var fzNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// fzMarkers are texts alice types; none may ever leave her in clear.
// Spaces and "!" keep them out of the base64 alphabet.
var fzMarkers = []string{"alice secret one!", "alice secret two!"}

// fzRand returns a deterministic randomness source, so that a rebuilt
// session is the same session and the seeds' data messages decrypt in it.
func fzRand(seed byte) *mathrand.ChaCha8 {
	var s [32]byte
	for i := range s {
		s[i] = seed + byte(i)
	}
	return mathrand.NewChaCha8(s)
}

// fzAKEKeys are the fixed DH keys of the installed session.
var fzAKEKeys = sync.OnceValue(func() [2]*big.Int {
	gr := otrGroup()
	return [2]*big.Int{gr.expG(fzPrivA()), gr.expG(fzPrivB())}
})

func fzPrivA() []byte { return bytes.Repeat([]byte{0x3a}, dhPrivateBytes) }
func fzPrivB() []byte { return bytes.Repeat([]byte{0x5b}, dhPrivateBytes) }

// fzPair returns alice (PolicyAlways: nothing she types may go out in
// clear) and bob with a v3 session established between them, installed
// directly as a completed AKE would (a real AKE per fuzz input would cost
// tens of milliseconds). Everything is deterministic: the same pair
// every time, so bob's messages captured in the seeds decrypt for alice.
func fzPair(tb testing.TB) (alice, bob *Conversation) {
	tb.Helper()
	ka, kb := astKey(tb, 0), astKey(tb, 1)
	alice = NewConversation(&Account{Key: ka, InstanceTag: fzTagA, Rand: fzRand(1)}, "bob", Options{Policy: PolicyAlways, MaxMessageSize: fzMMS})
	bob = NewConversation(&Account{Key: kb, InstanceTag: fzTagB, Rand: fzRand(2)}, "alice", Options{Policy: PolicyAlways, MaxMessageSize: fzMMS})
	pubs := fzAKEKeys()
	ssid := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, s := range []struct {
		c        *Conversation
		peerTag  uint32
		priv     []byte
		theirY   *big.Int
		theirPub *publicKey
		revealer bool
	}{
		{alice, fzTagB, fzPrivA(), pubs[1], kb.publicKey(), false},
		{bob, fzTagA, fzPrivB(), pubs[0], ka.publicKey(), true},
	} {
		in := s.c.instanceFor(s.peerTag, true, fzNow)
		var res Result
		err := s.c.goneSecure(&res, in, fzNow, &akeResult{version: protocolV3, ourKey: &dhKeyPair{priv: s.priv}, theirKeyID: akeKeyID,
			theirY: s.theirY, theirPub: s.theirPub, ssid: ssid, weSentRevealSig: s.revealer})
		if err != nil || s.c.Status().State != StateEncrypted {
			tb.Fatalf("installing the session: %v", err)
		}
	}
	return alice, bob
}

// fzGenuine holds every text bob sends in fzSeeds' session: the only
// texts alice may ever show as encrypted, each at most once per input.
var (
	fzGenuineMu sync.Mutex
	fzGenuine   = map[string]bool{}
)

// fzLines flattens a Result's messages into lines.
func fzLines(res Result) []string {
	var out []string
	for _, m := range res.Send {
		out = append(out, m.Lines...)
	}
	return out
}

// fzSeeds returns captured protocol traffic as inputs (one or more lines
// joined by "\n"), and records bob's texts in fzGenuine.
func fzSeeds(tb testing.TB) []string {
	tb.Helper()
	var seeds []string
	add := func(lines ...string) { seeds = append(seeds, strings.Join(lines, "\n")) }
	genuine := func(s string) string {
		fzGenuineMu.Lock()
		fzGenuine[s] = true
		fzGenuineMu.Unlock()
		return s
	}

	// Bob's side of the installed session.
	alice, bob := fzPair(tb)
	send := func(c *Conversation, text string) []string {
		res, err := c.Send(fzNow, text)
		if err != nil {
			tb.Fatal(err)
		}
		return fzLines(res)
	}
	short := send(bob, genuine("genuine short"))
	add(short...)
	long := send(bob, genuine("genuine long "+strings.Repeat("x", 300))) // fragmented
	add(long...)
	for _, l := range long {
		add(l)
	}
	add(long[len(long)-1], long[0])            // out of order
	add(append([]string{long[0]}, long...)...) // restarted
	bob.SetMaxMessageSize(0)
	whole := send(bob, genuine("genuine unfragmented"))
	add(whole...)
	add(whole[0], whole[0]) // replayed
	// The session is deterministic: a rebuilt alice reads bob's messages.
	check, _ := fzPair(tb)
	for _, l := range append(append([]string(nil), long...), whole...) {
		if _, err := check.Receive(fzNow, l); err != nil {
			tb.Fatal(err)
		}
	}
	if r := check.instanceFor(fzTagB, false, fzNow); r == nil || r.keys.theirKeyID != 2 {
		tb.Fatal("a rebuilt session does not read the captured messages")
	}
	add("junk before " + whole[0] + " junk after")
	res, _ := bob.Heartbeat(fzNow)
	add(fzLines(res)...)
	_, res, _ = bob.SendExtraKey(fzNow, 7, []byte("use"))
	add(fzLines(res)...)
	res, _ = bob.StartSMP(fzNow, "question?", true, "secret")
	add(fzLines(res)...)
	// An exchange: bob's later messages use alice's next key.
	for i := range 3 {
		r, err := alice.Receive(fzNow, whole[0])
		_ = r
		if err != nil {
			tb.Fatal(err)
		}
		a := send(alice, fmt.Sprintf("alice reply %d", i))
		add(a...) // alice's own messages coming back
		for _, l := range a {
			if _, err := bob.Receive(fzNow, l); err != nil {
				tb.Fatal(err)
			}
		}
		whole = send(bob, genuine(fmt.Sprintf("genuine after reply %d", i)))
		add(whole...)
	}
	add(fzLines(bob.End(fzNow))...) // TLV 1: disconnected

	// A real AKE and a few messages between the same accounts.
	for _, pol := range []Policy{PolicyManual, AllowV2} {
		a := &party{name: "alice", acct: &Account{Key: astKey(tb, 0), InstanceTag: fzTagA}}
		b := &party{name: "bob", acct: &Account{Key: astKey(tb, 1), InstanceTag: fzTagB}}
		a.conv = NewConversation(a.acct, "bob", Options{Policy: pol, MaxMessageSize: fzMMS})
		b.conv = NewConversation(b.acct, "alice", Options{Policy: pol})
		l := newLink(tb, a, b)
		l.now = fzNow
		l.start(a)
		l.send(b, "from the captured AKE")
		l.send(a, "to the captured AKE")
		for _, line := range l.bToA {
			add(line)
		}
		add(l.bToA...)
		add(l.aToB...)
	}

	// Plaintext, tags, queries, errors and malformed OTR.
	ws := whitespaceTag(versionSetV2 | versionSetV3)
	add("hello in clear")
	add(ws + "tagged hello")
	add("tagged at the end" + ws)
	add("?OTRv23?", "?OTRv2?", "?OTR?", "?OTR?v3?", "?OTRv?")
	add("?OTR Error: something went wrong")
	add("please ?OTR Error: not really")
	add("?OTR:", "?OTR:.", "?OTR:AAMD", "?OTR:AAMDAAAAAQ==.", "?OTR:invalid_base64_thing.", "?OTR:AAEDAAAA.")
	add("?OTR|00000100|0200a11c,00001,00002,?OTR:AAMD,", "?OTR|0200000b|0100a11c,00002,00002,AAAA.,")
	add("?OTR,00001,00001,?OTR:AAID.,", "?OTR|1|2,1,1,x,", "?OTR|0200|0100a11c,0,0,x,", "?OTR|0200000b|0100a11c,65535,65535,x,")
	// Damaged copies of bob's first message.
	for _, cut := range []int{10, len(short[0]) / 2, len(short[0]) - 2} {
		add(short[0][:cut])
	}
	b := []byte(whole[0])
	for _, i := range []int{8, 20, 40, len(b) / 2, len(b) - 10} {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		add(string(c))
	}
	return seeds
}

// fzCheckOut checks lines alice sends: none longer than the line limit,
// none carrying a marker in clear, whether as text, inside an encoded
// message or inside reassembled fragments.
func fzCheckOut(t *testing.T, what string, res Result) {
	t.Helper()
	for _, msg := range res.Send {
		var whole strings.Builder
		for _, line := range msg.Lines {
			if len(line) > fzMMS {
				t.Fatalf("%s: %d-byte line exceeds MaxMessageSize %d: %.60q", what, len(line), fzMMS, line)
			}
			for _, m := range fzMarkers {
				if strings.Contains(line, m) {
					t.Fatalf("%s: typed text sent in clear: %q", what, line)
				}
			}
			if f, ok, err := parseFragment(line); ok && err == nil {
				whole.WriteString(f.piece)
			} else {
				whole.WriteString(line)
			}
		}
		if p, ok, err := findEnvelope(whole.String()); ok && err == nil {
			for _, m := range fzMarkers {
				if bytes.Contains(p, []byte(m)) {
					t.Fatalf("%s: typed text in clear inside an OTR message", what)
				}
			}
		}
	}
	for _, e := range res.Events {
		checkErrPrefix(t, what+": "+e.Kind.String(), e.Err)
		for _, m := range fzMarkers {
			if e.Err != nil && strings.Contains(e.Err.Error(), m) {
				t.Fatalf("%s: typed text in an event error: %v", what, e.Err)
			}
		}
	}
}

// FuzzConversationReceive feeds alice, in an established session, the
// lines of input (up to fzMaxLines) and then, if payload is not empty,
// payload as an encoded OTR message (so the fuzzer can mutate binary
// messages directly). Seeds are captured traffic, from bob in her
// session and from real AKEs, and damaged copies.
func FuzzConversationReceive(f *testing.F) {
	seen := map[string]bool{}
	for _, s := range fzSeeds(f) {
		f.Add(s, []byte(nil))
		for _, line := range strings.Split(s, "\n") {
			if p, ok, err := findEnvelope(line); ok && err == nil && !seen[line] {
				seen[line] = true
				f.Add("", p)
			}
		}
	}
	f.Fuzz(func(t *testing.T, input string, payload []byte) {
		lines := strings.Split(input, "\n")
		if len(lines) > fzMaxLines {
			lines = lines[:fzMaxLines]
		}
		if len(payload) > 0 {
			lines = append(lines, encodeEnvelope(payload))
		}
		alice, _ := fzPair(t)
		res, err := alice.Send(fzNow, fzMarkers[0])
		if err != nil || len(res.Send) == 0 {
			t.Fatalf("Send in the session: %v", err)
		}
		fzCheckOut(t, "Send", res)
		shown := map[string]bool{}
		for i, line := range lines {
			res, err := alice.Receive(fzNow.Add(time.Duration(i)*time.Second), line)
			if err != nil {
				t.Fatalf("Receive %d: %v (only local failures may return errors)", i, err)
			}
			fzCheckOut(t, fmt.Sprintf("Receive %d", i), res)
			if res.HasText && res.Encrypted {
				fzGenuineMu.Lock()
				ok := fzGenuine[res.Text]
				fzGenuineMu.Unlock()
				if !ok || shown[res.Text] {
					t.Fatalf("Receive %d: shown as encrypted but not a genuine message from bob (or shown twice): %q", i, res.Text)
				}
				shown[res.Text] = true
			}
		}
		// Whatever the input did, what alice types now never goes out in
		// clear (PolicyAlways): it is encrypted, held or refused.
		res, _ = alice.Send(fzNow.Add(time.Minute), fzMarkers[1])
		fzCheckOut(t, "Send after the input", res)
		fzCheckOut(t, "Tick", alice.Tick(fzNow.Add(3*time.Minute)))
		fzCheckOut(t, "End", alice.End(fzNow.Add(3*time.Minute)))
	})
}

// fzAKE runs an AKE between deterministic alice and bob (alice queries),
// replacing the idx-th line in flight (counting from 0, both directions)
// with replace (dropping it when replace is nil). It returns every line
// delivered, as sent.
func fzAKE(tb testing.TB, v2 bool, idx int, replace []byte) (alice, bob *Conversation, sent [][]byte) {
	tb.Helper()
	pol := PolicyManual
	if v2 {
		pol = AllowV2
	}
	ka, kb := astKey(tb, 0), astKey(tb, 1)
	alice = NewConversation(&Account{Key: ka, InstanceTag: fzTagA, Rand: fzRand(3)}, "bob", Options{Policy: pol})
	bob = NewConversation(&Account{Key: kb, InstanceTag: fzTagB, Rand: fzRand(4)}, "alice", Options{Policy: pol})
	type item struct {
		to   *Conversation
		line string
	}
	queue := []item{{bob, fzLines(mustStart(alice, fzNow))[0]}}
	for n := 0; len(queue) > 0; n++ {
		if n > 40 {
			tb.Fatal("AKE loops")
		}
		it := queue[0]
		queue = queue[1:]
		line := it.line
		if p, ok, err := findEnvelope(line); ok && err == nil {
			sent = append(sent, p)
		} else {
			sent = append(sent, []byte(line))
		}
		if n == idx {
			if replace == nil {
				continue
			}
			line = encodeEnvelope(replace)
		}
		res, err := it.to.Receive(fzNow, line)
		if err != nil {
			tb.Fatalf("Receive: %v", err)
		}
		if res.HasText {
			tb.Fatalf("AKE line shown as text: %q", res.Text)
		}
		other := alice
		if it.to == alice {
			other = bob
		}
		for _, l := range fzLines(res) {
			queue = append(queue, item{other, l})
		}
	}
	return alice, bob, sent
}

func FuzzConversationAKE(f *testing.F) {
	for _, v2 := range []bool{false, true} {
		a, b, sent := fzAKE(f, v2, -1, nil)
		if a.Status().State != StateEncrypted || b.Status().State != StateEncrypted || len(sent) != 5 {
			f.Fatalf("v2=%v: the untouched AKE did not complete in 5 lines (%d)", v2, len(sent))
		}
		f.Add(v2, uint8(255), []byte{}) // untouched
		for i, p := range sent {
			if i == 0 {
				continue // the query
			}
			c := bytes.Clone(p)
			c[len(c)/2] ^= 0x10
			f.Add(v2, uint8(i), c)
		}
		f.Add(v2, uint8(1), sent[1][:len(sent[1])-3])
		f.Add(v2, uint8(2), []byte{}) // dropped
	}
	f.Fuzz(func(t *testing.T, v2 bool, idx uint8, payload []byte) {
		var replace []byte
		if len(payload) > 0 {
			replace = payload
		}
		alice, bob, _ := fzAKE(t, v2, int(idx), replace)
		sa, sb := alice.Status(), bob.Status()
		ka, kb := astKey(t, 0), astKey(t, 1)
		for _, s := range []struct {
			name string
			st   Status
			peer Fingerprint
		}{{"alice", sa, kb.Fingerprint()}, {"bob", sb, ka.Fingerprint()}} {
			if s.st.State == StateEncrypted && s.st.Fingerprint != s.peer {
				t.Fatalf("%s is encrypted with a key that is not her peer's", s.name)
			}
		}
		if sa.State != StateEncrypted || sb.State != StateEncrypted {
			return
		}
		if sa.SSID != sb.SSID || sa.WeSentRevealSig == sb.WeSentRevealSig || sa.Version != sb.Version {
			t.Fatalf("both encrypted but SSID %x/%x, revealer %v/%v, version %d/%d",
				sa.SSID, sb.SSID, sa.WeSentRevealSig, sb.WeSentRevealSig, sa.Version, sb.Version)
		}
		res, err := alice.Send(fzNow, "after the AKE")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range fzLines(res) {
			if r, err := bob.Receive(fzNow, l); err != nil || r.Text != "after the AKE" || !r.Encrypted {
				t.Fatalf("both encrypted but the keys differ: %v %+v", err, r)
			}
		}
	})
}
