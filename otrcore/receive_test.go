package otrcore

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPolicyNeverShowsNoOTR: with policy never, OTR protocol lines are
// reported, never shown as text: a query as EventQueryReceived, an error
// as EventPeerError, AKE and data messages (and only the first fragment
// of one) as EventPolicyIgnored, unreadable ones as EventMalformed.
func TestPolicyNeverShowsNoOTR(t *testing.T) {
	s := classifySamples(t)
	now := time.Unix(2e9, 0)
	a := newParty(t, "alice", 0, 0xfedc0100, "bob", Options{Policy: PolicyNever})
	for _, c := range []struct {
		line string
		want EventKind // 0: no event
	}{
		{"?OTRv23? bob has requested an Off-the-Record private conversation", EventQueryReceived},
		{"?OTR Error: You sent encrypted data I cannot read", EventPeerError},
		{s["commit"], EventPolicyIgnored},
		{s["data"], EventPolicyIgnored},
		{s["frag1"], EventPolicyIgnored},
		{s["frag2"], 0},
		{"?OTR\x1fv23?", EventMalformed},
		{"?OTR:!!!!.", EventMalformed},
	} {
		res, err := a.conv.Receive(now, c.line)
		if err != nil {
			t.Fatal(err)
		}
		if res.HasText || len(res.Send) != 0 {
			t.Errorf("%.40q: shown or answered: %+v", c.line, res)
		}
		if c.want == 0 && len(res.Events) != 0 || c.want != 0 && (len(res.Events) != 1 || res.Events[0].Kind != c.want) {
			t.Errorf("%.40q: events %v, want %v", c.line, res.Events, c.want)
		}
	}
	// Plain text passes; a whitespace tag is removed, nothing is started.
	res, _ := a.conv.Receive(now, "hi"+wsTagBase+wsTagV3)
	if !res.HasText || res.Text != "hi" || len(res.Send) != 0 || len(res.Events) != 0 {
		t.Errorf("tagged plaintext under never: %+v", res)
	}
}

// TestPolicyNeverKeepsRunningSessionDecrypting: switching the policy to
// never during a session keeps decrypting what the peer sends in it,
// whole or fragmented, as sending keeps encrypting.
func TestPolicyNeverKeepsRunningSessionDecrypting(t *testing.T) {
	l, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual, MaxMessageSize: 120})
	a.conv.SetPolicy(PolicyNever)
	for _, text := range []string{"short", strings.Repeat("long and fragmented ", 20)} {
		l.send(b, text)
		if got := a.lastText(t); got.Text != text || !got.Encrypted {
			t.Fatalf("after policy never: got %+v, want %q encrypted", got, text)
		}
	}
	if a.hasEvent(EventPolicyIgnored) || a.hasEvent(EventNotInPrivate) {
		t.Fatalf("events %v", a.events)
	}
	// No new AKE runs under never, not even to refresh the session.
	res, err := b.conv.Start(l.now)
	if err != nil {
		t.Fatal(err)
	}
	l.deliver(b, res)
	if !a.hasEvent(EventQueryReceived) || a.conv.Status().SSID != b.conv.Status().SSID {
		t.Fatalf("refresh under never: events %v", a.events)
	}
}

// TestMalformedOTRLinesNotShown: lines starting like OTR that are no valid
// OTR message are reported as malformed and never shown, whatever the
// policy and state.
func TestMalformedOTRLinesNotShown(t *testing.T) {
	lines := []string{"?OTR\x1fv23?", "?OTRv2\x013?", "?OTR is not a message", "?OTR:\x01AAAA.", "?OTR|zz|yy,1,2,x,",
		"?OTR,2,1,x,", "?OTR:AAE=."}
	_, a, _ := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	convs := []*Conversation{a.conv}
	for _, p := range []Policy{PolicyNever, PolicyManual, PolicyOpportunistic, PolicyAlways} {
		convs = append(convs, newParty(t, "alice", 0, 0x100, "bob", Options{Policy: p}).conv)
	}
	for i, c := range convs {
		for _, line := range lines {
			res, _ := c.Receive(time.Unix(2e9, 0), line)
			if res.HasText || !hasKind(res.Events, EventMalformed) {
				t.Errorf("conversation %d, %q: %+v", i, line, res)
			}
		}
	}
}

// TestTooLargeReported: a fragmented message growing past the reassembly
// limit is reported as too large, with its size, not as malformed.
func TestTooLargeReported(t *testing.T) {
	_, a, b := securePair(t, Options{Policy: PolicyManual}, Options{Policy: PolicyManual})
	now := time.Unix(2e9, 0)
	piece := strings.Repeat("A", 1000)
	n := maxReassembled/len(piece) + 5
	var events []Event
	for k := 1; k <= n; k++ {
		line := fmt.Sprintf("?OTR|%08x|%08x,%d,%d,%s,", b.acct.InstanceTag, a.acct.InstanceTag, k, n, piece)
		res, _ := a.conv.Receive(now, line)
		events = append(events, res.Events...)
	}
	if len(events) != 1 || events[0].Kind != EventTooLarge || events[0].Size <= maxReassembled || events[0].Instance != b.acct.InstanceTag {
		t.Fatalf("events %+v", events)
	}
	checkErrPrefix(t, "too large", events[0].Err)
}

// TestPlaintextWhileRequiredFlagged: plaintext arriving with no session
// while the policy requires encryption is shown with a warning event
// (spec "Receiving plaintext"), tagged or not; not under other policies.
func TestPlaintextWhileRequiredFlagged(t *testing.T) {
	now := time.Unix(2e9, 0)
	for _, line := range []string{"in clear", "in clear" + wsTagBase + wsTagV3} {
		a := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyAlways})
		res, _ := a.conv.Receive(now, line)
		if !res.HasText || res.Text != "in clear" || res.Encrypted || !hasKind(res.Events, EventPlaintextWhileRequired) {
			t.Errorf("%q under always: %+v", line, res)
		}
		m := newParty(t, "alice", 0, 0x100, "bob", Options{Policy: PolicyOpportunistic})
		if res, _ := m.conv.Receive(now, line); !res.HasText || hasKind(res.Events, EventPlaintextWhileRequired) {
			t.Errorf("%q under opportunistic: %+v", line, res)
		}
	}
}
