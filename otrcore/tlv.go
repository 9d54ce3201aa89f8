package otrcore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// TLV types carried after the NUL in a data message's plaintext
// (Protocol-v3.html, "Data Message" and "Socialist Millionaires' Protocol").
const (
	tlvPadding      uint16 = 0
	tlvDisconnected uint16 = 1
	tlvSMP1         uint16 = 2
	tlvSMP2         uint16 = 3
	tlvSMP3         uint16 = 4
	tlvSMP4         uint16 = 5
	tlvSMPAbort     uint16 = 6
	tlvSMP1Q        uint16 = 7
	tlvExtraSymKey  uint16 = 8
)

// tlv is one type/length/value record of a data message.
type tlv struct {
	typ   uint16
	value []byte
}

// maxTLVValue is the largest TLV value: the length field is a SHORT.
const maxTLVValue = 0xffff

// errTLV reports a truncated TLV record.
var errTLV = errors.New("otrcore: truncated TLV")

// parseTLVs decodes consecutive TLV records (SHORT type, SHORT length,
// value). Values are copied, so they stay valid if b is wiped. A truncated
// record yields an error wrapping errTLV together with the records decoded
// before it (libotr stops quietly at that point). Unknown types are
// returned like any other; callers ignore them.
func parseTLVs(b []byte) ([]tlv, error) {
	var out []tlv
	for len(b) > 0 {
		if len(b) < 4 {
			return out, fmt.Errorf("%w: %d-byte record header", errTLV, len(b))
		}
		typ := binary.BigEndian.Uint16(b)
		n := int(binary.BigEndian.Uint16(b[2:]))
		b = b[4:]
		if n > len(b) {
			return out, fmt.Errorf("%w: type %d declares %d bytes, %d remain", errTLV, typ, n, len(b))
		}
		out = append(out, tlv{typ: typ, value: append([]byte{}, b[:n]...)})
		b = b[n:]
	}
	return out, nil
}

// appendTLV appends the encoding of t to dst. A value longer than
// maxTLVValue cannot be encoded; passing one is a programming error and
// panics, so callers must bound values built from user input.
func appendTLV(dst []byte, t tlv) []byte {
	if len(t.value) > maxTLVValue {
		panic(fmt.Sprintf("otrcore: TLV type %d value of %d bytes exceeds %d", t.typ, len(t.value), maxTLVValue))
	}
	dst = binary.BigEndian.AppendUint16(dst, t.typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(t.value)))
	return append(dst, t.value...)
}

// splitPlaintext splits a decrypted data-message plaintext into its
// human-readable part (up to the first NUL; it aliases p) and the TLVs
// after the NUL. Without a NUL there are no TLVs. A truncated TLV returns
// an error along with the text and the TLVs decoded before it.
func splitPlaintext(p []byte) (text []byte, tlvs []tlv, err error) {
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		return p, nil, nil
	}
	tlvs, err = parseTLVs(p[i+1:])
	return p[:i], tlvs, err
}
