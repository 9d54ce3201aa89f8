package otrcore

import (
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
)

func securePair(t *testing.T, optsA, optsB Options) (*link, *party, *party) {
	t.Helper()
	a := newParty(t, "alice", 0, 0x1234abcd, "bob", optsA)
	b := newParty(t, "bob", 1, 0xfedc0100, "alice", optsB)
	l := newLink(t, a, b)
	l.start(a)
	if a.conv.Status().State != StateEncrypted || b.conv.Status().State != StateEncrypted {
		t.Fatalf("not encrypted: alice %v bob %v; events a=%v b=%v", a.conv.Status().State, b.conv.Status().State, a.events, b.events)
	}
	return l, a, b
}

func TestAKEv3AndMessages(t *testing.T) {
	opts := Options{Policy: PolicyManual}
	l, a, b := securePair(t, opts, opts)
	sa, sb := a.conv.Status(), b.conv.Status()
	if sa.Version != 3 || sb.Version != 3 {
		t.Fatalf("versions %d %d", sa.Version, sb.Version)
	}
	if sa.Fingerprint != b.acct.Key.Fingerprint() || sb.Fingerprint != a.acct.Key.Fingerprint() {
		t.Fatal("fingerprints do not match the peers' keys")
	}
	if sa.SSID != sb.SSID || sa.WeSentRevealSig == sb.WeSentRevealSig {
		t.Fatal("SSID mismatch")
	}
	if sa.Instance != 0xfedc0100 || sb.Instance != 0x1234abcd {
		t.Fatalf("instance tags %x %x", sa.Instance, sb.Instance)
	}
	for i := 0; i < 60; i++ {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		msg := strings.Repeat("x", i) + " hello"
		l.send(from, msg)
		got := to.lastText(t)
		if got.Text != msg || !got.Encrypted {
			t.Fatalf("message %d: got %q encrypted=%v", i, got.Text, got.Encrypted)
		}
	}
	for _, line := range append(l.aToB, l.bToA...) {
		if strings.Contains(line, "hello") {
			t.Fatalf("plaintext on the wire: %q", line)
		}
	}
}

func TestAKEv2OnlyPeer(t *testing.T) {
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyManual})
	b := newParty(t, "bob", 1, 0x200, "alice", Options{Policy: AllowV2})
	l := newLink(t, a, b)
	l.start(a)
	if st := a.conv.Status(); st.State != StateEncrypted || st.Version != 2 {
		t.Fatalf("alice: %+v", st)
	}
	l.send(b, "over v2")
	if got := a.lastText(t); got.Text != "over v2" || !got.Encrypted {
		t.Fatalf("got %+v", got)
	}
}

func TestV1QueryIgnored(t *testing.T) {
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyOpportunistic})
	res, err := a.conv.Receive(time.Unix(0, 0), "?OTR?")
	if err != nil || len(res.Send) != 0 {
		t.Fatalf("v1 query answered: %v %v", res.Send, err)
	}
	if a.conv.master.ake.active() {
		t.Fatal("v1 query started an AKE")
	}
}

func TestWhitespaceTagStartsAKE(t *testing.T) {
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyOpportunistic})
	b := newParty(t, "bob", 1, 0x200, "alice", Options{Policy: PolicyOpportunistic})
	l := newLink(t, a, b)
	// Simulate a server that strips trailing whitespace.
	l.filter = func(_ *party, line string) (string, bool) { return strings.TrimRight(line, " \t"), true }
	l.send(a, "hi there")
	if got := b.got[0]; got.Text != "hi there" || got.Encrypted {
		t.Fatalf("bob got %+v", got)
	}
	if a.conv.Status().State != StateEncrypted || b.conv.Status().State != StateEncrypted {
		t.Fatal("whitespace tag did not start the AKE")
	}
	// Once plaintext has been received, no more tags are sent.
	res, _ := b.conv.Send(l.now, "x")
	if strings.Contains(res.Send[0].Lines[0], wsTagBase) {
		t.Fatal("tag still sent in an encrypted session")
	}
}

func TestRequireEncryptionHoldsAndSends(t *testing.T) {
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyAlways})
	b := newParty(t, "bob", 1, 0x200, "alice", Options{Policy: PolicyManual})
	l := newLink(t, a, b)
	res, err := a.conv.Send(l.now, "top secret one")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) == 0 || res.Events[0].Kind != EventMessageHeld {
		t.Fatalf("events %v", res.Events)
	}
	for _, m := range res.Send {
		for _, line := range m.Lines {
			if strings.Contains(line, "top secret") {
				t.Fatal("held message leaked")
			}
		}
	}
	res2, _ := a.conv.Send(l.now, "top secret two")
	l.deliver(a, res)
	l.deliver(a, res2)
	if len(b.got) != 2 || b.got[0].Text != "top secret one" || b.got[1].Text != "top secret two" || !b.got[1].Encrypted {
		t.Fatalf("bob got %+v", b.got)
	}
	if !a.hasEvent(EventHeldSent) {
		t.Fatal("no held-sent event")
	}
	for _, line := range l.aToB {
		if strings.Contains(line, "top secret") {
			t.Fatalf("plaintext on the wire: %q", line)
		}
	}
}

func TestHeldBlockedForUnknownKey(t *testing.T) {
	trust := &memTrust{known: map[string][][20]byte{}}
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyAlways})
	a.acct.Trust = trust
	// Bob was known under key 2; now key 1 answers.
	trust.known["bob"] = [][20]byte{testKey(t, 2).Fingerprint()}
	b := newParty(t, "mallory", 1, 0x200, "alice", Options{Policy: PolicyManual})
	l := newLink(t, a, b)
	l.send(a, "for bob only")
	if len(b.got) != 0 {
		t.Fatalf("held message delivered to an unknown key: %+v", b.got)
	}
	if !a.hasEvent(EventHeldBlocked) || !a.hasEvent(EventNewFingerprint) {
		t.Fatalf("events %v", a.events)
	}
	if a.conv.Status().Held != 1 {
		t.Fatal("message not kept")
	}
	// Trusting the key (by the user's decision) releases it.
	res, err := a.conv.ReleaseHeld(l.now)
	if err != nil {
		t.Fatal(err)
	}
	l.deliver(a, res)
	if len(b.got) != 1 || b.got[0].Text != "for bob only" {
		t.Fatalf("after release: %+v", b.got)
	}
}

func TestFinishedRefusesAndEndResets(t *testing.T) {
	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	l.deliver(b, b.conv.End(l.now))
	if b.conv.Status().State != StatePlaintext {
		t.Fatal("ender not in plaintext")
	}
	if a.conv.Status().State != StateFinished || !a.hasEvent(EventPeerFinished) {
		t.Fatalf("alice state %v", a.conv.Status().State)
	}
	res, err := a.conv.Send(l.now, "oops")
	if err != ErrFinished || len(res.Send) != 0 {
		t.Fatalf("FINISHED send: %v %v", res.Send, err)
	}
	a.conv.End(l.now)
	if a.conv.Status().State != StatePlaintext {
		t.Fatal("End from FINISHED did not return to plaintext")
	}
}

func TestTamperedAndReplayedDataRejected(t *testing.T) {
	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	res, err := a.conv.Send(l.now, "original")
	if err != nil {
		t.Fatal(err)
	}
	line := res.Send[0].Lines[0]
	r, _ := b.conv.Receive(l.now, line)
	if !r.HasText || r.Text != "original" {
		t.Fatalf("first delivery: %+v", r)
	}
	// Replay.
	r, _ = b.conv.Receive(l.now, line)
	if r.HasText || !hasKind(r.Events, EventUnreadable) {
		t.Fatalf("replay accepted: %+v", r)
	}
	// Flip one bit of the ciphertext.
	res, _ = a.conv.Send(l.now, "second")
	payload, _, _ := findEnvelope(res.Send[0].Lines[0])
	payload[len(payload)-30] ^= 1
	r, _ = b.conv.Receive(l.now.Add(time.Minute), encodeEnvelope(payload))
	if r.HasText || !hasKind(r.Events, EventUnreadable) {
		t.Fatalf("tampered accepted: %+v", r)
	}
	// The genuine message still gets through afterwards.
	r, _ = b.conv.Receive(l.now, res.Send[0].Lines[0])
	if r.Text != "second" {
		t.Fatalf("genuine after tamper: %+v", r)
	}
}

func hasKind(evs []Event, k EventKind) bool {
	for _, e := range evs {
		if e.Kind == k {
			return true
		}
	}
	return false
}

func TestNextDHRangeChecked(t *testing.T) {
	_, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	now := time.Unix(2e9, 0)
	in, _ := a.conv.sendTarget()
	for _, bad := range []*big.Int{big.NewInt(1), big.NewInt(0), new(big.Int).Sub(otrGroup().p, big.NewInt(1))} {
		// Forge a correctly MACed message from alice announcing a bad key.
		saved := in.keys.our[1].pub
		in.keys.our[1].pub = bad.Bytes()
		res, err := a.conv.Send(now, "bad key")
		in.keys.our[1].pub = saved
		if err != nil {
			t.Fatal(err)
		}
		r, _ := b.conv.Receive(now, res.Send[0].Lines[0])
		if r.HasText {
			t.Fatalf("accepted next DH key %v", bad)
		}
	}
}

func TestSimultaneousStart(t *testing.T) {
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyManual})
	b := newParty(t, "bob", 1, 0x200, "alice", Options{Policy: PolicyManual})
	l := newLink(t, a, b)
	qa, qb := mustStart(a.conv, l.now), mustStart(b.conv, l.now)
	// Both queries cross; both answer with commits that cross too.
	ra, _ := a.conv.Receive(l.now, qb.Send[0].Lines[0])
	rb, _ := b.conv.Receive(l.now, qa.Send[0].Lines[0])
	l.deliver(a, ra)
	l.deliver(b, rb)
	if a.conv.Status().State != StateEncrypted || b.conv.Status().State != StateEncrypted {
		t.Fatalf("commit collision not resolved: %v %v", a.conv.Status().State, b.conv.Status().State)
	}
	l.send(a, "after collision")
	if b.lastText(t).Text != "after collision" {
		t.Fatal("no message after collision")
	}
}

func TestInstanceTagRules(t *testing.T) {
	_, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	now := time.Unix(2e9, 0)
	res, _ := a.conv.Send(now, "tagged")
	payload, _, _ := findEnvelope(res.Send[0].Lines[0])
	// Receiver tag changed to another instance: dropped silently.
	other := append([]byte(nil), payload...)
	other[7], other[8], other[9], other[10] = 0, 0, 0x09, 0x99
	if r, _ := b.conv.Receive(now, encodeEnvelope(other)); r.HasText || len(r.Send) != 0 {
		t.Fatalf("message for another instance accepted: %+v", r)
	}
	// Sender tag below 0x100: dropped.
	low := append([]byte(nil), payload...)
	low[3], low[4], low[5], low[6] = 0, 0, 0, 0x42
	if r, _ := b.conv.Receive(now, encodeEnvelope(low)); r.HasText || len(r.Send) != 0 {
		t.Fatalf("message with low sender tag accepted: %+v", r)
	}
	if r, _ := b.conv.Receive(now, res.Send[0].Lines[0]); r.Text != "tagged" {
		t.Fatal("genuine message lost")
	}
}

func TestTwoInstancesOfOnePeer(t *testing.T) {
	// Bob is logged in twice (two instance tags, two keys); alice keeps a
	// session with each.
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyManual})
	b1 := newParty(t, "bob1", 1, 0x1001, "alice", Options{Policy: PolicyManual})
	b2 := newParty(t, "bob2", 2, 0x1002, "alice", Options{Policy: PolicyManual})
	l1, l2 := newLink(t, a, b1), newLink(t, a, b2)
	l1.start(b1)
	l2.start(b2)
	st := a.conv.Status()
	if len(st.Instances) < 2 {
		t.Fatalf("instances: %+v", st.Instances)
	}
	l1.send(b1, "from one")
	if r := a.lastText(t); r.Text != "from one" || r.Instance != 0x1001 {
		t.Fatalf("got %+v", r)
	}
	l2.send(b2, "from two")
	if r := a.lastText(t); r.Text != "from two" || r.Instance != 0x1002 {
		t.Fatalf("got %+v", r)
	}
}

func TestFragmentationSmall(t *testing.T) {
	opts := Options{Policy: PolicyManual, MaxMessageSize: 60}
	l, a, b := securePair(t, opts, opts)
	msg := strings.Repeat("long message ", 40)
	l.send(a, msg)
	if b.lastText(t).Text != msg {
		t.Fatal("fragmented message not reassembled")
	}
	for _, line := range l.aToB {
		if len(line) > 60 {
			t.Fatalf("line of %d bytes exceeds 60", len(line))
		}
	}
}

func TestExtraSymmetricKey(t *testing.T) {
	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	key, res, err := a.conv.SendExtraKey(l.now, 7, []byte("file.txt"))
	if err != nil {
		t.Fatal(err)
	}
	l.deliver(a, res)
	for _, e := range b.events {
		if e.Kind == EventExtraKey {
			if e.ExtraKey != key || e.KeyUse != 7 || string(e.KeyUseData) != "file.txt" {
				t.Fatalf("extra key event %+v", e)
			}
			return
		}
	}
	t.Fatal("no extra key event")
}

func TestHeartbeatAfterSilence(t *testing.T) {
	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	l.send(a, "ping")
	l.now = l.now.Add(2 * time.Minute)
	res := b.conv.Tick(l.now)
	if len(res.Send) != 1 {
		t.Fatalf("no heartbeat after silence: %+v", res)
	}
	l.deliver(b, res)
	if len(a.got) != 0 {
		t.Fatal("heartbeat shown as a message")
	}
}

func TestPlaintextInSessionFlagged(t *testing.T) {
	_, a, _ := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	r, _ := a.conv.Receive(time.Unix(0, 0), "sneaky clear text")
	if !r.HasText || r.Encrypted || !hasKind(r.Events, EventPlaintextInSession) {
		t.Fatalf("%+v", r)
	}
}

func TestErrorNotAnsweredWithError(t *testing.T) {
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyManual})
	r, _ := a.conv.Receive(time.Unix(0, 0), "?OTR Error: something")
	for _, m := range r.Send {
		for _, line := range m.Lines {
			if strings.HasPrefix(line, "?OTR Error") {
				t.Fatal("error answered with error")
			}
		}
	}
	if !hasKind(r.Events, EventPeerError) {
		t.Fatal("no peer-error event")
	}
}

func TestUnreadableErrorsRateLimited(t *testing.T) {
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyManual})
	b := newParty(t, "bob", 1, 0x200, "alice", Options{Policy: PolicyManual})
	l := newLink(t, a, b)
	l.start(a)
	res, _ := a.conv.Send(l.now, "x")
	fresh := newParty(t, "bob-restarted", 1, 0x200, "alice", Options{Policy: PolicyManual})
	errs := 0
	for i := 0; i < 5; i++ {
		r, _ := fresh.conv.Receive(l.now.Add(time.Duration(i)*time.Second), res.Send[0].Lines[0])
		errs += len(r.Send)
	}
	if errs != 1 {
		t.Fatalf("%d error messages for 5 unreadable messages in 5 s, want 1", errs)
	}
}

func TestPolicyNeverKeepsRunningSessionEncrypted(t *testing.T) {
	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	a.conv.SetPolicy(PolicyNever)
	res, err := a.conv.Send(l.now, "still private")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res.Send {
		for _, line := range m.Lines {
			if strings.Contains(line, "still private") {
				t.Fatal("policy change sent a running session's message in clear")
			}
		}
	}
	l.deliver(a, res)
	if got := b.lastText(t); got.Text != "still private" || !got.Encrypted {
		t.Fatalf("got %+v", got)
	}
	// Once the session ends, "never" means plain text.
	l.deliver(a, a.conv.End(l.now))
	res, _ = a.conv.Send(l.now, "now clear")
	if len(res.Send) != 1 || res.Send[0].Lines[0] != "now clear" {
		t.Fatalf("after End with policy never: %v", res.Send)
	}
}

func TestSetPeerMovesTrustQueries(t *testing.T) {
	trust := &memTrust{known: map[string][][20]byte{}}
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyAlways})
	a.acct.Trust = trust
	b := newParty(t, "bob", 1, 0x200, "alice", Options{Policy: PolicyManual})
	// The new nick has been seen with another key; the old one never was.
	trust.known["robert"] = [][20]byte{testKey(t, 2).Fingerprint()}
	a.conv.SetPeer("robert")
	if a.conv.Peer() != "robert" {
		t.Fatal("Peer not renamed")
	}
	l := newLink(t, a, b)
	l.send(a, "held for robert")
	if len(b.got) != 0 || !a.hasEvent(EventHeldBlocked) {
		t.Fatalf("held message released although %q was known under another key: %+v", "robert", b.got)
	}
}

// TestHeldMessagesAreNeverOvertakenInClear: once messages wait for
// encryption, a policy change does not let a later message go out in
// clear ahead of them.
func TestHeldMessagesAreNeverOvertakenInClear(t *testing.T) {
	now := time.Unix(1e9, 0)
	c := NewConversation(&Account{Key: testKey(t, 0), InstanceTag: 0x100}, "bob", Options{Policy: PolicyAlways})
	if _, err := c.Send(now, "first"); err != nil {
		t.Fatal(err)
	}
	for _, pol := range []Policy{PolicyManual, PolicyNever} {
		c.SetPolicy(pol)
		res, err := c.Send(now, "later")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Send {
			for _, l := range m.Lines {
				if strings.Contains(l, "later") {
					t.Fatalf("policy %v: sent in clear ahead of held messages: %q", pol, l)
				}
			}
		}
	}
	if st := c.Status(); st.Held != 3 {
		t.Errorf("held %d, want 3", st.Held)
	}
}

// TestOutgoingKinds: every message the engine sends says what it is and
// which instance it is for, so a transport can pace it without parsing.
func TestOutgoingKinds(t *testing.T) {
	a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyManual, MaxMessageSize: 120})
	b := newParty(t, "bob", 1, 0x200, "alice", Options{Policy: PolicyManual, MaxMessageSize: 120})
	l := newLink(t, a, b)
	kinds := map[string][]OutKind{}
	want := func(what string, res Result, kinds ...OutKind) {
		t.Helper()
		if len(res.Send) != len(kinds) {
			t.Fatalf("%s: %d messages, want %d", what, len(res.Send), len(kinds))
		}
		for i, m := range res.Send {
			if m.Kind != kinds[i] {
				t.Errorf("%s: message %d is %v, want %v", what, i, m.Kind, kinds[i])
			}
		}
	}
	res, _ := a.conv.Send(l.now, "in clear")
	want("plaintext", res, OutPlaintext)
	res = mustStart(a.conv, l.now)
	want("start", res, OutQuery)
	// The AKE: every message b and a send until both are encrypted.
	for from, r := a, res; len(r.Send) > 0; {
		to := l.other(from)
		var next Result
		for _, m := range r.Send {
			kinds[from.name] = append(kinds[from.name], m.Kind)
			for _, line := range m.Lines {
				got, err := to.conv.Receive(l.now, line)
				if err != nil {
					t.Fatal(err)
				}
				next.Send = append(next.Send, got.Send...)
			}
		}
		from, r = to, next
	}
	if st := a.conv.Status(); st.State != StateEncrypted {
		t.Fatalf("AKE: %+v", st)
	}
	if fmt.Sprint(kinds["bob"]) != "[ake ake]" || fmt.Sprint(kinds["alice"]) != "[query ake ake]" {
		t.Errorf("AKE kinds: %v", kinds)
	}
	res, _ = a.conv.Send(l.now, strings.Repeat("fragmented ", 30))
	want("text", res, OutText)
	if m := res.Send[0]; len(m.Lines) < 2 || m.Instance != 0x200 {
		t.Errorf("text: %d lines to instance %#x", len(m.Lines), m.Instance)
	}
	res, _ = a.conv.Heartbeat(l.now)
	want("heartbeat", res, OutControl)
	res, _ = a.conv.StartSMP(l.now, "", false, "secret")
	want("SMP", res, OutControl)
	l.deliver(a, res) // bob now awaits his secret
	// An undecryptable message gets an error back.
	fresh := newParty(t, "bob again", 1, 0x200, "alice", Options{Policy: PolicyManual})
	text, _ := a.conv.Send(l.now, "x")
	var got Result
	for _, line := range text.Send[0].Lines {
		got, _ = fresh.conv.Receive(l.now, line)
	}
	want("error", got, OutError)
	want("end", a.conv.End(l.now), OutControl)
}
