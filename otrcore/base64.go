package otrcore

import (
	"encoding/base64"
	"encoding/binary"
	"sync"
)

// base64Alphabet is the standard base64 alphabet (RFC 4648, section 4).
const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// base64PairTable returns the encodings of every 12-bit value as two
// characters (the first in the low byte), built once per process and
// read-only afterwards: 8 KiB, small enough to stay in the L1 cache, and
// half the table lookups of encoding one character at a time.
var base64PairTable = sync.OnceValue(func() *[4096]uint16 {
	var t [4096]uint16
	for i := range t {
		t[i] = uint16(base64Alphabet[i>>6]) | uint16(base64Alphabet[i&63])<<8
	}
	return &t
})

// encodeBase64 writes the standard padded base64 encoding of src to dst,
// exactly as base64.StdEncoding.Encode does; dst must hold
// base64.StdEncoding.EncodedLen(len(src)) bytes.
func encodeBase64(dst, src []byte) {
	t := base64PairTable()
	// Six input bytes (read as the top of a 64-bit load) become eight
	// characters (one 64-bit store).
	for len(src) >= 8 && len(dst) >= 8 {
		v := binary.BigEndian.Uint64(src)
		binary.LittleEndian.PutUint64(dst, uint64(t[v>>52])|uint64(t[v>>40&0xfff])<<16|
			uint64(t[v>>28&0xfff])<<32|uint64(t[v>>16&0xfff])<<48)
		src, dst = src[6:], dst[8:]
	}
	base64.StdEncoding.Encode(dst, src)
}

// base64Invalid marks bytes outside the alphabet in base64DecodeTable.
const base64Invalid = 0xff

// base64DecodeTable maps each byte to its 6-bit value in the standard
// base64 alphabet (RFC 4648, section 4), or to base64Invalid.
const base64DecodeTable = "" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x3e\xff\xff\xff\x3f" +
	"\x34\x35\x36\x37\x38\x39\x3a\x3b\x3c\x3d\xff\xff\xff\xff\xff\xff" +
	"\xff\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e" +
	"\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\xff\xff\xff\xff\xff" +
	"\xff\x1a\x1b\x1c\x1d\x1e\x1f\x20\x21\x22\x23\x24\x25\x26\x27\x28" +
	"\x29\x2a\x2b\x2c\x2d\x2e\x2f\x30\x31\x32\x33\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"

// decodeBase64 decodes s, standard base64 with padding, into dst, which
// must hold at least len(s)/4*3 bytes, and returns the number of bytes
// written and whether s was valid (if not, dst holds garbage). It is as
// strict as encoding/base64's StdEncoding.Strict() and stricter in one
// way: line breaks, which encoding/base64 skips, are refused like any
// other character outside the alphabet. It takes a string, so decoding a
// received line needs no copy of it as a []byte.
func decodeBase64(dst []byte, s string) (int, bool) {
	if len(s) == 0 || len(s)%4 != 0 || len(dst) < len(s)/4*3 {
		return 0, false
	}
	n := 0
	// Two quanta at a time, written as one 64-bit store (its last two
	// bytes are overwritten next or lie beyond the result), keeping the
	// last quantum, which may be padded, for below. Slicing s and dst as
	// they are consumed keeps the loop's state in registers.
	for len(s) > 8+4 && len(dst) >= 8 {
		q := s[:8]
		a, b, c, d := base64DecodeTable[q[0]], base64DecodeTable[q[1]], base64DecodeTable[q[2]], base64DecodeTable[q[3]]
		e, f, g, h := base64DecodeTable[q[4]], base64DecodeTable[q[5]], base64DecodeTable[q[6]], base64DecodeTable[q[7]]
		if (a|b|c|d|e|f|g|h)&0xc0 != 0 {
			return 0, false
		}
		binary.BigEndian.PutUint64(dst, uint64(a)<<58|uint64(b)<<52|uint64(c)<<46|uint64(d)<<40|
			uint64(e)<<34|uint64(f)<<28|uint64(g)<<22|uint64(h)<<16)
		s, dst, n = s[8:], dst[6:], n+6
	}
	for len(s) > 4 {
		q := s[:4]
		a, b, c, d := base64DecodeTable[q[0]], base64DecodeTable[q[1]], base64DecodeTable[q[2]], base64DecodeTable[q[3]]
		if (a|b|c|d)&0xc0 != 0 {
			return 0, false
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst[0], dst[1], dst[2] = byte(v>>16), byte(v>>8), byte(v)
		s, dst, n = s[4:], dst[3:], n+3
	}
	// The last quantum, with its padding.
	q := s[:4]
	a, b := base64DecodeTable[q[0]], base64DecodeTable[q[1]]
	if (a|b)&0xc0 != 0 {
		return 0, false
	}
	switch {
	case q[2] == '=' && q[3] == '=':
		if b&0x0f != 0 { // strict: the unused bits are zero
			return 0, false
		}
		dst[0] = a<<2 | b>>4
		return n + 1, true
	case q[3] == '=':
		c := base64DecodeTable[q[2]]
		if c&0xc0 != 0 || c&0x03 != 0 {
			return 0, false
		}
		dst[0], dst[1] = a<<2|b>>4, b<<4|c>>2
		return n + 2, true
	}
	c, d := base64DecodeTable[q[2]], base64DecodeTable[q[3]]
	if (c|d)&0xc0 != 0 {
		return 0, false
	}
	dst[0], dst[1], dst[2] = a<<2|b>>4, b<<4|c>>2, c<<6|d
	return n + 3, true
}
