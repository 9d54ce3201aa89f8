package otrcore

import (
	"testing"
	"time"

	"golang.org/x/crypto/otr"
)

// smpLink sets up an encrypted v3 session with libotr for SMP tests.
func smpLink(t *testing.T) *llink {
	t.Helper()
	l := newLLink(t, Options{Policy: PolicyManual}, 0x06, 0)
	l.run(mustStart(l.us.conv, l.now).Send, nil)
	l.checkSecure(3)
	return l
}

func (l *llink) loSMP(event string) bool {
	for _, e := range l.loEvts {
		if e.Name == "handle_smp_event" && e.Args["event"] == event {
			return true
		}
	}
	return false
}

func (p *party) smpResult() (Event, bool) {
	for i := len(p.events) - 1; i >= 0; i-- {
		switch p.events[i].Kind {
		case EventSMPSucceeded, EventSMPFailed, EventSMPAborted, EventSMPCheated:
			return p.events[i], true
		}
	}
	return Event{}, false
}

func TestSMPInteropLibotr(t *testing.T) {
	for _, tc := range []struct {
		name        string
		weStart     bool
		question    string
		ourSecret   string
		theirSecret string
	}{
		{"we-start-match", true, "", "shared secret", "shared secret"},
		{"we-start-question-match", true, "Where did we meet?", "the pub", "the pub"},
		{"libotr-starts-match", false, "", "shared secret", "shared secret"},
		{"libotr-starts-question-match", false, "Favourite colour?", "blue", "blue"},
		{"we-start-mismatch", true, "", "one", "two"},
		{"libotr-starts-mismatch", false, "Q?", "one", "two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := smpLink(t)
			match := tc.ourSecret == tc.theirSecret
			if tc.weStart {
				res, err := l.us.conv.StartSMP(l.now, tc.question, tc.question != "", tc.ourSecret)
				if err != nil {
					t.Fatal(err)
				}
				l.run(res.Send, nil)
				want := "OTRL_SMPEVENT_ASK_FOR_SECRET"
				if tc.question != "" {
					want = "OTRL_SMPEVENT_ASK_FOR_ANSWER"
				}
				if !l.loSMP(want) {
					t.Fatalf("libotr did not ask for the secret: %v", l.loEvts)
				}
				l.loDo(l.lo.SMPRespond(l.ctx, usName, tc.theirSecret))
			} else {
				if tc.question != "" {
					l.loDo(l.lo.SMPStartQuestion(l.ctx, usName, tc.question, tc.theirSecret))
				} else {
					l.loDo(l.lo.SMPStart(l.ctx, usName, tc.theirSecret))
				}
				var req *Event
				for i := range l.us.events {
					if l.us.events[i].Kind == EventSMPRequest {
						req = &l.us.events[i]
					}
				}
				if req == nil || req.HasQuestion != (tc.question != "") || req.Question != tc.question {
					t.Fatalf("SMP request event %+v", req)
				}
				if st := l.us.conv.Status(); !st.SMPAwaitingSecret || st.SMPQuestion != tc.question {
					t.Fatalf("status %+v", st)
				}
				res, err := l.us.conv.RespondSMP(l.now, tc.ourSecret)
				if err != nil {
					t.Fatal(err)
				}
				l.run(res.Send, nil)
			}
			ev, ok := l.us.smpResult()
			if !ok {
				t.Fatalf("no SMP result on our side: %v", l.us.events)
			}
			if match {
				if ev.Kind != EventSMPSucceeded || !l.loSMP("OTRL_SMPEVENT_SUCCESS") {
					t.Fatalf("want success on both sides: ours %v, libotr %v", ev.Kind, l.loEvts)
				}
				// The asker verifies; the responder to a question does not.
				wantVerified := tc.weStart || tc.question == ""
				if ev.Verified != wantVerified {
					t.Fatalf("Verified = %v, want %v", ev.Verified, wantVerified)
				}
			} else if ev.Kind != EventSMPFailed || !l.loSMP("OTRL_SMPEVENT_FAILURE") {
				t.Fatalf("want failure on both sides: ours %v, libotr %v", ev.Kind, l.loEvts)
			}
			// The session still works after SMP.
			l.converse(2, 40)
		})
	}
}

func TestSMPInteropLibotrAbort(t *testing.T) {
	t.Run("we-abort", func(t *testing.T) {
		t.Parallel()
		l := smpLink(t)
		res, err := l.us.conv.StartSMP(l.now, "", false, "s")
		if err != nil {
			t.Fatal(err)
		}
		l.run(res.Send, nil)
		res, err = l.us.conv.AbortSMP(l.now)
		if err != nil {
			t.Fatal(err)
		}
		l.run(res.Send, nil)
		if !l.loSMP("OTRL_SMPEVENT_ABORT") {
			t.Fatalf("libotr did not see the abort: %v", l.loEvts)
		}
		// A fresh run succeeds afterwards.
		l.loDo(l.lo.SMPStart(l.ctx, usName, "again"))
		res, err = l.us.conv.RespondSMP(l.now, "again")
		if err != nil {
			t.Fatal(err)
		}
		l.run(res.Send, nil)
		if ev, _ := l.us.smpResult(); ev.Kind != EventSMPSucceeded {
			t.Fatalf("after abort: %v", ev.Kind)
		}
	})
	t.Run("libotr-aborts", func(t *testing.T) {
		t.Parallel()
		l := smpLink(t)
		res, err := l.us.conv.StartSMP(l.now, "q", true, "s")
		if err != nil {
			t.Fatal(err)
		}
		l.run(res.Send, nil)
		l.loDo(l.lo.SMPAbort(l.ctx, usName))
		if ev, ok := l.us.smpResult(); !ok || ev.Kind != EventSMPAborted {
			t.Fatalf("our result after libotr abort: %v", l.us.events)
		}
		if l.us.conv.Status().SMPInProgress {
			t.Fatal("SMP still in progress after abort")
		}
	})
}

func TestSMPInteropXCryptoOTR(t *testing.T) {
	for _, tc := range []struct {
		name      string
		weStart   bool
		ours      string
		theirs    string
		question  string
		wantMatch bool
	}{
		{"they-start-match", false, "pw", "pw", "question?", true},
		{"they-start-mismatch", false, "pw", "nope", "", false},
		{"we-start-match", true, "pw", "pw", "", true},
		{"we-start-mismatch", true, "pw", "other", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			us := newParty(t, "us", 0, 0x101, "x", Options{Policy: PolicyManual})
			x := newXPeer(t, 2, 0)
			l := &xlink{t: t, now: time.Unix(1e9, 0), us: us, x: x}
			l.run(mustStart(us.conv, l.now).Send, nil)
			if !x.conv.IsEncrypted() {
				t.Fatal("no session")
			}
			if tc.weStart {
				res, err := us.conv.StartSMP(l.now, "", false, tc.ours)
				if err != nil {
					t.Fatal(err)
				}
				l.run(res.Send, nil)
				if !x.has(otr.SMPSecretNeeded) {
					t.Fatalf("x/crypto/otr was not asked: %v", x.changes)
				}
				toSend, err := x.conv.Authenticate("", []byte(tc.theirs))
				if err != nil {
					t.Fatal(err)
				}
				l.run(nil, toSend)
			} else {
				toSend, err := x.conv.Authenticate(tc.question, []byte(tc.theirs))
				if err != nil {
					t.Fatal(err)
				}
				l.run(nil, toSend)
				if st := us.conv.Status(); !st.SMPAwaitingSecret || st.SMPQuestion != tc.question {
					t.Fatalf("status %+v", st)
				}
				res, err := us.conv.RespondSMP(l.now, tc.ours)
				if err != nil {
					t.Fatal(err)
				}
				l.run(res.Send, nil)
			}
			ev, ok := us.smpResult()
			if !ok {
				t.Fatalf("no result: %v", us.events)
			}
			if tc.wantMatch {
				if ev.Kind != EventSMPSucceeded || !x.has(otr.SMPComplete) {
					t.Fatalf("ours %v, x/crypto/otr %v", ev.Kind, x.changes)
				}
			} else if ev.Kind != EventSMPFailed || !x.has(otr.SMPFailed) {
				t.Fatalf("ours %v, x/crypto/otr %v", ev.Kind, x.changes)
			}
		})
	}
}
