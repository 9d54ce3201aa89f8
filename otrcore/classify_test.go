package otrcore

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// classifySamples returns real protocol lines: a query, the four AKE
// messages, data messages whole and fragmented (v3 and v2).
func classifySamples(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	w := newASTWorld(t, protocolV3)
	a := w.run(4)
	out["commit"], out["dhkey"], out["revealsig"], out["sig"] = a.commit, a.dhKey, a.revealSig, a.sig
	_, al, _ := securePair(t, Options{Policy: PolicyManual, MaxMessageSize: 100}, Options{Policy: PolicyManual})
	res, err := al.conv.Send(time.Unix(2e9, 0), "fragment me")
	if err != nil || len(res.Send[0].Lines) < 3 {
		t.Fatalf("send: %v %d", err, len(res.Send))
	}
	out["frag1"], out["frag2"] = res.Send[0].Lines[0], res.Send[0].Lines[1]
	al.conv.SetMaxMessageSize(0)
	res, _ = al.conv.Send(time.Unix(2e9, 0), "whole")
	out["data"] = res.Send[0].Lines[0]
	return out
}

func TestClassify(t *testing.T) {
	s := classifySamples(t)
	cases := []struct {
		line string
		want LineInfo
	}{
		{"hello", LineInfo{Kind: LinePlain}},
		{"", LineInfo{Kind: LinePlain}},
		{"hi" + wsTagBase + wsTagV3, LineInfo{Kind: LinePlain, Tagged: true, offers: versionSetV3}},
		{"what is ?OTR anyway", LineInfo{Kind: LinePlain}},
		{"an error: ?OTR Error: not at the start", LineInfo{Kind: LinePlain}},
		{"?OTRv23?", LineInfo{Kind: LineQuery, offers: versionSetV2 | versionSetV3}},
		{"bob: ?OTRv2? please", LineInfo{Kind: LineQuery, offers: versionSetV2}},
		{"?OTR?", LineInfo{Kind: LineQuery}},
		{"?OTR Error: oops", LineInfo{Kind: LineError}},
		{s["commit"], LineInfo{Kind: LineAKE, Message: MessageDHCommit, Version: 3, SenderTag: astTagI}},
		{s["dhkey"], LineInfo{Kind: LineAKE, Message: MessageDHKey, Version: 3, SenderTag: astTagR, ReceiverTag: astTagI}},
		{s["revealsig"], LineInfo{Kind: LineAKE, Message: MessageRevealSig, Version: 3, SenderTag: astTagI, ReceiverTag: astTagR}},
		{s["sig"], LineInfo{Kind: LineAKE, Message: MessageSignature, Version: 3, SenderTag: astTagR, ReceiverTag: astTagI}},
		{s["data"], LineInfo{Kind: LineData, Message: MessageData, Version: 3, SenderTag: 0x1234abcd, ReceiverTag: 0xfedc0100}},
		{"prefix " + s["data"], LineInfo{Kind: LineData, Message: MessageData, Version: 3, SenderTag: 0x1234abcd, ReceiverTag: 0xfedc0100}},
		{s["frag1"], LineInfo{Kind: LineFragment, Message: MessageData, Version: 3, SenderTag: 0x1234abcd, ReceiverTag: 0xfedc0100, Piece: 1, Pieces: Classify(s["frag1"]).Pieces}},
		{s["frag2"], LineInfo{Kind: LineFragment, Version: 3, SenderTag: 0x1234abcd, ReceiverTag: 0xfedc0100, Piece: 2, Pieces: Classify(s["frag1"]).Pieces}},
		{"?OTR,1,2,?OTR:AAIK,", LineInfo{Kind: LineFragment, Message: MessageDHKey, Version: 2, Piece: 1, Pieces: 2}},
		{"?OTR,1,2,?OTR:AA,", LineInfo{Kind: LineFragment, Version: 2, Piece: 1, Pieces: 2}},
	}
	for _, c := range cases {
		if got := Classify(c.line); got != c.want {
			t.Errorf("Classify(%.50q) = %+v\nwant %+v", c.line, got, c.want)
		}
	}
	if got := Classify("?OTRv3?"); !got.Offers(3) || got.Offers(2) || got.Offers(1) {
		t.Errorf("Offers: %+v", got)
	}

	for _, line := range []string{
		"?OTR\x1fv23?",        // control character where the version list starts
		"?OTRv2\x013?",        // control character in the version list
		"hi ?OTRv\x00",        // same, not at the start
		"?OTR is great",       // starts with ?OTR, no OTR form
		"?OTR",                // bare marker
		"?OTR:\x01AAAA.",      // control character in the base64
		"?OTR:.",              // empty
		"?OTR:AAE=.",          // version 1
		"?OTR:AAQC.",          // version 4
		"?OTR|zz|yy,1,2,x,",   // bad tags
		"?OTR,2,1,x,",         // k > n
		"?OTR,1,2,,",          // empty piece
		"?OTR|100|0,0,1,x,",   // k = 0
		"?OTR,1,70000,x,",     // n too large
		"?OTR,1,1,x,trailing", // data after the final comma
		encodeEnvelope([]byte{0, 3, 0x44, 1, 0, 0, 0, 0, 0, 0, 0}),        // unknown type
		encodeEnvelope([]byte{0, 3, msgDHKey, 1, 0, 0, 0, 0, 0, 0, 0, 0}), // truncated body
	} {
		got := Classify(line)
		if got.Kind != LineMalformed || got.Err == nil {
			t.Errorf("Classify(%q) = %+v, want malformed", line, got)
		}
	}
	big := "?OTR:" + strings.Repeat("AAAA", maxEncodedMessage/4+1) + "."
	if got := Classify(big); got.Kind != LineMalformed || !errors.Is(got.Err, ErrTooLarge) || got.Size <= maxEncodedMessage {
		t.Errorf("over-long encoded message: %v, size %d", got.Err, got.Size)
	}
}

// TestReceiveMatchesClassify: for every kind, Receive acts as Classify
// says, under each policy, with and without a session.
func TestReceiveMatchesClassify(t *testing.T) {
	s := classifySamples(t)
	lines := []string{"hello", "hi" + wsTagBase + wsTagV3 + wsTagV2, "?OTRv23?", "?OTR Error: oops", "?OTR\x1fv23?",
		"?OTR is great", "?OTR|zz|yy,1,2,x,", "what is ?OTR anyway"}
	for _, l := range s {
		lines = append(lines, l)
	}
	for _, line := range lines {
		checkReceiveMatchesClassify(t, line)
	}
}

// checkReceiveMatchesClassify feeds line to fresh conversations under each
// preset policy, and to alice in an established session (then under
// policy never), and checks Receive against Classify.
func checkReceiveMatchesClassify(t *testing.T, line string) {
	t.Helper()
	info := Classify(line)
	convs := map[string]*Conversation{}
	for _, p := range []Policy{PolicyNever, PolicyManual, PolicyOpportunistic, PolicyAlways} {
		convs["fresh "+p.String()] = NewConversation(&Account{Key: astKey(t, 0), InstanceTag: fzTagA, Rand: fzRand(3)}, "bob", Options{Policy: p})
	}
	alice, _ := fzPair(t)
	convs["session"] = alice
	alice2, _ := fzPair(t)
	alice2.SetPolicy(PolicyNever)
	convs["session, policy never"] = alice2
	for name, c := range convs {
		res, err := c.Receive(fzNow, line)
		if err != nil {
			t.Fatalf("%s: Receive(%.40q): %v", name, line, err)
		}
		malformed := hasKind(res.Events, EventMalformed) || hasKind(res.Events, EventTooLarge)
		switch info.Kind {
		case LinePlain:
			_, want, _ := findWhitespaceTag(line)
			if !res.HasText || res.Encrypted || res.Text != want || malformed {
				t.Errorf("%s: plain %.40q: %+v", name, line, res)
			}
			continue
		case LineMalformed:
			if !malformed {
				t.Errorf("%s: malformed %.40q not reported: %v", name, line, res.Events)
			}
		case LineQuery:
			if c.Policy().versions() == 0 && !hasKind(res.Events, EventQueryReceived) {
				t.Errorf("%s: query under policy never not reported: %v", name, res.Events)
			}
		case LineError:
			if !hasKind(res.Events, EventPeerError) {
				t.Errorf("%s: error message not reported: %v", name, res.Events)
			}
		case LineData, LineAKE:
			if malformed {
				t.Errorf("%s: well-formed %v message reported malformed: %v", name, info.Message, res.Events)
			}
		}
		if res.HasText {
			t.Errorf("%s: %v line %.40q shown as text %q", name, info.Kind, line, res.Text)
		}
	}
}

// FuzzClassify checks the differential property on any line: Receive
// shows text exactly for the lines Classify calls plain, and reports the
// lines it calls malformed.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"hello", "?OTRv23?", "?OTR Error: x", "?OTR\x1fv23?", "?OTR:AAMC.", "?OTR,1,2,?OTR:AAIK,",
		"?OTR|100|0,1,1,x,", "?OTR is", "x ?OTR:AAMD", "hi" + wsTagBase + wsTagV3} {
		f.Add(s)
	}
	for _, s := range specFragments {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if len(line) > 4096 {
			return
		}
		checkReceiveMatchesClassify(t, line)
	})
}
