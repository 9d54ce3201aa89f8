package otrcore

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

func testSHA1State(t testing.TB) sha1State {
	t.Helper()
	h, err := newSHA1State()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testMAC returns dk's MAC of msg, without the prefix cache.
func testMAC(t testing.TB, dk *directionKeys, msg []byte) []byte {
	t.Helper()
	w := &dataWork{sha: testSHA1State(t)}
	if err := dk.mac.sum(w, msg, 0, nil); err != nil {
		t.Fatal(err)
	}
	return w.mac[:]
}

// testDataPrefix returns head ‖ MPI(dh) ‖ tail, the shape of a data
// message's authenticated part.
func testDataPrefix(head, dh, tail []byte) []byte {
	b := append([]byte(nil), head...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(dh)))
	b = append(b, dh...)
	return append(b, tail...)
}

// TestHMACSHA1MatchesCryptoHMAC checks hmacSHA1, with and without its
// prefix cache, against crypto/hmac on messages that share the cached
// prefix, differ from it in every region, and are shorter than it.
func TestHMACSHA1MatchesCryptoHMAC(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	w := &dataWork{sha: testSHA1State(t)}
	h := w.sha
	for _, keyLen := range []int{0, 1, 20, 63, 64} {
		key := rnd(keyLen)
		m := &hmacSHA1{}
		if err := m.init(h, key); err != nil {
			t.Fatal(err)
		}
		dhA, dhB := rnd(192), rnd(192)
		head := rnd(macHeadMax)
		hits := 0
		for i := 0; i < 400; i++ {
			hd, dh := head, dhA
			switch r.IntN(8) {
			case 0:
				dh = dhB
			case 1:
				hd = rnd(macHeadMax)
			case 2:
				hd = head[:3+r.IntN(macHeadMax-3)] // a v2-sized or odd head
			case 3:
				dh = dhA[:r.IntN(len(dhA))] // too short to cover the prefix
			}
			msg := testDataPrefix(hd, dh, rnd(r.IntN(300)))
			if r.IntN(10) == 0 {
				msg = msg[:r.IntN(len(msg))] // shorter than the prefix, or cut anywhere
			}
			if r.IntN(5) == 0 && len(msg) > 0 {
				// A flipped byte inside the prefix must miss the cache.
				msg = bytes.Clone(msg)
				msg[r.IntN(min(len(msg), macPrefixLen))] ^= 0x80
			}
			// The caller may claim a wrong head length or key: the
			// result must not depend on it.
			claimHead, claimDH := len(hd), dh
			if r.IntN(6) == 0 {
				claimHead = r.IntN(macHeadMax + 1)
			}
			if r.IntN(6) == 0 {
				claimDH = dhB
			}
			if r.IntN(6) == 0 {
				claimDH = nil
			}
			wasHit := m.prefix != nil && prefixIs(msg, m.prefix.head[:m.prefix.headLen], m.prefix.dh)
			if err := m.sum(w, msg, claimHead, claimDH); err != nil {
				t.Fatal(err)
			}
			got := w.mac[:]
			ref := hmac.New(sha1.New, key)
			ref.Write(msg)
			if want := ref.Sum(nil); !bytes.Equal(got, want) {
				t.Fatalf("key %d bytes, message %d bytes (cache hit %v): got %x, want %x", keyLen, len(msg), wasHit, got, want)
			}
			if wasHit {
				hits++
			}
		}
		if hits == 0 {
			t.Fatalf("key %d bytes: the prefix cache was never used", keyLen)
		}
		states := m.states
		m.wipe()
		if m.states != nil || m.prefix != nil || !bytes.Equal(states, make([]byte, len(states))) {
			t.Fatal("wipe left states behind")
		}
	}
}
