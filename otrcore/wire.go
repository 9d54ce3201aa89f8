package otrcore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
)

// Protocol versions this package speaks. Version 1 is recognised only so
// that it can be refused.
const (
	protocolV1 uint16 = 1
	protocolV2 uint16 = 2
	protocolV3 uint16 = 3
)

// Message types of the binary (base64-encoded) OTR messages, from the
// spec's "D-H Commit Message" … "Data Message" sections.
const (
	msgDHCommit  byte = 0x02
	msgData      byte = 0x03
	msgDHKey     byte = 0x0a
	msgRevealSig byte = 0x11
	msgSignature byte = 0x12
)

// Sizes of the fixed-length wire fields (spec "Data types").
const (
	macLen       = 20 // MAC: HMAC-SHA1 or truncated HMAC-SHA256
	ctrLen       = 8  // CTR: top half of the AES-CTR counter
	headerLenV2  = 3  // SHORT version, BYTE type
	headerLenV3  = 11 // plus INT sender and INT receiver instance tags
	revealRLen   = 16 // the AES-128 key r revealed in a Reveal Signature
	hashedGxLen  = 32 // SHA-256 of MPI(g^x) in a D-H Commit
	mpiLenPrefix = 4
)

var (
	// errMalformed reports a binary message that does not follow the
	// wire format: truncated, with trailing bytes, a wrong field length or
	// a non-minimal MPI. Errors returned by the decoders wrap it.
	errMalformed = errors.New("otrcore: malformed message")

	// errUnsupportedVersion reports a protocol version other than 2 or 3.
	errUnsupportedVersion = errors.New("otrcore: unsupported protocol version")

	// errVersion1 reports an OTR version 1 message. It wraps
	// errUnsupportedVersion; version 1 has a known identity-misbinding
	// flaw and is never spoken.
	errVersion1 = fmt.Errorf("%w: OTR version 1 is refused", errUnsupportedVersion)
)

// addMPI appends v as an MPI: a 4-byte big-endian length followed by the
// minimal big-endian magnitude (no leading zero bytes; zero has length 0).
// A nil v is encoded as zero. v must not be negative.
func addMPI(b *cryptobyte.Builder, v *big.Int) {
	if v == nil {
		b.AddUint32(0)
		return
	}
	n := (v.BitLen() + 7) / 8
	b.AddUint32(uint32(n))
	var buf [2 * dhPrimeBytes]byte // group elements fit without a heap copy
	if n <= len(buf) {
		b.AddBytes(v.FillBytes(buf[:n]))
		return
	}
	b.AddBytes(v.Bytes())
}

// readMPI reads an MPI into *out. It fails, without allocating, when the
// declared length exceeds the remaining input, and it rejects non-minimal
// encodings (a leading 0x00 byte), which would otherwise change
// fingerprints and MACs computed over re-encoded values. Nothing is
// consumed on failure.
func readMPI(s *cryptobyte.String, out **big.Int) bool {
	var mag []byte
	if !readMPIMagnitude(s, &mag) {
		return false
	}
	*out = new(big.Int).SetBytes(mag)
	return true
}

// readMPIMagnitude reads an MPI's minimal big-endian magnitude, aliasing
// the input; it has readMPI's checks and consumes nothing on failure.
func readMPIMagnitude(s *cryptobyte.String, out *[]byte) bool {
	save := *s
	var mag []byte
	if !readLengthPrefixed(s, &mag) {
		return false
	}
	if len(mag) > 0 && mag[0] == 0 {
		*s = save
		return false
	}
	*out = mag
	return true
}

// mpiBytes returns the MPI serialisation of v (length prefix and
// magnitude), as used in the key-derivation and MAC inputs.
func mpiBytes(v *big.Int) []byte {
	var mag []byte
	if v != nil {
		mag = v.Bytes()
	}
	out := make([]byte, mpiLenPrefix+len(mag))
	out[0] = byte(len(mag) >> 24)
	out[1] = byte(len(mag) >> 16)
	out[2] = byte(len(mag) >> 8)
	out[3] = byte(len(mag))
	copy(out[mpiLenPrefix:], mag)
	return out
}

// addData appends d as DATA: a 4-byte big-endian length and the bytes.
func addData(b *cryptobyte.Builder, d []byte) {
	b.AddUint32(uint32(len(d)))
	b.AddBytes(d)
}

// readData reads a DATA field into *out. The declared length is checked
// against the remaining input before anything is allocated; the result is a
// copy, so it does not alias the input buffer.
func readData(s *cryptobyte.String, out *[]byte) bool {
	var d []byte
	if !readLengthPrefixed(s, &d) {
		return false
	}
	*out = append([]byte{}, d...)
	return true
}

// readLengthPrefixed reads a 4-byte length and that many bytes, returning
// them as a sub-slice of s. It consumes nothing on failure.
func readLengthPrefixed(s *cryptobyte.String, out *[]byte) bool {
	save := *s
	var n uint32
	if !s.ReadUint32(&n) || uint64(n) > uint64(len(*s)) || !s.ReadBytes(out, int(n)) {
		*s = save
		return false
	}
	return true
}

// msgHeader is the common prefix of every binary OTR message. The
// instance tags are only present on the wire for protocol version 3; for
// version 2 they are zero.
type msgHeader struct {
	version     uint16
	msgType     byte
	senderTag   uint32
	receiverTag uint32
}

// hdr returns h itself; the messages embedding a header satisfy
// akeMessage's hdr through it.
func (h *msgHeader) hdr() *msgHeader { return h }

// add appends the header. Instance tags are written only for version 3.
func (h msgHeader) add(b *cryptobyte.Builder) {
	b.AddUint16(h.version)
	b.AddUint8(h.msgType)
	if h.version == protocolV3 {
		b.AddUint32(h.senderTag)
		b.AddUint32(h.receiverTag)
	}
}

// encodedLen is the size of the header on the wire.
func (h msgHeader) encodedLen() int {
	if h.version == protocolV3 {
		return headerLenV3
	}
	return headerLenV2
}

// appendTo appends the header, as add does.
func (h msgHeader) appendTo(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, h.version)
	dst = append(dst, h.msgType)
	if h.version == protocolV3 {
		dst = binary.BigEndian.AppendUint32(dst, h.senderTag)
		dst = binary.BigEndian.AppendUint32(dst, h.receiverTag)
	}
	return dst
}

// appendLengthPrefixed appends d with a 4-byte big-endian length: a DATA
// field, or an MPI when d is a minimal magnitude.
func appendLengthPrefixed(dst, d []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(d)))
	return append(dst, d...)
}

// parseHeader decodes the header of a binary message and returns the rest
// of the input. Versions other than 2 and 3 are refused: version 1 with
// errVersion1, anything else with an error wrapping errUnsupportedVersion.
// The message type is returned as is; the typed decoders check it.
func parseHeader(b []byte) (msgHeader, cryptobyte.String, error) {
	s := cryptobyte.String(b)
	var h msgHeader
	if !s.ReadUint16(&h.version) {
		return msgHeader{}, nil, fmt.Errorf("%w: truncated header", errMalformed)
	}
	switch h.version {
	case protocolV2, protocolV3:
	case protocolV1:
		return msgHeader{}, nil, errVersion1
	default:
		return msgHeader{}, nil, fmt.Errorf("%w: version %d", errUnsupportedVersion, h.version)
	}
	if !s.ReadUint8(&h.msgType) {
		return msgHeader{}, nil, fmt.Errorf("%w: truncated header", errMalformed)
	}
	if h.version == protocolV3 {
		if !s.ReadUint32(&h.senderTag) || !s.ReadUint32(&h.receiverTag) {
			return msgHeader{}, nil, fmt.Errorf("%w: truncated instance tags", errMalformed)
		}
	}
	return h, s, nil
}
