package otrcore

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

func wireHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMPIEncoding(t *testing.T) {
	cases := []struct {
		v    *big.Int
		want string
	}{
		{big.NewInt(0), "00000000"},
		{nil, "00000000"},
		{big.NewInt(1), "0000000101"},
		{big.NewInt(0x80), "0000000180"},
		{big.NewInt(0x1234), "000000021234"},
		{new(big.Int).Lsh(big.NewInt(1), 64), "00000009010000000000000000"},
	}
	for _, c := range cases {
		b := cryptobyte.NewBuilder(nil)
		addMPI(b, c.v)
		got := b.BytesOrPanic()
		if hex.EncodeToString(got) != c.want {
			t.Errorf("addMPI(%v) = %x, want %s", c.v, got, c.want)
		}
		if !bytes.Equal(mpiBytes(c.v), got) {
			t.Errorf("mpiBytes(%v) = %x, want %x", c.v, mpiBytes(c.v), got)
		}
		s := cryptobyte.String(got)
		var v *big.Int
		if !readMPI(&s, &v) || !s.Empty() {
			t.Errorf("readMPI(%x) failed", got)
			continue
		}
		want := c.v
		if want == nil {
			want = big.NewInt(0)
		}
		if v.Cmp(want) != 0 {
			t.Errorf("readMPI(%x) = %v, want %v", got, v, want)
		}
	}
	// The DH prime round-trips at full size.
	p := otrGroup().p
	enc := mpiBytes(p)
	if len(enc) != 4+dhPrimeBytes || !bytes.Equal(enc[:4], []byte{0, 0, 0, 0xc0}) {
		t.Errorf("mpiBytes(p) prefix %x, len %d", enc[:4], len(enc))
	}
}

func TestReadMPIRejects(t *testing.T) {
	cases := map[string]string{
		"leading zero":       "000000020001",
		"single zero byte":   "0000000100",
		"length beyond data": "00000003aabb",
		"huge length":        "ffffffff00",
		"truncated length":   "000000",
		"empty":              "",
	}
	for name, h := range cases {
		s := cryptobyte.String(wireHex(t, h))
		save := s
		var v *big.Int
		if readMPI(&s, &v) {
			t.Errorf("%s: readMPI(%s) accepted %v", name, h, v)
		}
		if len(s) != len(save) {
			t.Errorf("%s: readMPI consumed input on failure", name)
		}
	}
}

func TestDataEncoding(t *testing.T) {
	for _, d := range [][]byte{nil, {}, {0}, {0, 0, 1}, bytes.Repeat([]byte{0xab}, 300)} {
		b := cryptobyte.NewBuilder(nil)
		addData(b, d)
		enc := b.BytesOrPanic()
		if len(enc) != 4+len(d) {
			t.Fatalf("addData(%x) length %d", d, len(enc))
		}
		s := cryptobyte.String(enc)
		var got []byte
		if !readData(&s, &got) || !s.Empty() || !bytes.Equal(got, d) {
			t.Errorf("readData round trip of %x = %x", d, got)
		}
		// The result must not alias the input.
		if len(got) > 0 {
			enc[4] ^= 0xff
			if got[0] != d[0] {
				t.Error("readData result aliases its input")
			}
		}
	}
	for _, h := range []string{"00000002aa", "ffffffff", "000001", "80000000"} {
		s := cryptobyte.String(wireHex(t, h))
		var got []byte
		if readData(&s, &got) {
			t.Errorf("readData(%s) accepted", h)
		}
	}
}

func TestParseHeader(t *testing.T) {
	h, rest, err := parseHeader(wireHex(t, "000302000001000000020aff"))
	if err != nil {
		t.Fatal(err)
	}
	if h != (msgHeader{version: 3, msgType: msgDHCommit, senderTag: 0x100, receiverTag: 0x20a}) || !bytes.Equal(rest, []byte{0xff}) {
		t.Errorf("v3 header = %+v rest %x", h, rest)
	}
	h, rest, err = parseHeader(wireHex(t, "00020a0102"))
	if err != nil {
		t.Fatal(err)
	}
	if h != (msgHeader{version: 2, msgType: msgDHKey}) || !bytes.Equal(rest, []byte{1, 2}) {
		t.Errorf("v2 header = %+v rest %x", h, rest)
	}
	if _, _, err := parseHeader(wireHex(t, "000103")); !errors.Is(err, errVersion1) || !errors.Is(err, errUnsupportedVersion) {
		t.Errorf("v1 header: err = %v, want errVersion1", err)
	}
	for _, h := range []string{"000403", "000003", "ffff03"} {
		if _, _, err := parseHeader(wireHex(t, h)); !errors.Is(err, errUnsupportedVersion) || errors.Is(err, errVersion1) {
			t.Errorf("header %s: err = %v, want errUnsupportedVersion", h, err)
		}
	}
	for _, h := range []string{"", "00", "0003", "000302", "00030200000001", "00030200000001000000"} {
		if _, _, err := parseHeader(wireHex(t, h)); !errors.Is(err, errMalformed) {
			t.Errorf("truncated header %q: err = %v", h, err)
		}
	}
	// Header encoding: tags only for v3.
	for _, h := range []msgHeader{{version: 3, msgType: msgData, senderTag: 0xdeadbeef, receiverTag: 0x12345678}, {version: 2, msgType: msgData}} {
		b := cryptobyte.NewBuilder(nil)
		h.add(b)
		enc := b.BytesOrPanic()
		want := headerLenV2
		if h.version == 3 {
			want = headerLenV3
		}
		if len(enc) != want {
			t.Errorf("header %+v encodes to %d bytes", h, len(enc))
		}
		got, rest, err := parseHeader(enc)
		if err != nil || got != h || len(rest) != 0 {
			t.Errorf("header round trip %+v = %+v, %v", h, got, err)
		}
	}
}

// TestLibotrHeaderLiterals checks the instance-tag literals of libotr's
// unit tests: a v3 header carries sender tag 1 and receiver tag 2, a v2
// header none. libotr's literal "?OTR:AAMAAAAAAQAAAAI==" has one '=' more
// than canonical padding; libotr's lenient decoder stops at the first '='.
// We decode strictly, so the literal itself is refused and its canonical
// form is used.
func TestLibotrHeaderLiterals(t *testing.T) {
	if _, ok, err := findEnvelope("?OTR:AAMAAAAAAQAAAAI=="); !ok || err == nil {
		t.Errorf("over-padded literal: ok=%v err=%v, want a strict-decoding error", ok, err)
	}
	payload, ok, err := findEnvelope("?OTR:AAMAAAAAAQAAAAI=")
	if !ok || err != nil {
		t.Fatalf("findEnvelope: ok=%v err=%v", ok, err)
	}
	// 00 03 00 | 00 00 00 01 | 00 00 00 02: version 3, type 0, tags 1, 2.
	h, err := decodeMessageType(payload)
	if err != nil {
		t.Fatal(err)
	}
	if h.version != 3 || h.senderTag != 1 || h.receiverTag != 2 {
		t.Errorf("v3 literal: %+v", h)
	}
	payload, ok, err = findEnvelope("?OTR:AAIAAAAAAQAAAAI=")
	if !ok || err != nil {
		t.Fatalf("findEnvelope: ok=%v err=%v", ok, err)
	}
	h, rest, err := parseHeader(payload)
	if err != nil {
		t.Fatal(err)
	}
	if h.version != 2 || h.senderTag != 0 || h.receiverTag != 0 || len(rest) != 8 {
		t.Errorf("v2 literal: %+v rest %x", h, rest)
	}
}
