package otrcore

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// dataMsg is an encrypted data message (Protocol-v3.html, "Data
// Message"). Its codec writes and reads the fields directly rather than
// through cryptobyte: data messages are the hot path.
type dataMsg struct {
	msgHeader
	flags          byte
	senderKeyID    uint32
	recipientKeyID uint32
	// nextDH is the sender's next DH public key as a minimal big-endian
	// magnitude (the MPI's body); not range checked here. Decoding
	// aliases it into the input.
	nextDH     []byte
	ctr        [ctrLen]byte
	encrypted  []byte
	mac        [macLen]byte
	oldMACKeys []byte // concatenated 20-byte revealed MAC keys

	// authenticated is set by unmarshal to the exact received bytes the
	// MAC covers (protocol version through the end of the encrypted
	// DATA). Since decoding only accepts canonical encodings it equals
	// authenticatedPart() of the decoded message, but verifying against
	// the received bytes avoids depending on that.
	authenticated []byte
}

// dataFixedLen is the size of a data message's fixed-length fields after
// the header: flags, both key ids, the MPI length, the counter, the DATA
// length, the MAC and the revealed keys' DATA length.
const dataFixedLen = 1 + 4 + 4 + 4 + ctrLen + 4 + macLen + 4

// prefixHeadLen is the length of the fields before the next DH key's MPI
// (header, flags, key ids): what the MAC's prefix cache compares.
func (m *dataMsg) prefixHeadLen() int {
	return m.msgHeader.encodedLen() + 1 + 4 + 4
}

// encodedLen is the size of m's encoding.
func (m *dataMsg) encodedLen() int {
	return m.msgHeader.encodedLen() + dataFixedLen + len(m.nextDH) + len(m.encrypted) + len(m.oldMACKeys)
}

// appendAuthenticated appends the fields covered by the data message's
// HMAC-SHA1: protocol version through the end of the encrypted DATA
// field, header and instance tags included. nextDH must be minimal (no
// leading zero byte) for the MPI to be canonical.
func (m *dataMsg) appendAuthenticated(dst []byte) []byte {
	return appendLengthPrefixed(m.appendBeforeData(dst), m.encrypted)
}

// appendBeforeData appends the fields before the encrypted DATA: header,
// flags, key ids, next DH key and counter.
func (m *dataMsg) appendBeforeData(dst []byte) []byte {
	dst = headerFor(m.msgHeader, msgData).appendTo(dst)
	dst = append(dst, m.flags)
	dst = binary.BigEndian.AppendUint32(dst, m.senderKeyID)
	dst = binary.BigEndian.AppendUint32(dst, m.recipientKeyID)
	dst = appendLengthPrefixed(dst, m.nextDH)
	return append(dst, m.ctr[:]...)
}

// authenticatedPart encodes the fields covered by the MAC.
func (m *dataMsg) authenticatedPart() []byte {
	return m.appendAuthenticated(nil)
}

// marshal encodes the data message: authenticatedPart ‖ MAC ‖
// DATA(oldMACKeys).
func (m *dataMsg) marshal() []byte {
	b := m.appendAuthenticated(make([]byte, 0, m.encodedLen()))
	b = append(b, m.mac[:]...)
	return appendLengthPrefixed(b, m.oldMACKeys)
}

// unmarshal decodes a data message into m; see parseDataMsg.
func (m *dataMsg) unmarshal(b []byte) error {
	d, err := parseDataMsg(b)
	if err != nil {
		return err
	}
	*m = d
	return nil
}

// parseDataMsg decodes a data message and records the authenticated span.
// The revealed MAC keys must be a multiple of 20 bytes. The next DH key
// and the ciphertext alias b: data messages are decoded from a buffer the
// receiver owns, and decryption happens in place. The message is
// returned by value, not stored through a pointer, so that b can live on
// the caller's stack.
func parseDataMsg(b []byte) (dataMsg, error) {
	const name = "Data"
	h, rest, err := parseTyped(b, msgData, name)
	if err != nil {
		return dataMsg{}, err
	}
	s := []byte(rest)
	d := dataMsg{msgHeader: h}
	if len(s) < 1+4+4 {
		return dataMsg{}, malformed(name, "truncated")
	}
	d.flags = s[0]
	d.senderKeyID = binary.BigEndian.Uint32(s[1:])
	d.recipientKeyID = binary.BigEndian.Uint32(s[5:])
	s = s[9:]
	var ok bool
	if d.nextDH, s, ok = cutLengthPrefixed(s); !ok || len(d.nextDH) > 0 && d.nextDH[0] == 0 {
		return dataMsg{}, malformed(name, "bad or truncated next DH key")
	}
	if len(s) < ctrLen {
		return dataMsg{}, malformed(name, "truncated")
	}
	copy(d.ctr[:], s)
	if d.encrypted, s, ok = cutLengthPrefixed(s[ctrLen:]); !ok {
		return dataMsg{}, malformed(name, "truncated")
	}
	authLen := len(b) - len(s)
	if len(s) < macLen {
		return dataMsg{}, malformed(name, "truncated")
	}
	copy(d.mac[:], s)
	var revealed []byte
	if revealed, s, ok = cutLengthPrefixed(s[macLen:]); !ok {
		return dataMsg{}, malformed(name, "truncated")
	}
	if len(revealed)%macLen != 0 {
		return dataMsg{}, malformed(name, fmt.Sprintf("revealed MAC keys are %d bytes, not a multiple of %d", len(revealed), macLen))
	}
	if len(s) != 0 {
		return dataMsg{}, malformed(name, "trailing bytes")
	}
	d.oldMACKeys = append([]byte{}, revealed...)
	d.authenticated = b[:authLen:authLen]
	return d, nil
}

// cutLengthPrefixed splits a 4-byte big-endian length and that many bytes
// (a DATA field, or an MPI's magnitude) off the front of s. The field
// aliases s.
func cutLengthPrefixed(s []byte) (field, rest []byte, ok bool) {
	if len(s) < 4 {
		return nil, s, false
	}
	n := binary.BigEndian.Uint32(s)
	if uint64(n) > uint64(len(s)-4) {
		return nil, s, false
	}
	return s[4 : 4+n : 4+n], s[4+n:], true
}

// sealStackSize bounds the data messages sealData encodes in a buffer on
// its stack rather than on the heap: up to about 700 bytes of text, more
// than an IRC line carries.
const sealStackSize = 1024

// sealData builds an outgoing data message carrying text followed by tail
// (empty, or a NUL and TLVs), following "When you send a Data Message" in
// Protocol-v3.html, and returns it encoded ("?OTR:...."). hdr carries the
// version and instance tags. text and tail are only read.
func (ks *keyState) sealData(hdr msgHeader, flags byte, text string, tail []byte) (string, error) {
	sk, err := ks.sendingKeys()
	if err != nil {
		return "", err
	}
	if sk.sendCtr == ^uint64(0) {
		return "", errors.New("otrcore: sending counter exhausted")
	}
	w, err := ks.workArea()
	if err != nil {
		return "", err
	}
	dk, err := sk.sending(w.sha)
	if err != nil {
		return "", err
	}
	sk.sendCtr++
	m := &dataMsg{
		msgHeader:      hdr,
		flags:          flags,
		senderKeyID:    sk.ourKeyID,
		recipientKeyID: sk.theirKeyID,
		nextDH:         ks.nextPublic(),
		ctr:            ctrBytes(sk.sendCtr),
		oldMACKeys:     ks.takeReveal(),
	}
	// The message is encoded with its plaintext, which is then encrypted
	// in place, and MACed. A short one is built on the stack: the buffer
	// never reaches an interface method (ctrXOR and the MAC go through
	// w or separate buffers).
	n := m.encodedLen() + len(text) + len(tail)
	if n <= sealStackSize {
		var stack [sealStackSize]byte
		buf, start := m.appendPlain(stack[:0], text, tail)
		ctrXOR(w, dk.block, m.ctr, buf[start:], buf[start:])
		return sealFinish(w, dk, m, buf)
	}
	buf, start := m.appendPlain(make([]byte, 0, n), text, tail)
	ctrXORStream(w, dk.block, m.ctr, buf[start:], buf[start:])
	return sealFinish(w, dk, m, buf)
}

// appendPlain appends m's fields up to the encrypted DATA, holding
// text ‖ tail in clear, and returns where the plaintext starts.
func (m *dataMsg) appendPlain(buf []byte, text string, tail []byte) ([]byte, int) {
	buf = m.appendBeforeData(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(text)+len(tail)))
	start := len(buf)
	buf = append(buf, text...)
	return append(buf, tail...), start
}

// sealFinish MACs buf, m's authenticated part with the plaintext already
// encrypted, appends the MAC and the revealed keys and returns the
// encoded message.
func sealFinish(w *dataWork, dk *directionKeys, m *dataMsg, buf []byte) (string, error) {
	if err := dk.mac.sum(w, buf, m.prefixHeadLen(), m.nextDH); err != nil {
		return "", err
	}
	buf = append(buf, w.mac[:]...)
	clear(w.mac[:])
	buf = appendLengthPrefixed(buf, m.oldMACKeys)
	return encodeEnvelope(buf), nil
}

// errBadMAC reports a data message whose MAC does not verify.
var errBadMAC = errors.New("otrcore: data message MAC does not verify")

// errReplay reports a counter that did not increase.
var errReplay = errors.New("otrcore: data message counter did not increase (replay?)")

// openData verifies and decrypts a received data message ("Receiving a
// Data Message"): the key ids select the keys, the MAC is checked in
// constant time, then the counter, then the message is decrypted and the
// keys rotate. It returns the plaintext and the session keys used (for the
// extra symmetric key).
func (ks *keyState) openData(m *dataMsg) ([]byte, *sessionKeys, error) {
	if m.senderKeyID == 0 || m.recipientKeyID == 0 {
		return nil, nil, errUnknownKeyID
	}
	sk, err := ks.keys(m.recipientKeyID, m.senderKeyID)
	if err != nil {
		return nil, nil, err
	}
	w, err := ks.workArea()
	if err != nil {
		return nil, nil, err
	}
	dk, err := sk.receiving(w.sha)
	if err != nil {
		return nil, nil, err
	}
	// In a burst the sender announces the key we adopted from its first
	// message: the MAC's prefix cache can then refer to our copy of it.
	if err := dk.mac.sum(w, m.authenticated, m.prefixHeadLen(), ks.their[1]); err != nil {
		return nil, nil, err
	}
	ok := subtle.ConstantTimeCompare(w.mac[:], m.mac[:]) == 1
	clear(w.mac[:])
	if !ok {
		return nil, nil, errBadMAC
	}
	ctr := uint64(m.ctr[0])<<56 | uint64(m.ctr[1])<<48 | uint64(m.ctr[2])<<40 | uint64(m.ctr[3])<<32 |
		uint64(m.ctr[4])<<24 | uint64(m.ctr[5])<<16 | uint64(m.ctr[6])<<8 | uint64(m.ctr[7])
	if ctr <= sk.recvCtr {
		return nil, nil, errReplay
	}
	// The announced next key is adopted only if the sender used its newest
	// key; check it before anything changes, so a bad key cannot wedge us.
	if m.senderKeyID == ks.theirKeyID {
		if err := ks.gr.checkElementBytes(m.nextDH); err != nil {
			return nil, nil, fmt.Errorf("%w: next DH key of a data message", err)
		}
		for _, k := range ks.our {
			// A key whose public part was never computed was never
			// announced, so it cannot come back.
			if k != nil && k.pub != nil && compareMag(m.nextDH, k.pub) == 0 {
				return nil, nil, errReflected
			}
		}
	}
	sk.recvCtr = ctr
	sk.recvMACUsed = true
	plaintext := m.encrypted // decrypted in place: m owns its buffer
	ctrXOR(w, dk.block, m.ctr, plaintext, m.encrypted)
	if err := ks.rotate(m.recipientKeyID, m.senderKeyID, m.nextDH); err != nil {
		return nil, nil, err
	}
	return plaintext, sk, nil
}
