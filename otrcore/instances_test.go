package otrcore

import (
	"errors"
	"testing"
)

// steering is alice talking to the nick "bob" behind which two instances
// run: bob's own (key 1) and another (key 2, mallory's), each over its own
// link to alice.
type steering struct {
	t          *testing.T
	trust      *memTrust
	alice      *party
	bob, mal   *party
	lBob, lMal *link
}

const (
	steerBobTag uint32 = 0x1001
	steerMalTag uint32 = 0x1002
)

func newSteering(t *testing.T, bobTrusted bool) *steering {
	s := &steering{t: t, trust: &memTrust{trusted: map[[20]byte]bool{}, known: map[string][][20]byte{}}}
	s.alice = newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyManual})
	s.alice.acct.Trust = s.trust
	if bobTrusted {
		s.trust.trusted[testKey(t, 1).Fingerprint()] = true
	}
	s.bob = newParty(t, "bob", 1, steerBobTag, "alice", Options{Policy: PolicyManual})
	s.mal = newParty(t, "mallory", 2, steerMalTag, "alice", Options{Policy: PolicyManual})
	s.lBob, s.lMal = newLink(t, s.alice, s.bob), newLink(t, s.alice, s.mal)
	s.lBob.start(s.bob)
	if st := s.alice.conv.Status(); st.Instance != steerBobTag || st.State != StateEncrypted {
		t.Fatalf("bob's session: %+v", st)
	}
	return s
}

// aliceSays has alice send text and delivers each message to the
// instance it is addressed to; it returns which of them got it.
func (s *steering) aliceSays(text string) (toBob, toMal bool) {
	s.t.Helper()
	res, err := s.alice.conv.Send(s.lBob.now, text)
	if err != nil {
		s.t.Fatalf("Send: %v", err)
	}
	nb, nm := len(s.bob.got), len(s.mal.got)
	for _, m := range res.Send {
		one := Result{Send: []Outgoing{m}}
		switch m.Instance {
		case steerBobTag:
			s.lBob.deliver(s.alice, one)
		case steerMalTag:
			s.lMal.deliver(s.alice, one)
		default:
			s.t.Fatalf("message to instance %#x", m.Instance)
		}
	}
	return len(s.bob.got) > nb && s.bob.lastText(s.t).Text == text, len(s.mal.got) > nm && s.mal.lastText(s.t).Text == text
}

func (s *steering) goneSecure(from int) Event {
	s.t.Helper()
	for i := len(s.alice.events) - 1; i >= from; i-- {
		if e := s.alice.events[i]; e.Kind == EventGoneSecure {
			return e
		}
	}
	s.t.Fatalf("no gone-secure event in %v", s.alice.events[from:])
	return Event{}
}

// TestInstanceSteering: with bob's verified session current, a second
// instance with another key that goes secure does not take the user's
// messages, nor does it by speaking; what it says is marked as coming
// from a session that is not current, with an untrusted key. SMP goes to
// the current session. Only SetCurrentInstance moves the messages.
func TestInstanceSteering(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		s := newSteering(t, trusted)
		if toBob, _ := s.aliceSays("hello bob"); !toBob {
			t.Fatal("bob did not get alice's message")
		}

		n := len(s.alice.events)
		s.lMal.start(s.mal)
		if e := s.goneSecure(n); e.Instance != steerMalTag || e.Current || e.Trusted {
			t.Errorf("trusted=%v: mallory's session: %+v", trusted, e)
		}
		if toBob, toMal := s.aliceSays("after mallory's AKE"); !toBob || toMal {
			t.Errorf("trusted=%v: after mallory's AKE, message went to bob=%v mallory=%v", trusted, toBob, toMal)
		}

		s.lMal.send(s.mal, "it is me, bob")
		got := s.alice.lastText(t)
		if got.Instance != steerMalTag || got.Current || got.Trusted || got.Fingerprint != testKey(t, 2).Fingerprint() {
			t.Errorf("trusted=%v: text from mallory: %+v", trusted, got)
		}
		if toBob, toMal := s.aliceSays("after mallory spoke"); !toBob || toMal {
			t.Errorf("trusted=%v: after mallory spoke, message went to bob=%v mallory=%v", trusted, toBob, toMal)
		}
		s.lBob.send(s.bob, "bob here")
		if got := s.alice.lastText(t); got.Instance != steerBobTag || !got.Current || got.Trusted != trusted {
			t.Errorf("trusted=%v: text from bob: %+v", trusted, got)
		}

		st := s.alice.conv.Status()
		if st.Instance != steerBobTag || st.Trusted != trusted || len(st.Instances) != 2 {
			t.Fatalf("status: %+v", st)
		}
		for _, in := range st.Instances {
			if in.Current != (in.Instance == steerBobTag) || !in.HasFingerprint || in.State != StateEncrypted {
				t.Errorf("instance %+v", in)
			}
		}

		// SMP goes to the current session; a request from the other one
		// names its instance and key.
		res, err := s.alice.conv.StartSMP(s.lBob.now, "", false, "secret")
		if err != nil || len(res.Send) != 1 || res.Send[0].Instance != steerBobTag {
			t.Fatalf("SMP: %v %+v", err, res.Send)
		}
		res, err = s.mal.conv.StartSMP(s.lMal.now, "", false, "guess")
		if err != nil {
			t.Fatal(err)
		}
		n = len(s.alice.events)
		s.lMal.deliver(s.mal, res)
		for _, e := range s.alice.events[n:] {
			if e.Kind == EventSMPRequest && (e.Instance != steerMalTag || e.Fingerprint != testKey(t, 2).Fingerprint()) {
				t.Errorf("SMP request from mallory: %+v", e)
			}
		}
		if _, err := s.alice.conv.RespondSMP(s.lBob.now, "guess"); !errors.Is(err, ErrNoSMPRequest) {
			t.Errorf("RespondSMP answered mallory's request from bob's session: %v", err)
		}

		// The user's explicit choice moves the messages.
		if err := s.alice.conv.SetCurrentInstance(0x4242); !errors.Is(err, ErrUnknownInstance) {
			t.Errorf("unknown instance: %v", err)
		}
		if err := s.alice.conv.SetCurrentInstance(steerMalTag); err != nil {
			t.Fatal(err)
		}
		if toBob, toMal := s.aliceSays("chosen"); toBob || !toMal {
			t.Errorf("after SetCurrentInstance: bob=%v mallory=%v", toBob, toMal)
		}
	}
}

// TestInstanceSameKeyOrTrustedFollows: another instance with the key the
// user is talking to, or with a trusted key, may take over on its own.
func TestInstanceSameKeyOrTrustedFollows(t *testing.T) {
	s := newSteering(t, false)
	// bob's second device, same key.
	dev := newParty(t, "bob's laptop", 1, 0x1003, "alice", Options{Policy: PolicyManual})
	l := newLink(t, s.alice, dev)
	n := len(s.alice.events)
	l.start(dev)
	if e := s.goneSecure(n); !e.Current || e.Instance != 0x1003 {
		t.Errorf("same key, other instance: %+v", e)
	}
	// A trusted key takes over from an untrusted one.
	s.trust.trusted[testKey(t, 2).Fingerprint()] = true
	n = len(s.alice.events)
	s.lMal.start(s.mal)
	if e := s.goneSecure(n); !e.Current || e.Instance != steerMalTag {
		t.Errorf("trusted key: %+v", e)
	}
}

// TestKeyChangeOnCurrentInstance: instance tags are not authenticated, so
// a peer re-keying the current instance with a different key that is not
// trusted does not get the user's messages until the user confirms it.
func TestKeyChangeOnCurrentInstance(t *testing.T) {
	s := newSteering(t, true)
	impostor := newParty(t, "impostor", 2, steerBobTag, "alice", Options{Policy: PolicyManual})
	l := newLink(t, s.alice, impostor)
	n := len(s.alice.events)
	l.start(impostor)
	if e := s.goneSecure(n); e.Instance != steerBobTag || !e.Current || e.Trusted {
		t.Fatalf("re-key of bob's instance: %+v", e)
	}
	st := s.alice.conv.Status()
	if !st.KeyNotConfirmed || st.Fingerprint != testKey(t, 2).Fingerprint() {
		t.Fatalf("status after the key change: %+v", st)
	}
	if res, err := s.alice.conv.Send(l.now, "for bob only"); !errors.Is(err, ErrKeyNotConfirmed) || len(res.Send) != 0 {
		t.Fatalf("Send after the key change: %v %+v", err, res.Send)
	}
	if _, err := s.alice.conv.StartSMP(l.now, "", false, "verify the new key"); err != nil {
		t.Errorf("SMP to verify the new key: %v", err)
	}
	if err := s.alice.conv.SetCurrentInstance(steerBobTag); err != nil {
		t.Fatal(err)
	}
	res, err := s.alice.conv.Send(l.now, "confirmed")
	if err != nil {
		t.Fatal(err)
	}
	l.deliver(s.alice, res)
	if impostor.lastText(t).Text != "confirmed" {
		t.Error("message after confirming not delivered")
	}
}

// TestEndForgetsTheBinding: once the user ends the conversation, the next
// session is a new start, whatever its key (held messages still obey the
// known-key rule).
func TestEndForgetsTheBinding(t *testing.T) {
	s := newSteering(t, false)
	s.lBob.deliver(s.alice, s.alice.conv.End(s.lBob.now))
	n := len(s.alice.events)
	s.lMal.start(s.mal)
	if e := s.goneSecure(n); !e.Current {
		t.Errorf("after End: %+v", e)
	}
	if _, toMal := s.aliceSays("new conversation"); !toMal {
		t.Error("message after End did not reach the new session")
	}
}
