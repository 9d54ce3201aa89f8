package otrcore

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestTLVSpecExamples(t *testing.T) {
	// The spec's examples: type 1 with no data; type 0 holding "hello".
	b := appendTLV(nil, tlv{typ: tlvDisconnected})
	if !bytes.Equal(b, []byte{0, 1, 0, 0}) {
		t.Errorf("disconnect TLV = %x", b)
	}
	b = appendTLV(nil, tlv{typ: tlvPadding, value: []byte("hello")})
	if !bytes.Equal(b, []byte("\x00\x00\x00\x05hello")) {
		t.Errorf("padding TLV = %x", b)
	}
	tlvs, err := parseTLVs([]byte("\x00\x01\x00\x00\x00\x00\x00\x05hello"))
	if err != nil || len(tlvs) != 2 || tlvs[0].typ != 1 || len(tlvs[0].value) != 0 || tlvs[1].typ != 0 || string(tlvs[1].value) != "hello" {
		t.Errorf("parseTLVs = %+v, %v", tlvs, err)
	}
}

func TestTLVRoundTrip(t *testing.T) {
	in := []tlv{
		{typ: tlvSMP1Q, value: []byte("question?\x00rest")},
		{typ: tlvSMPAbort, value: []byte{}},
		{typ: 0xffff, value: bytes.Repeat([]byte{7}, 300)}, // unknown type
		{typ: tlvExtraSymKey, value: bytes.Repeat([]byte{1}, maxTLVValue)},
	}
	var b []byte
	for _, x := range in {
		b = appendTLV(b, x)
	}
	out, err := parseTLVs(b)
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip: %v", err)
	}
	// Values are copies.
	b[5] ^= 0xff
	if out[0].value[1] != 'u' {
		t.Error("parsed TLV value aliases the input")
	}
	if out, err := parseTLVs(nil); out != nil || err != nil {
		t.Errorf("empty input: %v %v", out, err)
	}
}

func TestTLVTruncated(t *testing.T) {
	good := appendTLV(nil, tlv{typ: 2, value: []byte("abc")})
	for _, tail := range [][]byte{{0}, {0, 1}, {0, 1, 0}, {0, 1, 0, 1}, {0, 1, 0, 5, 'a', 'b'}, {0, 1, 0xff, 0xff}} {
		out, err := parseTLVs(append(append([]byte{}, good...), tail...))
		if !errors.Is(err, errTLV) {
			t.Errorf("tail %x: err = %v", tail, err)
		}
		if len(out) != 1 || out[0].typ != 2 || string(out[0].value) != "abc" {
			t.Errorf("tail %x: records before the truncation = %+v", tail, out)
		}
	}
}

func TestAppendTLVTooLong(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("appendTLV accepted a value over 65535 bytes")
		}
	}()
	appendTLV(nil, tlv{typ: 0, value: make([]byte, maxTLVValue+1)})
}

func TestSplitPlaintext(t *testing.T) {
	cases := []struct {
		in    string
		text  string
		tlvs  []tlv
		isErr bool
	}{
		{"hello", "hello", nil, false},
		{"", "", nil, false},
		{"hello\x00", "hello", nil, false}, // libotr always adds the NUL
		{"\x00\x00\x01\x00\x00", "", []tlv{{typ: 1, value: []byte{}}}, false},
		{"hi\x00\x00\x06\x00\x00\x00\x00\x00\x02ab", "hi", []tlv{{typ: 6, value: []byte{}}, {typ: 0, value: []byte("ab")}}, false},
		{"hi\x00\x00\x06\x00", "hi", nil, true},
		{"hi\x00\x00\x01\x00\x00\x00\x02", "hi", []tlv{{typ: 1, value: []byte{}}}, true},
	}
	for _, c := range cases {
		text, tlvs, err := splitPlaintext([]byte(c.in))
		if string(text) != c.text || !reflect.DeepEqual(tlvs, c.tlvs) || (err != nil) != c.isErr {
			t.Errorf("splitPlaintext(%q) = %q, %+v, %v", c.in, text, tlvs, err)
		}
	}
}
