package otrcore

import (
	"bytes"
	"crypto/sha1"
	"encoding"
	"encoding/binary"
	"errors"
	"hash"
)

// sha1State is a SHA-1 digest whose state can be saved and restored, as
// crypto/sha1's is.
type sha1State interface {
	hash.Hash
	encoding.BinaryAppender
	encoding.BinaryUnmarshaler
}

// newSHA1State returns a SHA-1 digest that can save and restore its state.
func newSHA1State() (sha1State, error) {
	h, ok := sha1.New().(sha1State)
	if !ok {
		return nil, errors.New("otrcore: this SHA-1 implementation cannot save its state")
	}
	return h, nil
}

// macPrefixLen is how many leading bytes of a message the MAC's prefix
// cache covers: three SHA-1 blocks. In a data message they lie within the
// header, flags, key ids and the next DH key's MPI, which stay the same
// from one message to the next while the direction does not change.
const macPrefixLen = 3 * sha1.BlockSize

// macHeadMax bounds the fixed-length fields before the MPI that the
// prefix cache compares: a v3 header, flags and both key ids.
const macHeadMax = headerLenV3 + 1 + 4 + 4

// hmacSHA1 is HMAC-SHA1 under one key (RFC 2104), kept as the SHA-1
// states after the inner and outer padded key blocks, as crypto/hmac keeps
// them, but without digests of its own: the computation runs in a digest
// the caller lends (one per session, shared by every key of the session).
//
// From the second message on it also remembers the inner state after the
// first macPrefixLen bytes of the last message it authenticated, together
// with what those bytes were, and resumes from it when the next message
// starts the same way: in a burst of data messages only the counter and
// the ciphertext change.
type hmacSHA1 struct {
	states []byte // inner state ‖ outer state, marshaled (secret: derived from the key)
	split  int    // where the outer state starts
	used   bool   // a message was authenticated: a prefix cache is worth keeping
	prefix *macPrefixCache
}

// macPrefixCache is the inner SHA-1 state after the first macPrefixLen
// bytes of a message that were head[:headLen] followed by the MPI of dh
// (an immutable slice held by the key state).
type macPrefixCache struct {
	state   []byte
	head    [macHeadMax]byte
	headLen int
	dh      []byte
}

// init keys m with key (at most one block long) using the digest h for the
// precomputation.
func (m *hmacSHA1) init(h sha1State, key []byte) error {
	if len(key) > sha1.BlockSize {
		return errors.New("otrcore: internal error: HMAC key longer than a block")
	}
	pad := make([]byte, sha1.BlockSize)
	defer wipe(pad)
	var inner []byte
	for i, b := range []byte{0x36, 0x5c} {
		clear(pad)
		copy(pad, key)
		for j := range pad {
			pad[j] ^= b
		}
		h.Reset()
		h.Write(pad)
		var err error
		if i == 0 {
			inner, err = h.AppendBinary(nil)
			// One allocation for both states.
			m.states = append(make([]byte, 0, 2*len(inner)), inner...)
			m.split = len(inner)
			wipe(inner)
		} else {
			m.states, err = h.AppendBinary(m.states)
		}
		if err != nil {
			m.wipe()
			return err
		}
	}
	h.Reset()
	return nil
}

// sum computes the MAC of msg into w.mac, running in w's digest. msg is
// fed to the digest through w.feed, never passed to it directly, so that
// it may live on a caller's stack.
//
// When msg is a data message's authenticated part, headLen is the length
// of its fields before the next DH key's MPI and dh is that key's
// magnitude as an immutable slice (one the key state keeps and never
// changes), the prefix cache is used and refreshed; otherwise pass dh ==
// nil. Either way the result is HMAC-SHA1(key, msg): the cache is only
// used when msg's first macPrefixLen bytes equal the cached ones, which
// is checked byte for byte.
func (m *hmacSHA1) sum(w *dataWork, msg []byte, headLen int, dh []byte) error {
	h := w.sha
	c := m.prefix
	var err error
	switch {
	case c != nil && prefixIs(msg, c.head[:c.headLen], c.dh):
		err = h.UnmarshalBinary(c.state)
		w.write(msg[macPrefixLen:])
	case m.used && dh != nil && prefixIs(msg, msg[:min(headLen, len(msg))], dh):
		// Another message under this key with a cacheable prefix: keep
		// the state after it.
		if c == nil {
			c = &macPrefixCache{}
			m.prefix = c
		}
		err = h.UnmarshalBinary(m.states[:m.split])
		w.write(msg[:macPrefixLen])
		if c.state, err = h.AppendBinary(c.state[:0]); err != nil {
			m.prefix = nil
		}
		c.headLen = copy(c.head[:], msg[:headLen])
		c.dh = dh
		w.write(msg[macPrefixLen:])
	default:
		err = h.UnmarshalBinary(m.states[:m.split])
		w.write(msg)
	}
	if err != nil {
		return err
	}
	m.used = true
	h.Sum(w.innerSum[:0])
	if err := h.UnmarshalBinary(m.states[m.split:]); err != nil {
		return err
	}
	h.Write(w.innerSum[:])
	h.Sum(w.mac[:0])
	clear(w.innerSum[:])
	return nil
}

// prefixIs reports whether the first macPrefixLen bytes of msg are head
// followed by the MPI of dh, and msg goes on beyond them. head must be at
// most macHeadMax bytes long.
func prefixIs(msg, head, dh []byte) bool {
	mpiStart := len(head) + mpiLenPrefix
	if len(head) > macHeadMax || len(msg) <= macPrefixLen || mpiStart+len(dh) < macPrefixLen {
		return false
	}
	return bytes.Equal(msg[:len(head)], head) &&
		binary.BigEndian.Uint32(msg[len(head):]) == uint32(len(dh)) &&
		bytes.Equal(msg[mpiStart:macPrefixLen], dh[:macPrefixLen-mpiStart])
}

// wipe forgets the key-derived states.
func (m *hmacSHA1) wipe() {
	wipe(m.states)
	if m.prefix != nil {
		wipe(m.prefix.state)
	}
	*m = hmacSHA1{}
}
