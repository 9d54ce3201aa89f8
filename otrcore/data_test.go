package otrcore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"strings"
	"testing"
	"time"
)

// TestDataMessageLengths sends messages of every length around the
// thresholds where sealing and opening change strategy (block-by-block
// or streamed CTR, stack or heap buffers), with and without TLVs, checks
// every sent message against crypto/cipher's AES-CTR and crypto/hmac
// computed from the session keys, and that the peer reads it.
func TestDataMessageLengths(t *testing.T) {
	a, b := benchPair(t, 0)
	now := time.Unix(1e9, 0)
	var lengths []int
	for _, around := range []int{0, 16, ctrStreamMin, sealStackSize - 300, sealStackSize - 260, recvStackSize - 260, 1500, 5000} {
		for d := -17; d <= 17; d++ {
			if around+d >= 0 {
				lengths = append(lengths, around+d)
			}
		}
	}
	for _, n := range lengths {
		for _, withTLV := range []bool{false, true} {
			text := strings.Repeat(string(rune('a'+n%26)), n)
			in, err := a.sendTarget()
			if err != nil {
				t.Fatal(err)
			}
			sk, err := in.keys.sendingKeys()
			if err != nil {
				t.Fatal(err)
			}
			var res Result
			var tlvs []tlv
			if withTLV {
				tlvs = []tlv{{typ: tlvPadding, value: bytes.Repeat([]byte{7}, n%40)}}
			}
			if err := a.sendData(&res, in, now, text, tlvs, 0); err != nil {
				t.Fatal(err)
			}
			line := res.Send[0].Lines[0]
			payload, ok, err := findEnvelope(line)
			if !ok || err != nil {
				t.Fatalf("length %d: %v", n, err)
			}
			m, err := parseDataMsg(payload)
			if err != nil {
				t.Fatalf("length %d: %v", n, err)
			}
			// The reference: AES-128-CTR under the sending key from
			// ctr ‖ 0^64, HMAC-SHA1 under SHA-1 of it.
			want := []byte(text)
			if withTLV {
				want = append(want, 0)
				want = appendTLV(want, tlvs[0])
			}
			block, _ := aes.NewCipher(sk.sendKey[:])
			var iv [16]byte
			copy(iv[:], m.ctr[:])
			ct := make([]byte, len(want))
			cipher.NewCTR(block, iv[:]).XORKeyStream(ct, want)
			if !bytes.Equal(m.encrypted, ct) {
				t.Fatalf("length %d (TLV %v): ciphertext differs from crypto/cipher's CTR", n, withTLV)
			}
			macKey := sha1.Sum(sk.sendKey[:])
			h := hmac.New(sha1.New, macKey[:])
			h.Write(m.authenticated)
			if !bytes.Equal(h.Sum(nil), m.mac[:]) {
				t.Fatalf("length %d (TLV %v): MAC differs from crypto/hmac", n, withTLV)
			}
			r, err := b.Receive(now, line)
			if err != nil || (n > 0 && r.Text != text) || (n == 0 && r.HasText) {
				t.Fatalf("length %d (TLV %v): received %v %q", n, withTLV, err, r.Text)
			}
		}
	}
}

// TestHeartbeatsDieOut: two idle engines that both Tick exchange one
// heartbeat after a message, not one a minute forever.
func TestHeartbeatsDieOut(t *testing.T) {
	a, b := benchPair(t, 0)
	now := time.Unix(1e9, 0)
	res, err := a.Send(now, "hi")
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := b.Receive(now, res.Send[0].Lines[0]); r.Text != "hi" {
		t.Fatal("message lost")
	}
	sent := 0
	for i := 0; i < 20; i++ {
		now = now.Add(61 * time.Second)
		for _, d := range [][2]*Conversation{{a, b}, {b, a}} {
			for _, m := range d[0].Tick(now).Send {
				sent++
				if r, _ := d[1].Receive(now, m.Lines[0]); r.HasText {
					t.Fatal("heartbeat shown as text")
				}
			}
		}
	}
	if sent != 1 {
		t.Fatalf("%d heartbeats in 20 idle minutes, want 1", sent)
	}
}
