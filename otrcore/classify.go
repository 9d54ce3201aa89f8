package otrcore

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// LineKind says what a line received from the peer is.
type LineKind int

// Kinds of received lines.
const (
	// LinePlain is ordinary text, to show the user. Tagged tells whether
	// it carries a whitespace tag (which Receive strips).
	LinePlain LineKind = iota + 1
	// LineQuery is an OTR Query Message; Offers tells which versions it
	// offers (none when it is version 1 only).
	LineQuery
	// LineError is an OTR Error Message (unauthenticated text).
	LineError
	// LineData is an encoded, well-formed OTR data message.
	LineData
	// LineAKE is an encoded, well-formed AKE message; Message says which
	// of the four.
	LineAKE
	// LineFragment is one piece of a fragmented OTR message.
	LineFragment
	// LineMalformed starts like an OTR message but is none of the valid
	// forms (see Classify); Err says why. It is never shown as text.
	LineMalformed
)

var lineKindNames = [...]string{LinePlain: "plain", LineQuery: "query", LineError: "error",
	LineData: "data", LineAKE: "ake", LineFragment: "fragment", LineMalformed: "malformed"}

// String returns the kind's name.
func (k LineKind) String() string {
	if k > 0 && int(k) < len(lineKindNames) {
		return lineKindNames[k]
	}
	return fmt.Sprintf("LineKind(%d)", int(k))
}

// MessageType names a binary OTR message.
type MessageType int

// Binary OTR message types. The zero value means unknown (a fragment whose
// first piece does not reveal the type, or a line that is no message).
const (
	MessageDHCommit MessageType = iota + 1
	MessageDHKey
	MessageRevealSig
	MessageSignature
	MessageData
)

var messageTypeNames = [...]string{MessageDHCommit: "D-H Commit", MessageDHKey: "D-H Key",
	MessageRevealSig: "Reveal Signature", MessageSignature: "Signature", MessageData: "Data"}

// String returns the message type's name as the spec spells it.
func (t MessageType) String() string {
	if t > 0 && int(t) < len(messageTypeNames) {
		return messageTypeNames[t]
	}
	return fmt.Sprintf("MessageType(%d)", int(t))
}

// messageType maps a wire message type to its MessageType (0 if unknown).
func messageType(wire byte) MessageType {
	switch wire {
	case msgDHCommit:
		return MessageDHCommit
	case msgDHKey:
		return MessageDHKey
	case msgRevealSig:
		return MessageRevealSig
	case msgSignature:
		return MessageSignature
	case msgData:
		return MessageData
	}
	return 0
}

// LineInfo describes one received line, as Classify and Receive see it.
// Only the fields documented for its Kind are set.
type LineInfo struct {
	Kind LineKind
	// Tagged: a LinePlain line carries a whitespace tag.
	Tagged bool
	// Message is the binary message type of a LineData or LineAKE line,
	// and of a LineFragment with Piece 1 when the piece reveals it (so
	// "first fragment of a data message" can be told apart).
	Message MessageType
	// Version is the protocol version (2 or 3) of a message or fragment.
	Version int
	// SenderTag and ReceiverTag are the instance tags of a version 3
	// message or fragment.
	SenderTag, ReceiverTag uint32
	// Piece and Pieces are a fragment's k and n (1 ≤ k ≤ n ≤ 65535).
	Piece, Pieces int
	// Size is the length of the encoded message of a LineMalformed line
	// that was refused for being too large (Err wraps ErrTooLarge).
	Size int
	// Err says why a LineMalformed line is malformed.
	Err error

	offers versionSet // LineQuery, and LinePlain when Tagged
}

// Offers reports whether a query or whitespace tag offers protocol
// version v (2 or 3).
func (i LineInfo) Offers(v int) bool {
	return v > 0 && v < 1<<16 && i.offers.has(uint16(v))
}

// ErrTooLarge is wrapped by the errors of messages longer than the engine
// accepts: an encoded message over 256 KiB, or a fragmented one whose
// reassembly exceeds 64 KiB.
var ErrTooLarge = errors.New("otrcore: OTR message too large")

// sizeError reports a message refused for its size. It wraps ErrTooLarge
// and the error of the step that refused it.
type sizeError struct {
	size, limit int
	what        string
	step        error
}

func (e *sizeError) Error() string {
	return fmt.Sprintf("otrcore: OTR message too large: %s of %d bytes, over the %d-byte limit", e.what, e.size, e.limit)
}

func (e *sizeError) Unwrap() []error { return []error{ErrTooLarge, e.step} }

// messageSize returns the size a sizeError in err's chain reports, or 0.
func messageSize(err error) int {
	var se *sizeError
	if errors.As(err, &se) {
		return se.size
	}
	return 0
}

// errNotOTRForm reports a line that starts with "?OTR" but is none of the
// OTR message forms.
var errNotOTRForm = errors.New("otrcore: line starts with ?OTR but is no OTR message")

// Classify says what a line received from the peer is, without any
// conversation state. It is the parse Receive starts with, so the two
// always agree: Receive shows text for exactly the LinePlain lines (with a
// whitespace tag removed) and treats every other kind as OTR protocol.
//
// The forms are tried in this order:
//
//   - A line starting with "?OTR|" or "?OTR," is a fragment (spec
//     "Fragmentation"); one that breaks the format (bad tags, k or n out of
//     range, empty piece, …) is LineMalformed.
//   - A line containing "?OTR:" anywhere is an encoded message, as libotr
//     finds it anywhere; it must decode (strict base64, a version 2 or 3
//     header, a known type, a well-formed body) or it is LineMalformed.
//   - A line starting with "?OTR Error:" is an error message. Unlike
//     libotr, the marker must start the line.
//   - A line containing "?OTR?" or "?OTRv" is a query (libotr finds those
//     anywhere too); a control character in its version list makes it
//     LineMalformed.
//   - Any other line starting with "?OTR" is LineMalformed: OTR software
//     sends nothing else starting so, and showing it would put protocol
//     noise (or a hidden injection) on the user's screen. "?OTR" later in
//     a line is ordinary text.
//   - Everything else is LinePlain.
func Classify(line string) LineInfo {
	var buf [recvStackSize]byte
	p, _ := parseLine(line, buf[:])
	return p.info
}

// parsedLine is a classified line with what Receive needs to act on it.
type parsedLine struct {
	info  LineInfo
	piece fragmentPiece // LineFragment
	hdr   msgHeader     // LineData, LineAKE
	ake   akeMessage    // LineAKE
	// text is the plain text without its whitespace tag (LinePlain), or
	// the error text (LineError).
	text string
	// badFragment: a LineMalformed line that starts like a fragment. The
	// spec discards it without touching the reassembly state.
	badFragment bool
}

// recvStackSize bounds the binary messages a received line is decoded
// into on the stack rather than on the heap: data messages of up to about
// 700 bytes of text, and every AKE message.
const recvStackSize = 1024

// parseLine classifies line and decodes what it carries; a LineData
// line's message comes back as d. An encoded message is decoded into buf
// when it fits (else into a new buffer), and d's fields then alias buf:
// the caller passes a buffer of its own, usually on its stack, and is
// done with d before returning. d is kept apart from p, which holds
// what outlives the call (text, AKE messages, errors), so that buf can
// stay on the stack. AKE messages are decoded from a copy, as their
// decoders keep parts of it.
func parseLine(line string, buf []byte) (p parsedLine, d dataMsg) {
	malformed := func(err error) (parsedLine, dataMsg) {
		p.info = LineInfo{Kind: LineMalformed, Err: err, Size: messageSize(err)}
		return p, dataMsg{}
	}
	if f, ok, err := parseFragment(line); ok {
		if err != nil {
			p.badFragment = true
			return malformed(err)
		}
		p.piece = f
		p.info = LineInfo{Kind: LineFragment, Version: int(f.version), SenderTag: f.senderTag, ReceiverTag: f.receiverTag,
			Piece: f.k, Pieces: f.n}
		if f.k == 1 {
			p.info.Message = peekMessageType(f.piece)
		}
		return p, d
	}
	if strings.Contains(line, envelopePrefix) {
		return parseEncoded(line, buf)
	}
	if msg, ok := parseError(line); ok {
		p.info.Kind, p.text = LineError, msg
		return p, d
	}
	if v, ok, err := parseQuery(line); ok {
		if err != nil {
			return malformed(err)
		}
		p.info = LineInfo{Kind: LineQuery, offers: v}
		return p, d
	}
	if strings.HasPrefix(line, queryPrefix) {
		return malformed(errNotOTRForm)
	}
	v, text, tagged := findWhitespaceTag(line)
	p.info = LineInfo{Kind: LinePlain, Tagged: tagged, offers: v}
	p.text = text
	return p, d
}

// parseEncoded decodes a line holding "?OTR:": the envelope (into buf
// when it fits), the header and the whole message.
func parseEncoded(line string, buf []byte) (p parsedLine, d dataMsg) {
	malformed := func(err error) (parsedLine, dataMsg) {
		p.info = LineInfo{Kind: LineMalformed, Err: err, Size: messageSize(err)}
		return p, dataMsg{}
	}
	payload, _, err := decodeEnvelope(line, buf)
	if err != nil {
		return malformed(err)
	}
	hdr, err := decodeMessageType(payload)
	if err != nil {
		return malformed(err)
	}
	p.hdr = hdr
	p.info = LineInfo{Version: int(hdr.version), SenderTag: hdr.senderTag, ReceiverTag: hdr.receiverTag,
		Message: messageType(hdr.msgType)}
	if hdr.msgType == msgData {
		d, err := parseDataMsg(payload)
		if err != nil {
			return malformed(err)
		}
		p.info.Kind = LineData
		return p, d
	}
	m := newAKEMessage(hdr.msgType)
	if m == nil {
		return malformed(fmt.Errorf("%w: unknown message type %#02x", errMalformed, hdr.msgType))
	}
	if err := m.unmarshal(bytes.Clone(payload)); err != nil {
		return malformed(err)
	}
	p.ake, p.info.Kind = m, LineAKE
	return p, dataMsg{}
}

// peekMessageType returns the type of the encoded message a first
// fragment's piece starts, or 0 when the piece does not reveal it. The
// first four base64 characters after "?OTR:" hold the version and type.
func peekMessageType(piece string) MessageType {
	rest, ok := strings.CutPrefix(piece, envelopePrefix)
	if !ok || len(rest) < 4 {
		return 0
	}
	var b [3]byte
	if n, ok := decodeBase64(b[:], rest[:4]); !ok || n != 3 {
		return 0
	}
	if v := uint16(b[0])<<8 | uint16(b[1]); v != protocolV2 && v != protocolV3 {
		return 0
	}
	return messageType(b[2])
}
