package otrcore

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

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
	dk, err := sk.sending()
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
	ctrXOR(dk.block, m.ctr, body, body)
	dk.mac.Reset()
	dk.mac.Write(buf[:authLen])
	dk.mac.Sum(buf[authLen:authLen])
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
func (ks *keyState) openData(rand io.Reader, m *dataMsg) ([]byte, *sessionKeys, error) {
	if m.senderKeyID == 0 || m.recipientKeyID == 0 {
		return nil, nil, errUnknownKeyID
	}
	sk, err := ks.keys(m.recipientKeyID, m.senderKeyID)
	if err != nil {
		return nil, nil, err
	}
	dk, err := sk.receiving()
	if err != nil {
		return nil, nil, err
	}
	var mac [20]byte
	dk.mac.Reset()
	dk.mac.Write(m.authenticated)
	dk.mac.Sum(mac[:0])
	if subtle.ConstantTimeCompare(mac[:], m.mac[:]) != 1 {
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
		if err := ks.gr.checkElement(m.nextDH); err != nil {
			return nil, nil, fmt.Errorf("%w: next DH key of a data message", err)
		}
		for _, k := range ks.our {
			// Only keys we have announced (public computed) can come back.
			if k != nil && k.pub != nil && m.nextDH.Cmp(k.pub) == 0 {
				return nil, nil, errReflected
			}
		}
	}
	sk.recvCtr = ctr
	sk.recvMACUsed = true
	plaintext := m.encrypted // decrypted in place: m owns its buffer
	ctrXOR(dk.block, m.ctr, plaintext, m.encrypted)
	if err := ks.rotate(rand, m.recipientKeyID, m.senderKeyID, m.nextDH); err != nil {
		return nil, nil, err
	}
	return plaintext, sk, nil
}
