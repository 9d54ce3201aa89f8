package otrcore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for n := 0; n < 40; n++ {
		b := bytes.Repeat([]byte{byte(n), 0xff, 0}, n)[:n]
		s := encodeEnvelope(b)
		if !strings.HasPrefix(s, "?OTR:") || !strings.HasSuffix(s, ".") {
			t.Fatalf("encodeEnvelope(%x) = %q", b, s)
		}
		if n == 0 {
			if _, ok, err := findEnvelope(s); !ok || err == nil {
				t.Errorf("empty payload: ok=%v err=%v", ok, err)
			}
			continue
		}
		for _, text := range []string{s, "hello " + s, s + " trailing text", "x" + s + ".y", strings.TrimSuffix(s, "."), strings.TrimSuffix(s, ".") + "  "} {
			got, ok, err := findEnvelope(text)
			if !ok || err != nil || !bytes.Equal(got, b) {
				t.Errorf("findEnvelope(%q) = %x, %v, %v; want %x", text, got, ok, err, b)
			}
		}
	}
}

func TestFindEnvelopeRejects(t *testing.T) {
	cases := map[string]string{
		"libotr lenient literal": "?OTR:invalid_base64_thing.",
		"bad length":             "?OTR:AAMCA.",
		"missing padding":        "?OTR:AAA.",
		"embedded newline":       "?OTR:AAMA\nAAAAAQAAAAI=.",
		"embedded space":         "?OTR:AAMA AAAAAQAAAAI=.",
		"junk after data":        "?OTR:AAMAAAAAAQAAAAI= hello",
		"non-zero pad bits":      "?OTR:AAB=.",
		"padding in the middle":  "?OTR:AA==AAAA.",
		"empty":                  "?OTR:.",
		"empty at end":           "?OTR:",
	}
	for name, text := range cases {
		_, ok, err := findEnvelope(text)
		if !ok || !errors.Is(err, errEnvelope) {
			t.Errorf("%s: findEnvelope(%q): ok=%v err=%v", name, text, ok, err)
		}
	}
	for _, text := range []string{"", "hello", "?OTR?v2?", "?OTR Error: x", "?OTR|1|2,1,1,x,", "?OTR,1,1,x,"} {
		if p, ok, err := findEnvelope(text); ok || err != nil || p != nil {
			t.Errorf("findEnvelope(%q) = %x, %v, %v; want not found", text, p, ok, err)
		}
	}
}

func TestFindEnvelopeSizeCap(t *testing.T) {
	big := "?OTR:" + strings.Repeat("AAAA", maxEncodedMessage/4) + "."
	if p, ok, err := findEnvelope(big); !ok || err != nil || len(p) != maxEncodedMessage/4*3 {
		t.Errorf("payload at the cap: len %d ok=%v err=%v", len(p), ok, err)
	}
	over := "?OTR:" + strings.Repeat("AAAA", maxEncodedMessage/4+1) + "."
	if _, ok, err := findEnvelope(over); !ok || !errors.Is(err, errEnvelope) {
		t.Errorf("payload over the cap: ok=%v err=%v", ok, err)
	}
	noDot := strings.TrimSuffix(over, ".")
	if _, ok, err := findEnvelope(noDot); !ok || !errors.Is(err, errEnvelope) {
		t.Errorf("unterminated payload over the cap: ok=%v err=%v", ok, err)
	}
}

func TestErrorMessages(t *testing.T) {
	if got := encodeError("Message unreadable"); got != "?OTR Error: Message unreadable" {
		t.Errorf("encodeError = %q", got)
	}
	if got := encodeError("two\r\nlines"); strings.ContainsAny(got, "\r\n") {
		t.Errorf("encodeError kept a line break: %q", got)
	}
	cases := []struct {
		in   string
		msg  string
		want bool
	}{
		{"?OTR Error: You sent encrypted data I can't read", "You sent encrypted data I can't read", true},
		{"?OTR Error:no space", "no space", true},
		{"?OTR Error:", "", true},
		{encodeError("round trip"), "round trip", true},
		{"look: ?OTR Error: hidden", "", false},
		{" ?OTR Error: leading space", "", false},
		{"?OTR error: wrong case", "", false},
		{"?OTR:AAMD.", "", false},
		{"", "", false},
	}
	for _, c := range cases {
		msg, ok := parseError(c.in)
		if ok != c.want || msg != c.msg {
			t.Errorf("parseError(%q) = %q, %v; want %q, %v", c.in, msg, ok, c.msg, c.want)
		}
	}
}
