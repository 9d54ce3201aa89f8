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

// encodedLen is the size of m's encoding.
func (m *dataMsg) encodedLen() int {
	return m.msgHeader.encodedLen() + dataFixedLen + len(m.nextDH) + len(m.encrypted) + len(m.oldMACKeys)
}

// appendAuthenticated appends the fields covered by the data message's
// HMAC-SHA1: protocol version through the end of the encrypted DATA
// field, header and instance tags included. nextDH must be minimal (no
// leading zero byte) for the MPI to be canonical.
func (m *dataMsg) appendAuthenticated(dst []byte) []byte {
	dst = headerFor(m.msgHeader, msgData).appendTo(dst)
	dst = append(dst, m.flags)
	dst = binary.BigEndian.AppendUint32(dst, m.senderKeyID)
	dst = binary.BigEndian.AppendUint32(dst, m.recipientKeyID)
	dst = appendLengthPrefixed(dst, m.nextDH)
	dst = append(dst, m.ctr[:]...)
	return appendLengthPrefixed(dst, m.encrypted)
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

// unmarshal decodes a data message and records the authenticated span.
// The revealed MAC keys must be a multiple of 20 bytes. The next DH key
// and the ciphertext alias b: data messages are decoded from a buffer the
// receiver owns, and decryption happens in place.
func (m *dataMsg) unmarshal(b []byte) error {
	const name = "Data"
	h, s, err := parseTyped(b, msgData, name)
	if err != nil {
		return err
	}
	d := dataMsg{msgHeader: h}
	var ctr, mac []byte
	if !s.ReadUint8(&d.flags) || !s.ReadUint32(&d.senderKeyID) || !s.ReadUint32(&d.recipientKeyID) {
		return malformed(name, "truncated")
	}
	if !readMPIMagnitude(&s, &d.nextDH) {
		return malformed(name, "bad or truncated next DH key")
	}
	if !s.ReadBytes(&ctr, ctrLen) || !readLengthPrefixed(&s, &d.encrypted) {
		return malformed(name, "truncated")
	}
	authLen := len(b) - len(s)
	if !s.ReadBytes(&mac, macLen) || !readData(&s, &d.oldMACKeys) {
		return malformed(name, "truncated")
	}
	if len(d.oldMACKeys)%macLen != 0 {
		return malformed(name, fmt.Sprintf("revealed MAC keys are %d bytes, not a multiple of %d", len(d.oldMACKeys), macLen))
	}
	if !s.Empty() {
		return malformed(name, "trailing bytes")
	}
	copy(d.ctr[:], ctr)
	copy(d.mac[:], mac)
	d.authenticated = b[:authLen:authLen]
	*m = d
	return nil
}

// sealData builds an outgoing data message carrying plaintext (the
// human-readable part, then a NUL and TLVs when there are any), following
// "When you send a Data Message" in Protocol-v3.html, and returns its
// binary encoding. hdr carries the version and instance tags. plaintext
// is only read.
func (ks *keyState) sealData(hdr msgHeader, flags byte, plaintext []byte) ([]byte, error) {
	sk, err := ks.sendingKeys()
	if err != nil {
		return nil, err
	}
	if sk.sendCtr == ^uint64(0) {
		return nil, errors.New("otrcore: sending counter exhausted")
	}
	w := &ks.work
	dk, err := sk.sending(w.sha)
	if err != nil {
		return nil, err
	}
	sk.sendCtr++
	m := &dataMsg{
		msgHeader:      hdr,
		flags:          flags,
		senderKeyID:    sk.ourKeyID,
		recipientKeyID: sk.theirKeyID,
		nextDH:         ks.nextPublic(),
		ctr:            ctrBytes(sk.sendCtr),
		encrypted:      plaintext, // encrypted in place once encoded
		oldMACKeys:     ks.takeReveal(),
	}
	// Encode once with the plaintext and a zero MAC, then encrypt the
	// ciphertext field and MAC the authenticated prefix in place.
	buf := m.marshal()
	authLen := len(buf) - macLen - 4 - len(m.oldMACKeys)
	body := buf[authLen-len(plaintext) : authLen]
	ctrXOR(w, dk.block, m.ctr, body, body)
	if err := dk.mac.sum(w.sha, &w.innerSum, buf[:authLen], hdr.encodedLen()+1+4+4, m.nextDH, buf[authLen:authLen+macLen]); err != nil {
		return nil, err
	}
	return buf, nil
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
	w := &ks.work
	dk, err := sk.receiving(w.sha)
	if err != nil {
		return nil, nil, err
	}
	// In a burst the sender announces the key we adopted from its first
	// message: the MAC's prefix cache can then refer to our copy of it.
	if err := dk.mac.sum(w.sha, &w.innerSum, m.authenticated, m.msgHeader.encodedLen()+1+4+4, ks.their[1], w.mac[:]); err != nil {
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
			// Only keys we have announced (public computed) can come back.
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
