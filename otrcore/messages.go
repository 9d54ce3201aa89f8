package otrcore

import (
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
)

// flagIgnoreUnreadable is the only defined data-message flag: a receiver
// that cannot decrypt or verify the message drops it silently.
const flagIgnoreUnreadable byte = 0x01

// The typed messages below mirror the spec's "D-H Commit Message" …
// "Data Message" layouts. marshal writes the header with the message type
// of the receiving struct whatever msgType holds, so callers only set the
// version and instance tags. unmarshal is strict: it rejects a different
// type, truncated input, trailing bytes, wrong fixed lengths and
// non-minimal MPIs, and never panics. Every returned error wraps
// errMalformed or errUnsupportedVersion.

// dhCommitMsg is the first AKE message: AES-CTR-encrypted MPI(g^x) and
// SHA-256 of MPI(g^x).
type dhCommitMsg struct {
	msgHeader
	encGx  []byte
	hashGx []byte // hashedGxLen bytes
}

// dhKeyMsg is the second AKE message: g^y. The value is not range
// checked here; the AKE must call checkElement.
type dhKeyMsg struct {
	msgHeader
	gy *big.Int
}

// revealSigMsg is the third AKE message: the revealed key r, the
// encrypted signature X_B and the first 20 bytes of HMAC-SHA256 over the
// encrypted-signature DATA field (length prefix included).
type revealSigMsg struct {
	msgHeader
	r      []byte // revealRLen bytes
	encSig []byte
	mac    [macLen]byte
}

// signatureMsg is the last AKE message: the encrypted signature X_A and its
// truncated MAC.
type signatureMsg struct {
	msgHeader
	encSig []byte
	mac    [macLen]byte
}

// akeMessage is one of the four AKE messages. They share the header,
// one decode path (newAKEMessage, then unmarshal) and one way out
// (emitAKE fills in the instance tags through hdr, then marshal).
type akeMessage interface {
	marshal() []byte
	unmarshal([]byte) error
	// hdr returns the embedded header, for reading the version and
	// setting the instance tags.
	hdr() *msgHeader
}

// newAKEMessage returns an empty AKE message of wire type t, ready to
// unmarshal, or nil when t is not an AKE message type.
func newAKEMessage(t byte) akeMessage {
	switch t {
	case msgDHCommit:
		return new(dhCommitMsg)
	case msgDHKey:
		return new(dhKeyMsg)
	case msgRevealSig:
		return new(revealSigMsg)
	case msgSignature:
		return new(signatureMsg)
	}
	return nil
}

// headerFor returns h with its type forced to t.
func headerFor(h msgHeader, t byte) msgHeader {
	h.msgType = t
	return h
}

// parseTyped decodes the header, refusing other versions and any message
// type but want.
func parseTyped(b []byte, want byte, name string) (msgHeader, cryptobyte.String, error) {
	h, s, err := parseHeader(b)
	if err != nil {
		return msgHeader{}, nil, fmt.Errorf("%w (%s)", err, name)
	}
	if h.msgType != want {
		return msgHeader{}, nil, fmt.Errorf("%w: %s: message type %#02x", errMalformed, name, h.msgType)
	}
	return h, s, nil
}

// malformed returns an error wrapping errMalformed for message name.
func malformed(name, what string) error {
	return fmt.Errorf("%w: %s: %s", errMalformed, name, what)
}

// marshal encodes the D-H Commit message.
func (m *dhCommitMsg) marshal() []byte {
	b := cryptobyte.NewBuilder(nil)
	headerFor(m.msgHeader, msgDHCommit).add(b)
	addData(b, m.encGx)
	addData(b, m.hashGx)
	return b.BytesOrPanic()
}

// unmarshal decodes a D-H Commit message; the hashed g^x must be 32 bytes.
func (m *dhCommitMsg) unmarshal(b []byte) error {
	const name = "D-H Commit"
	h, s, err := parseTyped(b, msgDHCommit, name)
	if err != nil {
		return err
	}
	var encGx, hashGx []byte
	if !readData(&s, &encGx) || !readData(&s, &hashGx) {
		return malformed(name, "truncated")
	}
	if len(hashGx) != hashedGxLen {
		return malformed(name, fmt.Sprintf("hashed g^x is %d bytes, want %d", len(hashGx), hashedGxLen))
	}
	if !s.Empty() {
		return malformed(name, "trailing bytes")
	}
	*m = dhCommitMsg{msgHeader: h, encGx: encGx, hashGx: hashGx}
	return nil
}

// marshal encodes the D-H Key message.
func (m *dhKeyMsg) marshal() []byte {
	b := cryptobyte.NewBuilder(nil)
	headerFor(m.msgHeader, msgDHKey).add(b)
	addMPI(b, m.gy)
	return b.BytesOrPanic()
}

// unmarshal decodes a D-H Key message.
func (m *dhKeyMsg) unmarshal(b []byte) error {
	const name = "D-H Key"
	h, s, err := parseTyped(b, msgDHKey, name)
	if err != nil {
		return err
	}
	var gy *big.Int
	if !readMPI(&s, &gy) {
		return malformed(name, "bad or truncated g^y")
	}
	if !s.Empty() {
		return malformed(name, "trailing bytes")
	}
	*m = dhKeyMsg{msgHeader: h, gy: gy}
	return nil
}

// marshal encodes the Reveal Signature message.
func (m *revealSigMsg) marshal() []byte {
	b := cryptobyte.NewBuilder(nil)
	headerFor(m.msgHeader, msgRevealSig).add(b)
	addData(b, m.r)
	addData(b, m.encSig)
	b.AddBytes(m.mac[:])
	return b.BytesOrPanic()
}

// unmarshal decodes a Reveal Signature message; r must be 16 bytes.
func (m *revealSigMsg) unmarshal(b []byte) error {
	const name = "Reveal Signature"
	h, s, err := parseTyped(b, msgRevealSig, name)
	if err != nil {
		return err
	}
	var r, encSig, mac []byte
	if !readData(&s, &r) {
		return malformed(name, "truncated")
	}
	if len(r) != revealRLen {
		return malformed(name, fmt.Sprintf("revealed key is %d bytes, want %d", len(r), revealRLen))
	}
	if !readData(&s, &encSig) || !s.ReadBytes(&mac, macLen) {
		return malformed(name, "truncated")
	}
	if !s.Empty() {
		return malformed(name, "trailing bytes")
	}
	*m = revealSigMsg{msgHeader: h, r: r, encSig: encSig}
	copy(m.mac[:], mac)
	return nil
}

// marshal encodes the Signature message.
func (m *signatureMsg) marshal() []byte {
	b := cryptobyte.NewBuilder(nil)
	headerFor(m.msgHeader, msgSignature).add(b)
	addData(b, m.encSig)
	b.AddBytes(m.mac[:])
	return b.BytesOrPanic()
}

// unmarshal decodes a Signature message.
func (m *signatureMsg) unmarshal(b []byte) error {
	const name = "Signature"
	h, s, err := parseTyped(b, msgSignature, name)
	if err != nil {
		return err
	}
	var encSig, mac []byte
	if !readData(&s, &encSig) || !s.ReadBytes(&mac, macLen) {
		return malformed(name, "truncated")
	}
	if !s.Empty() {
		return malformed(name, "trailing bytes")
	}
	*m = signatureMsg{msgHeader: h, encSig: encSig}
	copy(m.mac[:], mac)
	return nil
}

// decodeMessageType decodes only the header of a binary message, to
// dispatch on its type and route on its instance tags.
func decodeMessageType(b []byte) (msgHeader, error) {
	h, _, err := parseHeader(b)
	return h, err
}
