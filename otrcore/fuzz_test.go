package otrcore

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// Fuzz targets for every wire parser. Each must never panic on any input
// and, where an encoder exists, decoding must invert encoding. The seeds
// added with f.Add run as ordinary tests under `go test`.

type wireMessage interface {
	marshal() []byte
	unmarshal([]byte) error
}

// seedMessages adds encodings of random messages of type T, plus a few
// damaged variants, to f.
func seedMessages(f *testing.F, pick int) {
	r := rand.New(rand.NewPCG(11, uint64(pick)))
	for i := 0; i < 6; i++ {
		enc := wireSamples(r)[pick].marshal()
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
		f.Add(append(bytes.Clone(enc), 0))
	}
	f.Add([]byte{})
	f.Add([]byte{0, 3})
	f.Add([]byte{0, 1, 2})
}

// checkMessage decodes b into m and, on success, requires the encoding to
// reproduce b exactly: the decoders accept only canonical encodings.
func checkMessage(t *testing.T, m wireMessage, b []byte) {
	if err := m.unmarshal(b); err != nil {
		return
	}
	if got := m.marshal(); !bytes.Equal(got, b) {
		t.Fatalf("%T: re-encoding differs\n in %x\nout %x", m, b, got)
	}
}

func FuzzDHCommit(f *testing.F) {
	seedMessages(f, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m dhCommitMsg
		checkMessage(t, &m, b)
		if m.hashGx != nil && len(m.hashGx) != hashedGxLen {
			t.Fatalf("hashGx of %d bytes accepted", len(m.hashGx))
		}
	})
}

func FuzzDHKey(f *testing.F) {
	seedMessages(f, 1)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkMessage(t, new(dhKeyMsg), b)
	})
}

func FuzzRevealSig(f *testing.F) {
	seedMessages(f, 2)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m revealSigMsg
		checkMessage(t, &m, b)
		if m.r != nil && len(m.r) != revealRLen {
			t.Fatalf("r of %d bytes accepted", len(m.r))
		}
	})
}

func FuzzSignature(f *testing.F) {
	seedMessages(f, 3)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkMessage(t, new(signatureMsg), b)
	})
}

func FuzzDataMsg(f *testing.F) {
	seedMessages(f, 4)
	if p, _, err := findEnvelope(specDataMessage); err == nil {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m dataMsg
		if err := m.unmarshal(b); err != nil {
			return
		}
		if !bytes.Equal(m.marshal(), b) {
			t.Fatal("re-encoding differs")
		}
		if !bytes.Equal(m.authenticated, m.authenticatedPart()) || !bytes.HasPrefix(b, m.authenticated) ||
			len(b) != len(m.authenticated)+macLen+4+len(m.oldMACKeys) {
			t.Fatal("authenticated span is wrong")
		}
		if len(m.oldMACKeys)%macLen != 0 {
			t.Fatal("partial revealed MAC key accepted")
		}
	})
}

// FuzzEnvelope runs the whole receive-side decoding of an unfragmented
// line: envelope, header and the typed decoder for the header's type.
func FuzzEnvelope(f *testing.F) {
	f.Add(specDataMessage)
	f.Add("?OTR:AAMAAAAAAQAAAAI==")
	f.Add("?OTR:AAMAAAAAAQAAAAI=")
	f.Add("?OTR:invalid_base64_thing.")
	f.Add("hi ?OTR:AAIK.")
	f.Add("?OTR:")
	f.Add("?OTR:AAMD")
	r := rand.New(rand.NewPCG(12, 13))
	for _, m := range wireSamples(r) {
		f.Add(encodeEnvelope(m.marshal()))
	}
	f.Fuzz(func(t *testing.T, text string) {
		payload, ok, err := findEnvelope(text)
		// Decoding into a caller's buffer (as Receive does, on its
		// stack) gives the same result, whether or not it fits.
		for _, size := range []int{0, 3, recvStackSize} {
			into, okInto, errInto := decodeEnvelope(text, make([]byte, size))
			if okInto != ok || (errInto == nil) != (err == nil) || !bytes.Equal(into, payload) {
				t.Fatalf("decoding into %d bytes differs: %x %v %v, want %x %v %v", size, into, okInto, errInto, payload, ok, err)
			}
		}
		if !ok || err != nil {
			if !ok && (err != nil || payload != nil) {
				t.Fatal("not found, yet an error or payload")
			}
			return
		}
		if len(payload) == 0 || base64Len(len(payload)) > maxEncodedMessage {
			t.Fatalf("payload of %d bytes accepted", len(payload))
		}
		again, ok, err := findEnvelope(encodeEnvelope(payload))
		if !ok || err != nil || !bytes.Equal(again, payload) {
			t.Fatal("envelope round trip failed")
		}
		h, err := decodeMessageType(payload)
		if err != nil {
			return
		}
		var m wireMessage
		switch h.msgType {
		case msgDHCommit:
			m = new(dhCommitMsg)
		case msgDHKey:
			m = new(dhKeyMsg)
		case msgRevealSig:
			m = new(revealSigMsg)
		case msgSignature:
			m = new(signatureMsg)
		case msgData:
			m = new(dataMsg)
		default:
			return
		}
		checkMessage(t, m, payload)
	})
}

func base64Len(n int) int { return (n + 2) / 3 * 4 }

// FuzzFragment feeds the lines of the input (split at '\n') through the
// fragment parser and one reassembler, checking the caps, and also
// round-trips the input through fragmentMessage.
func FuzzFragment(f *testing.F) {
	f.Add(strings.Join(specFragments, "\n"), uint16(60))
	f.Add("?OTR,1,2,abc,\n?OTR,2,2,def,", uint16(20))
	f.Add("?OTR|100|0,1,1,x,", uint16(37))
	f.Add("?OTR|ffffffff|0,00001,00002,a,\n?OTR|ffffffff|0,00002,00002,b,\nplain", uint16(0))
	f.Add("?OTR,1,1,,", uint16(19))
	f.Add("?OTR|1|2,2,1,x,\n?OTR,0,1,x,\n?OTR,65535,65535,x,", uint16(100))
	f.Fuzz(func(t *testing.T, data string, maxLen uint16) {
		var r reassembler
		for _, line := range strings.Split(data, "\n") {
			fp, ok, err := parseFragment(line)
			if !ok {
				if err != nil {
					t.Fatal("error without a fragment")
				}
				r.reset()
				continue
			}
			if err != nil {
				continue
			}
			if fp.k < 1 || fp.k > fp.n || fp.n > maxFragments || fp.piece == "" || strings.Contains(fp.piece, ",") {
				t.Fatalf("bad fragment accepted: %+v", fp)
			}
			if fp.version != protocolV2 && fp.version != protocolV3 {
				t.Fatalf("version %d", fp.version)
			}
			msg, complete, _ := r.add(fp)
			if len(r.buf) > maxReassembled || len(msg) > maxReassembled || int(r.k) > int(r.n) {
				t.Fatalf("reassembler state out of bounds: %d bytes, %d/%d", len(r.buf), r.k, r.n)
			}
			if complete && (msg == "" || r.n != 0) {
				t.Fatal("complete message is empty or state kept")
			}
		}

		// Splitting and reassembling any comma-free message restores it.
		msg := strings.ReplaceAll(data, ",", "")
		for _, version := range []uint16{protocolV2, protocolV3} {
			frags, err := fragmentMessage(msg, int(maxLen), version, 0x1234, 0)
			if err != nil {
				continue
			}
			if len(frags) == 1 {
				if frags[0] != msg {
					t.Fatal("single fragment differs from the message")
				}
				continue
			}
			var ra reassembler
			for i, line := range frags {
				if len(line) > int(maxLen) {
					t.Fatalf("fragment of %d bytes exceeds %d", len(line), maxLen)
				}
				fp, ok, err := parseFragment(line)
				if !ok || err != nil {
					t.Fatalf("own fragment %q: %v", line, err)
				}
				got, complete, err := ra.add(fp)
				if len(msg) > maxReassembled {
					break // the reassembler refuses it, as intended
				}
				if err != nil || complete != (i == len(frags)-1) || (complete && got != msg) {
					t.Fatalf("reassembly: %v %v", complete, err)
				}
			}
		}
	})
}

func FuzzTLV(f *testing.F) {
	f.Add([]byte("hello\x00\x00\x01\x00\x00"))
	f.Add([]byte("\x00\x00\x00\x00\x05hello"))
	f.Add([]byte("\x00\x00\x02\x00\x04abcd\x00\x06\x00"))
	f.Add([]byte("\x00\x00\x08\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tlvs, err := parseTLVs(b)
		var enc []byte
		for _, x := range tlvs {
			enc = appendTLV(enc, x)
		}
		if err == nil && !bytes.Equal(enc, b) {
			t.Fatal("TLV re-encoding differs")
		}
		if err != nil && (!bytes.HasPrefix(b, enc) || len(enc) == len(b)) {
			t.Fatal("TLVs before the truncation are not a prefix")
		}
		text, _, _ := splitPlaintext(b)
		if bytes.IndexByte(text, 0) >= 0 || !bytes.HasPrefix(b, text) {
			t.Fatal("human-readable part is wrong")
		}
	})
}

// FuzzQuery checks query parsing, query construction and whitespace tags.
func FuzzQuery(f *testing.F) {
	f.Add("?OTRv23?", uint8(3))
	f.Add("?OTR?v2?", uint8(1))
	f.Add("?OTR?", uint8(0))
	f.Add("?OTRv4? hello", uint8(2))
	f.Add("hello"+wsTagBase+wsTagV2+wsTagV3, uint8(3))
	f.Add(wsTagBase+wsTagV1+"\t\t\t\t\t\t\t\ttext", uint8(1))
	f.Fuzz(func(t *testing.T, text string, bits uint8) {
		parseQuery(text)
		v, stripped, found := findWhitespaceTag(text)
		if found {
			if !strings.Contains(text, wsTagBase) || len(stripped) > len(text)-len(wsTagBase) || (len(text)-len(stripped))%wsTagLen != 0 {
				t.Fatalf("bad strip: %q -> %q", text, stripped)
			}
		} else if stripped != text || v != 0 {
			t.Fatal("text changed without a tag")
		}
		want := versionSet(bits) & (versionSetV2 | versionSetV3)
		q := queryMessage(want, text)
		if strings.ContainsAny(q, "\r\n") {
			t.Fatal("query message spans lines")
		}
		if got, ok, err := parseQuery(q); !ok || got != want || err != nil {
			t.Fatalf("parseQuery(queryMessage(%b)) = %b, %v, %v", want, got, ok, err)
		}
		if want != 0 {
			got, _, found := findWhitespaceTag(whitespaceTag(want) + text)
			if !found || got&want != want {
				t.Fatalf("own tag: %b, %v", got, found)
			}
		}
	})
}

func FuzzPubKey(f *testing.F) {
	priv, _ := katKey(f)
	raw := priv.publicKey().raw
	f.Add(raw)
	sig, err := priv.sign(bytes.NewReader(make([]byte, 64)), make([]byte, 32))
	if err == nil {
		f.Add(append(bytes.Clone(raw), sig...))
	}
	f.Add(raw[:100])
	f.Add([]byte{0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := cryptobyte.String(b)
		var pk publicKey
		if !readPubKey(&s, &pk) {
			if len(s) != len(b) {
				t.Fatal("input consumed on failure")
			}
			return
		}
		if !bytes.Equal(pk.raw, b[:len(b)-len(s)]) || !bytes.Equal(encodePubKey(&pk), pk.raw) {
			t.Fatal("raw PUBKEY bytes differ from the encoding")
		}
		_ = pk.fingerprint()
		// Whatever follows may be taken as a signature; verification of
		// hostile keys and signatures must not panic.
		pk.verify(make([]byte, 32), s)
	})
}
