package otrcore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// specDataMessage is the worked example of the spec's "Fragmentation"
// section, joined into one line.
const specDataMessage = "?OTR:AAMDJ+MVmSfjFZcAAAAAAQAAAAIAAADA1g5IjD1ZGLDVQEyCgCyn9hb" +
	"rL3KAbGDdzE2ZkMyTKl7XfkSxh8YJnudstiB74i4BzT0W2haClg6dMary/jo" +
	"9sMudwmUdlnKpIGEKXWdvJKT+hQ26h9nzMgEditLB8vjPEWAJ6gBXvZrY6ZQ" +
	"rx3gb4v0UaSMOMiR5sB7Eaulb2Yc6RmRnnlxgUUC2alosg4WIeFN951PLjSc" +
	"ajVba6dqlDi+q1H5tPvI5SWMN7PCBWIJ41+WvF+5IAZzQZYgNaVLbAAAAAAA" +
	"AAAEAAAAHwNiIi5Ms+4PsY/L2ipkTtquknfx6HodLvk3RAAAAAA==."

// TestSpecDataMessage decodes the spec's example data message; the
// expected field values were read with libotr's otr_parse.
func TestSpecDataMessage(t *testing.T) {
	payload, ok, err := findEnvelope(specDataMessage)
	if !ok || err != nil {
		t.Fatalf("findEnvelope: %v %v", ok, err)
	}
	var m dataMsg
	if err := m.unmarshal(payload); err != nil {
		t.Fatal(err)
	}
	wantY, _ := new(big.Int).SetString("d60e488c3d5918b0d5404c82802ca7f616eb2f72806c60ddcc4d9990cc932a5ed77e44b187c6099ee76cb6207be22e01cd3d16da1682960e9d31aaf2fe3a3db0cb9dc2651d9672a920610a5d676f24a4fe850dba87d9f332011d8ad2c1f2f8cf116009ea0057bd9ad8e9942bc7781be2fd1469230e322479b01ec46ae95bd9873a4664679e5c605140b66a5a2c83858878537de753cb8d271a8d56dae9daa50e2faad47e6d3ef23949630decf081588278d7e5af17ee48019cd065880d6952db", 16)
	if m.version != 3 || m.senderTag != 0x27e31599 || m.receiverTag != 0x27e31597 ||
		m.flags != 0 || m.senderKeyID != 1 || m.recipientKeyID != 2 || !bytes.Equal(m.nextDH, wantY.Bytes()) ||
		m.ctr != [8]byte{0, 0, 0, 0, 0, 0, 0, 1} ||
		!bytes.Equal(m.encrypted, wireHex(t, "c0d8888b932cfb")) ||
		m.mac != [20]byte(wireHex(t, "83ec63f2f68a9913b6aba49dfc7a1e874bbe4dd1")) ||
		len(m.oldMACKeys) != 0 {
		t.Errorf("decoded %+v", m)
	}
	if !bytes.Equal(m.marshal(), payload) {
		t.Error("re-encoding differs from the original")
	}
	if !bytes.Equal(m.authenticated, m.authenticatedPart()) || !bytes.Equal(m.authenticated, payload[:len(payload)-24]) {
		t.Error("authenticated span differs")
	}
	if encodeEnvelope(payload) != specDataMessage {
		t.Error("encodeEnvelope does not reproduce the spec's text")
	}
}

func wireRandBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func wireRandMPI(r *rand.Rand, n int) *big.Int {
	return new(big.Int).SetBytes(wireRandBytes(r, n))
}

func wireRandHeader(r *rand.Rand) msgHeader {
	if r.IntN(2) == 0 {
		return msgHeader{version: protocolV2}
	}
	return msgHeader{version: protocolV3, senderTag: r.Uint32(), receiverTag: r.Uint32()}
}

// sampleMessages returns one random message of every type.
func wireSamples(r *rand.Rand) []interface {
	marshal() []byte
	unmarshal([]byte) error
} {
	d := &dataMsg{
		msgHeader: wireRandHeader(r), flags: byte(r.IntN(2)), senderKeyID: r.Uint32(), recipientKeyID: r.Uint32(),
		nextDH: wireRandMPI(r, r.IntN(193)).Bytes(), encrypted: wireRandBytes(r, r.IntN(300)), oldMACKeys: wireRandBytes(r, 20*r.IntN(4)),
	}
	copy(d.ctr[:], wireRandBytes(r, 8))
	copy(d.mac[:], wireRandBytes(r, 20))
	rs := &revealSigMsg{msgHeader: wireRandHeader(r), r: wireRandBytes(r, 16), encSig: wireRandBytes(r, r.IntN(600))}
	copy(rs.mac[:], wireRandBytes(r, 20))
	sg := &signatureMsg{msgHeader: wireRandHeader(r), encSig: wireRandBytes(r, r.IntN(600))}
	copy(sg.mac[:], wireRandBytes(r, 20))
	return []interface {
		marshal() []byte
		unmarshal([]byte) error
	}{
		&dhCommitMsg{msgHeader: wireRandHeader(r), encGx: wireRandBytes(r, r.IntN(200)), hashGx: wireRandBytes(r, 32)},
		&dhKeyMsg{msgHeader: wireRandHeader(r), gy: wireRandMPI(r, r.IntN(193))},
		rs, sg, d,
	}
}

// normalise fills the fields the decoder sets (message type, authenticated
// span) so that decoded and original values compare equal.
func wireNormalise(m any) any {
	switch m := m.(type) {
	case *dhCommitMsg:
		c := *m
		c.msgType = msgDHCommit
		return &c
	case *dhKeyMsg:
		c := *m
		c.msgType = msgDHKey
		return &c
	case *revealSigMsg:
		c := *m
		c.msgType = msgRevealSig
		return &c
	case *signatureMsg:
		c := *m
		c.msgType = msgSignature
		return &c
	case *dataMsg:
		c := *m
		c.msgType = msgData
		c.authenticated = c.authenticatedPart()
		if c.oldMACKeys == nil {
			c.oldMACKeys = []byte{}
		}
		return &c
	}
	return m
}

func TestMessageRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		for _, m := range wireSamples(r) {
			enc := m.marshal()
			got := reflect.New(reflect.TypeOf(m).Elem()).Interface().(interface {
				marshal() []byte
				unmarshal([]byte) error
			})
			if err := got.unmarshal(enc); err != nil {
				t.Fatalf("%T: unmarshal(marshal()) = %v", m, err)
			}
			if !reflect.DeepEqual(wireNormalise(got), wireNormalise(m)) {
				t.Fatalf("%T: round trip\n got %+v\nwant %+v", m, got, m)
			}
			if !bytes.Equal(got.marshal(), enc) {
				t.Fatalf("%T: re-encoding differs", m)
			}
			// Every strict prefix is refused, as is any trailing byte.
			for n := 0; n < len(enc); n++ {
				if err := got.unmarshal(enc[:n]); err == nil {
					t.Fatalf("%T: accepted %d-byte prefix of %d", m, n, len(enc))
				}
			}
			if err := got.unmarshal(append(enc[:len(enc):len(enc)], 0)); !errors.Is(err, errMalformed) {
				t.Fatalf("%T: trailing byte: %v", m, err)
			}
		}
	}
}

func TestMessageTypeMismatch(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	msgs := wireSamples(r)
	for i, a := range msgs {
		enc := a.marshal()
		for j, b := range wireSamples(r) {
			err := b.unmarshal(enc)
			if (err == nil) != (i == j) {
				t.Errorf("%T decoding a %T: err = %v", b, a, err)
			}
		}
		// v1 and unknown versions are refused with a version error.
		for _, v := range []byte{1, 4} {
			bad := append([]byte{}, enc...)
			bad[1] = v
			if err := a.unmarshal(bad); !errors.Is(err, errUnsupportedVersion) {
				t.Errorf("%T with version %d: %v", a, v, err)
			}
		}
	}
}

func TestMessageFieldChecks(t *testing.T) {
	h := msgHeader{version: protocolV3, senderTag: 0x100, receiverTag: 0x101}
	// hashed g^x must be 32 bytes.
	for _, n := range []int{0, 31, 33} {
		enc := (&dhCommitMsg{msgHeader: h, encGx: []byte{1}, hashGx: make([]byte, n)}).marshal()
		if err := new(dhCommitMsg).unmarshal(enc); !errors.Is(err, errMalformed) {
			t.Errorf("hashGx of %d bytes: %v", n, err)
		}
	}
	// r must be 16 bytes.
	for _, n := range []int{0, 15, 17, 32} {
		enc := (&revealSigMsg{msgHeader: h, r: make([]byte, n), encSig: []byte{1}}).marshal()
		if err := new(revealSigMsg).unmarshal(enc); !errors.Is(err, errMalformed) {
			t.Errorf("r of %d bytes: %v", n, err)
		}
	}
	// Revealed MAC keys must be whole 20-byte keys.
	for _, n := range []int{1, 19, 21, 39} {
		enc := (&dataMsg{msgHeader: h, senderKeyID: 1, recipientKeyID: 1, nextDH: []byte{5}, oldMACKeys: make([]byte, n)}).marshal()
		if err := new(dataMsg).unmarshal(enc); !errors.Is(err, errMalformed) {
			t.Errorf("oldMACKeys of %d bytes: %v", n, err)
		}
	}
	// Non-minimal MPIs are refused: g^y with a leading zero byte.
	enc := (&dhKeyMsg{msgHeader: h, gy: big.NewInt(0x0102)}).marshal()
	bad := append(append(append([]byte{}, enc[:headerLenV3]...), 0, 0, 0, 3, 0), enc[headerLenV3+4:]...)
	if err := new(dhKeyMsg).unmarshal(bad); !errors.Is(err, errMalformed) {
		t.Errorf("non-minimal g^y: %v", err)
	}
	// A data message whose DATA length overflows the input.
	d := (&dataMsg{msgHeader: h, nextDH: []byte{2}, encrypted: []byte("abc")}).marshal()
	off := headerLenV3 + 1 + 4 + 4 + 5 + 8
	d[off], d[off+1], d[off+2], d[off+3] = 0xff, 0xff, 0xff, 0xf0
	if err := new(dataMsg).unmarshal(d); !errors.Is(err, errMalformed) {
		t.Errorf("overlong DATA: %v", err)
	}
	// marshal ignores msgType and writes the struct's type.
	m := dhKeyMsg{msgHeader: msgHeader{version: 2, msgType: msgData}, gy: big.NewInt(7)}
	if h, err := decodeMessageType(m.marshal()); err != nil || h.msgType != msgDHKey {
		t.Errorf("header of a D-H Key: %+v %v", h, err)
	}
}

// TestMessageTypePrefixes checks the 4-character base64 prefixes listed
// in the notes (from libotr's tests) for every message type.
func TestMessageTypePrefixes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	want := map[byte]string{msgDHCommit: "C", msgDHKey: "K", msgRevealSig: "R", msgSignature: "S", msgData: "D"}
	for _, v := range []uint16{2, 3} {
		for _, m := range wireSamples(r) {
			enc := m.marshal()
			enc[1] = byte(v)
			if v == 2 {
				// Drop the instance tags when turning a v3 sample into v2.
				h, _ := decodeMessageType(m.marshal())
				if h.version == 3 {
					enc = append(enc[:3:3], enc[11:]...)
				}
			} else if h, _ := decodeMessageType(m.marshal()); h.version == 2 {
				enc = append(append(enc[:3:3], 0, 0, 1, 0, 0, 0, 1, 1), enc[3:]...)
			}
			s := encodeEnvelope(enc)
			prefix := "?OTR:AA" + map[uint16]string{2: "I", 3: "M"}[v] + want[enc[2]]
			if !strings.HasPrefix(s, prefix) {
				t.Errorf("%T v%d encodes as %.9s, want %s", m, v, s, prefix)
			}
			if err := m.unmarshal(enc); err != nil {
				t.Errorf("%T v%d: %v", m, v, err)
			}
		}
	}
}

// TestOTRParseDifferential feeds our encodings to libotr's otr_parse (if
// installed) and compares the fields it prints with ours.
func TestOTRParseDifferential(t *testing.T) {
	path, err := exec.LookPath("otr_parse")
	if err != nil {
		missingPeer(t, "otr_parse (libotr5-bin) not installed")
	}
	r := rand.New(rand.NewPCG(7, 8))
	var in strings.Builder
	var want []string
	for i := 0; i < 20; i++ {
		for _, m := range wireSamples(r) {
			in.WriteString(encodeEnvelope(m.marshal()) + "\n")
			want = append(want, strings.Join(splitOTRParse(otrParseFields(m)), ""))
		}
	}
	cmd := exec.Command(path)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("otr_parse: %v", err)
	}
	got := splitOTRParse(string(out))
	if len(got) != len(want) {
		t.Fatalf("otr_parse printed %d messages, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d:\notr_parse:\n%s\nours:\n%s", i, got[i], want[i])
		}
	}
}

// splitOTRParse splits otr_parse output into one block per message,
// keeping only "Field: value" lines.
func splitOTRParse(out string) []string {
	var blocks []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "\t") {
			if cur.Len() > 0 {
				blocks = append(blocks, cur.String())
				cur.Reset()
			}
			if line != "" {
				cur.WriteString(line + "\n")
			}
			continue
		}
		cur.WriteString(strings.TrimSpace(line) + "\n")
	}
	if cur.Len() > 0 {
		blocks = append(blocks, cur.String())
	}
	return blocks
}

// otrParseFields renders m the way otr_parse prints it.
func otrParseFields(m any) string {
	var sb strings.Builder
	switch m := m.(type) {
	case *dhCommitMsg:
		otrParseHeader(&sb, "D-H Commit Message", m.msgHeader, false)
		fmt.Fprintf(&sb, "\tEncrypted Key: %x\n\tHashed Key: %x\n", m.encGx, m.hashGx)
	case *dhKeyMsg:
		otrParseHeader(&sb, "D-H Key Message", m.msgHeader, false)
		fmt.Fprintf(&sb, "\tD-H Key: %x\n", m.gy.Bytes())
	case *revealSigMsg:
		otrParseHeader(&sb, "Reveal Signature Message", m.msgHeader, false)
		fmt.Fprintf(&sb, "\tKey: %x\n\tEncrypted Signature: %x\n\tMAC: %x\n", m.r, m.encSig, m.mac)
	case *signatureMsg:
		otrParseHeader(&sb, "Signature Message", m.msgHeader, false)
		fmt.Fprintf(&sb, "\tEncrypted Signature: %x\n\tMAC: %x\n", m.encSig, m.mac)
	case *dataMsg:
		otrParseHeader(&sb, "Data Message", m.msgHeader, true)
		fmt.Fprintf(&sb, "\tFlags: %x\n", m.flags)
		if m.version == 3 {
			fmt.Fprintf(&sb, "\tSender instance: %d\n\tReceiver instance: %d\n", m.senderTag, m.receiverTag)
		}
		fmt.Fprintf(&sb, "\tSender keyid: %d\n\tRcpt keyid: %d\n\tDH y: %x\n\tCounter: %x\n\tEncrypted message: %x\n\tMAC: %x\n",
			m.senderKeyID, m.recipientKeyID, m.nextDH, m.ctr, m.encrypted, m.mac)
		if len(m.oldMACKeys) > 0 {
			sb.WriteString("\tRevealed MAC keys:\n")
			for i := 0; i < len(m.oldMACKeys); i += 20 {
				fmt.Fprintf(&sb, "\tKey %d: %x\n", i/20+1, m.oldMACKeys[i:i+20])
			}
		}
	}
	return sb.String()
}

func otrParseHeader(sb *strings.Builder, name string, h msgHeader, tagsLater bool) {
	fmt.Fprintf(sb, "%s:\n", name)
	fmt.Fprintf(sb, "\tVersion: %02x\n", h.version)
	if h.version == 3 && !tagsLater {
		fmt.Fprintf(sb, "\tSender instance: %d\n\tReceiver instance: %d\n", h.senderTag, h.receiverTag)
	}
}
