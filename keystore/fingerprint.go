package keystore

import (
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// A Fingerprint identifies an OTR long-term public key: the SHA-1 hash over
// the key's OTR PUBKEY serialization without its type field, that is over
// MPI(p) ‖ MPI(q) ‖ MPI(g) ‖ MPI(y), where an MPI is a 4-byte big-endian
// length followed by the minimal big-endian magnitude.
//
// Fingerprint's underlying type is [20]byte, so values of either type can
// be assigned to the other without conversion.
type Fingerprint [20]byte

// FingerprintOf returns the OTR fingerprint of pub.
func FingerprintOf(pub *dsa.PublicKey) Fingerprint {
	h := sha1.New()
	for _, n := range []*big.Int{pub.P, pub.Q, pub.G, pub.Y} {
		b := n.Bytes()
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(b)))
		h.Write(l[:])
		h.Write(b)
	}
	var fp Fingerprint
	h.Sum(fp[:0])
	return fp
}

// String returns the human-readable form used by OTR clients: five groups of
// eight uppercase hexadecimal digits separated by spaces.
func (fp Fingerprint) String() string {
	const digits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(44)
	for i, c := range fp {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&0xf])
	}
	return b.String()
}

// Hex returns fp as 40 lowercase hexadecimal digits, the form libotr stores.
func (fp Fingerprint) Hex() string {
	return hex.EncodeToString(fp[:])
}

// errFingerprintSyntax is wrapped by ParseFingerprint's errors.
var errFingerprintSyntax = errors.New("want 40 hexadecimal digits, optionally in groups separated by spaces")

// ParseFingerprint parses a fingerprint written as 40 hexadecimal digits of
// either case. Spaces and tabs between digits, as in the human-readable form
// returned by String, are ignored.
func ParseFingerprint(s string) (Fingerprint, error) {
	var fp Fingerprint
	digits := make([]byte, 0, 40)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			continue
		case len(digits) == 40:
			return fp, fmt.Errorf("keystore: invalid fingerprint %q: %w", s, errFingerprintSyntax)
		}
		digits = append(digits, c)
	}
	if len(digits) != 40 {
		return fp, fmt.Errorf("keystore: invalid fingerprint %q: %w", s, errFingerprintSyntax)
	}
	if _, err := hex.Decode(fp[:], digits); err != nil {
		return Fingerprint{}, fmt.Errorf("keystore: invalid fingerprint %q: %w", s, errFingerprintSyntax)
	}
	return fp, nil
}
