package otrcore

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseQuery(t *testing.T) {
	v23 := versionSetV2 | versionSetV3
	cases := []struct {
		in   string
		want versionSet
		ok   bool
	}{
		{"?OTRv23?", v23, true},
		{"?OTRv32?", v23, true},
		{"?OTRv2?", versionSetV2, true},
		{"?OTRv3?", versionSetV3, true},
		{"?OTR?v2?", versionSetV2, true},
		{"?OTR?v23?", v23, true},
		{"?OTR?", 0, true},   // v1 only: recognised, never usable
		{"?OTR?v?", 0, true}, // also v1 only
		{"?OTR?v", 0, true},  // libotr's tests count this as a query
		{"?OTRv?", 0, true},  // no version at all
		{"?OTRv4?", 0, true}, // unknown versions are ignored
		{"?OTRv24x?", versionSetV2, true},
		{"?OTR?v24x?", versionSetV2, true},
		{"?OTRv23?\n<b>alice</b> has requested an Off-the-Record private conversation.", v23, true},
		{"alice: ?OTRv23? please", v23, true},
		{"?OTRv2? and a later 3?", versionSetV2, true},  // only up to the closing '?'
		{"?OTRv2", versionSetV2, true},                  // unterminated, as libotr accepts
		{"?OTRv2 is old, 3 is new", versionSetV2, true}, // run ends at whitespace
		{"?OTR Error: ?OTRv3?", versionSetV3, true},     // first "?OTR" is not a query; the second is
		{"?OTR:AAMDxx.", 0, false},
		{"?OTR|1|2,1,1,x,", 0, false},
		{"?OTR", 0, false},
		{"?OTRx?", 0, false},
		{"hello", 0, false},
		{"", 0, false},
	}
	for _, c := range cases {
		got, ok, err := parseQuery(c.in)
		if got != c.want || ok != c.ok || err != nil {
			t.Errorf("parseQuery(%q) = %b, %v; want %b, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// TestParseQueryBroken: a control character in the version list makes a
// query broken (an unreadable OTR message), not a query nor plain text.
func TestParseQueryBroken(t *testing.T) {
	for _, in := range []string{"?OTRv2\x013?", "?OTRv\x1f?", "?OTR?v2\x7f?", "hi ?OTRv\x00"} {
		if _, ok, err := parseQuery(in); !ok || !errors.Is(err, errQuery) {
			t.Errorf("parseQuery(%q) = %v, %v; want a broken query", in, ok, err)
		}
	}
}

func TestVersionSet(t *testing.T) {
	s := versionSetV2 | versionSetV3
	if !s.has(2) || !s.has(3) || s.has(1) || s.has(4) || s.has(0) || s.best() != 3 {
		t.Errorf("v23 set: has2=%v has3=%v best=%d", s.has(2), s.has(3), s.best())
	}
	if versionSetV2.best() != 2 || versionSet(0).best() != 0 || versionSetV2.has(3) {
		t.Error("single-version sets")
	}
	if versionBit(3) != versionSetV3 || versionBit(1) != 0 {
		t.Error("versionBit")
	}
}

func TestQueryMessage(t *testing.T) {
	v23 := versionSetV2 | versionSetV3
	cases := []struct {
		v    versionSet
		text string
		want string
	}{
		{v23, "", "?OTRv23?"},
		{v23, "Off-the-Record requested", "?OTRv23? Off-the-Record requested"},
		{versionSetV2, "x", "?OTRv2? x"},
		{versionSetV3, "x", "?OTRv3? x"},
		{v23, "line one\r\nline two\nthree", "?OTRv23? line one  line two three"},
	}
	for _, c := range cases {
		got := queryMessage(c.v, c.text)
		if got != c.want {
			t.Errorf("queryMessage(%b, %q) = %q, want %q", c.v, c.text, got, c.want)
		}
		if v, ok, err := parseQuery(got); !ok || v != c.v || err != nil {
			t.Errorf("parseQuery(queryMessage) = %b, %v", v, ok)
		}
	}
}

func TestWhitespaceTagConstants(t *testing.T) {
	want := map[string][]byte{
		wsTagBase: {0x20, 0x09, 0x20, 0x20, 0x09, 0x09, 0x09, 0x09, 0x20, 0x09, 0x20, 0x09, 0x20, 0x09, 0x20, 0x20},
		wsTagV1:   {0x20, 0x09, 0x20, 0x09, 0x20, 0x20, 0x09, 0x20},
		wsTagV2:   {0x20, 0x20, 0x09, 0x09, 0x20, 0x20, 0x09, 0x20},
		wsTagV3:   {0x20, 0x20, 0x09, 0x09, 0x20, 0x20, 0x09, 0x09},
	}
	for s, b := range want {
		if s != string(b) {
			t.Errorf("tag constant %q, want %q", s, b)
		}
	}
	if whitespaceTag(versionSetV2|versionSetV3) != wsTagBase+wsTagV2+wsTagV3 ||
		whitespaceTag(versionSetV3) != wsTagBase+wsTagV3 || whitespaceTag(0) != "" {
		t.Error("whitespaceTag")
	}
}

func TestFindWhitespaceTag(t *testing.T) {
	v23 := versionSetV2 | versionSetV3
	tag := whitespaceTag(v23)
	cases := []struct {
		in, stripped string
		want         versionSet
		found        bool
	}{
		{"hello" + tag, "hello", v23, true},      // at the end, where libotr puts it
		{tag + "hello", "hello", v23, true},      // at the start
		{"hel" + tag + "lo", "hello", v23, true}, // in the middle
		{tag, "", v23, true},                     // alone
		{"hi" + wsTagBase + wsTagV1 + wsTagV2, "hi", versionSetV2, true},
		{"hi" + wsTagBase + wsTagV1, "hi", 0, true}, // v1 only: recognised, not usable
		{"hi" + wsTagBase + wsTagV3 + wsTagV2, "hi", v23, true},
		{"hi" + wsTagBase + "\t\t\t\t\t\t\t\t" + wsTagV3, "hi", versionSetV3, true}, // future marker
		{"hi" + wsTagBase + wsTagV2 + "        indented", "hi        indented", versionSetV2, true},
		{"hi" + wsTagBase + wsTagV2 + " \t x", "hi \t x", versionSetV2, true},
		{"hi" + wsTagBase + "  \t\t", "hi  \t\t", 0, true}, // base with a partial marker
		{"hi" + wsTagBase[:15], "hi" + wsTagBase[:15], 0, false},
		{"plain text", "plain text", 0, false},
		{"", "", 0, false},
	}
	for _, c := range cases {
		v, stripped, found := findWhitespaceTag(c.in)
		if v != c.want || stripped != c.stripped || found != c.found {
			t.Errorf("findWhitespaceTag(%q) = %b, %q, %v; want %b, %q, %v", c.in, v, stripped, found, c.want, c.stripped, c.found)
		}
	}
	// A tag survives the trailing-whitespace trimming of IRC servers only
	// when it is not last.
	if _, _, found := findWhitespaceTag(strings.TrimRight("hello"+tag, " \t")); found {
		t.Error("a trailing tag was found after trimming")
	}
	if _, s, found := findWhitespaceTag(strings.TrimRight(tag+"hello", " \t")); !found || s != "hello" {
		t.Error("leading tag did not survive trailing-space trimming")
	}
}

// TestHeldMessageAfterStartSendsNoSecondQuery: a message held right after
// Start (the peer has not answered the query yet, so no key exchange runs
// on our side) must not send a second query: the peer answers both, and
// on a paced IRC connection each answer costs seconds (issue 15).
func TestHeldMessageAfterStartSendsNoSecondQuery(t *testing.T) {
	a := newParty(t, "alice", 0, 0x101, "bob", Options{Policy: PolicyAlways})
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	res, err := a.conv.Start(now)
	if err != nil {
		t.Fatal(err)
	}
	queries := 0
	count := func(res Result) {
		for _, o := range res.Send {
			if o.Kind == OutQuery {
				queries++
			}
		}
	}
	count(res)
	for i := range 3 {
		res, err := a.conv.Send(now.Add(time.Duration(i)*time.Second), "held")
		if err != nil {
			t.Fatal(err)
		}
		count(res)
	}
	if queries != 1 {
		t.Fatalf("%d queries sent for Start and three held messages within 3 s, want 1", queries)
	}
	// After queryInterval with no answer, a held message asks again.
	res, err = a.conv.Send(now.Add(queryInterval+time.Second), "still held")
	if err != nil {
		t.Fatal(err)
	}
	count(res)
	if queries != 2 {
		t.Fatalf("%d queries after queryInterval without an answer, want 2", queries)
	}
}

// TestManualHoldsAfterStart: under policy manual, what the user types
// after asking for a private conversation is held until it starts (or the
// user ends it), not sent in clear while the key exchange is on its way.
func TestManualHoldsAfterStart(t *testing.T) {
	a := newParty(t, "alice", 0, 0x101, "bob", Options{Policy: PolicyManual})
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	if _, err := a.conv.Start(now); err != nil {
		t.Fatal(err)
	}
	res, err := a.conv.Send(now, "SECRET typed right after start")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range res.Send {
		if o.Kind == OutPlaintext {
			t.Fatalf("sent in clear after Start: %q", o.Lines)
		}
	}
	if st := a.conv.Status(); st.Held != 1 || !st.Asked {
		t.Fatalf("status %+v: want 1 held, asked", st)
	}
	a.conv.End(now)
	a.conv.DiscardHeld()
	res, err = a.conv.Send(now, "clear, after End")
	if err != nil || len(res.Send) != 1 || res.Send[0].Kind != OutPlaintext {
		t.Fatalf("after End: %+v %v; want one plaintext line", res.Send, err)
	}
}
