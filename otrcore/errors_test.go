package otrcore

import (
	"crypto/dsa"
	"math/big"
	"strings"
	"testing"
	"time"
)

// checkErrPrefix requires err to name the package exactly once, at the
// start: "otrcore: what went wrong: detail", never
// "otrcore: context: otrcore: …".
func checkErrPrefix(tb testing.TB, what string, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	s := err.Error()
	if !strings.HasPrefix(s, "otrcore: ") || strings.Count(s, "otrcore:") != 1 {
		tb.Errorf("%s: %q: want the otrcore: prefix exactly once, at the start", what, s)
	}
}

// TestErrorPrefixOnce walks many failure paths, returned errors and
// event errors alike, and checks each error chain's text.
func TestErrorPrefixOnce(t *testing.T) {
	type failure struct {
		what string
		err  error
	}
	var got []failure
	returned := func(what string, err error) {
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		got = append(got, failure{what, err})
	}
	events := func(what string, res Result, want EventKind) {
		found := false
		for _, e := range res.Events {
			if e.Err != nil {
				got = append(got, failure{what + " (" + e.Kind.String() + ")", e.Err})
			}
			found = found || e.Kind == want
		}
		if !found {
			t.Errorf("%s: no %v event in %v", what, want, res.Events)
		}
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

	// Package functions.
	_, err := ParsePolicy("sometimes")
	returned("ParsePolicy", err)
	_, err = NewPrivateKey(&dsa.PrivateKey{})
	returned("NewPrivateKey", err)

	// Refusals of the caller's requests.
	never := newParty(t, "never", 0, 0x100, "bob", Options{Policy: PolicyNever})
	_, err = never.conv.Start(now)
	returned("Start under policy never", err)
	always := newParty(t, "always", 0, 0x100, "bob", Options{Policy: PolicyAlways})
	for i := 0; i <= maxHeld && err == nil; i++ {
		_, err = always.conv.Send(now, "queued")
	}
	returned("Send with a full queue", err)
	_, err = always.conv.Send(now, strings.Repeat("x", maxMessageText+1))
	returned("Send too long", err)
	_, err = always.conv.StartSMP(now, "", false, "s")
	returned("StartSMP without a session", err)

	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	_, err = a.conv.RespondSMP(now, "s")
	returned("RespondSMP without a request", err)
	_, err = a.conv.StartSMP(now, strings.Repeat("q", maxSMPQuestion+1), true, "s")
	returned("StartSMP with a long question", err)
	_, _, err = a.conv.SendExtraKey(now, 1, make([]byte, maxTLVValue))
	returned("SendExtraKey with long data", err)
	bad := a.conv
	bad.SetMaxMessageSize(10)
	_, err = bad.Send(now, "does not fit any fragment")
	returned("Send with a tiny fragment size", err)
	bad.SetMaxMessageSize(0)

	// What the peer caused.
	for _, line := range []string{
		"?OTR:.",
		"?OTR:!!!!.",
		"?OTR:AAE=.",
		"?OTR|zz|yy,1,2,x,",
		encodeEnvelope([]byte{0, 3, 0xff, 0xfe, 0xdc, 0x01, 0x00, 0x12, 0x34, 0xab, 0xcd}),
		encodeEnvelope([]byte{0, 3, msgDHCommit, 0xfe, 0xdc, 0x01, 0x00, 0x12, 0x34, 0xab, 0xcd, 0, 0}),
	} {
		res, _ := a.conv.Receive(now, line)
		events("Receive "+line, res, EventMalformed)
	}
	res, _ := b.conv.Send(now, "tamper with me")
	p, _, _ := findEnvelope(res.Send[0].Lines[0])
	p[len(p)-30] ^= 1
	r, _ := a.conv.Receive(now, encodeEnvelope(p))
	events("tampered data message", r, EventUnreadable)

	// A malformed SMP message and a truncated TLV, correctly encrypted.
	bin, _ := b.conv.sendTarget()
	var smp Result
	if err := b.conv.sendData(&smp, bin, now, "", []tlv{{typ: tlvSMP1, value: []byte{0, 0, 0, 9}}}, 0); err != nil {
		t.Fatal(err)
	}
	r, _ = a.conv.Receive(now, smp.Send[0].Lines[0])
	events("malformed SMP message", r, EventSMPCheated)
	msg, err := bin.keys.sealData(b.conv.header(bin, bin.version, msgData), 0, "text", []byte("\x00\x00\x01"))
	if err != nil {
		t.Fatal(err)
	}
	r, _ = a.conv.Receive(now, msg)
	events("truncated TLV", r, EventProtocolError)
	_ = l

	// An out-of-range g^y answering our commit.
	c := newParty(t, "carol", 0, 0x100, "dave", Options{Policy: PolicyManual})
	r, _ = c.conv.Receive(now, "?OTRv3?")
	if len(r.Send) != 1 {
		t.Fatalf("no commit: %+v", r)
	}
	dh := dhKeyMsg{msgHeader: msgHeader{version: protocolV3, msgType: msgDHKey, senderTag: 0x200, receiverTag: 0x100}, gy: big.NewInt(1)}
	r, _ = c.conv.Receive(now, encodeEnvelope(dh.marshal()))
	events("D-H Key with g^y = 1", r, EventProtocolError)

	// A held message blocked for a key never seen.
	trust := &memTrust{known: map[string][][20]byte{"bob": {testKey(t, 2).Fingerprint()}}}
	d := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyAlways})
	d.acct.Trust = trust
	m := newParty(t, "mallory", 1, 0x200, "alice", Options{Policy: PolicyManual})
	newLink(t, d, m).send(d, "for bob only")
	for _, e := range d.events {
		if e.Kind == EventHeldBlocked {
			got = append(got, failure{"held blocked", e.Err})
		}
	}

	if len(got) < 20 {
		t.Errorf("only %d failures collected", len(got))
	}
	for _, f := range got {
		checkErrPrefix(t, f.what, f.err)
	}
}
