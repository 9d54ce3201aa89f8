package otrcore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fragment markers (spec "Fragmentation"). "?OTR|" must be checked before
// the other "?OTR" markers.
const (
	fragmentPrefixV3 = "?OTR|"
	fragmentPrefixV2 = "?OTR,"
)

// Fragmentation limits.
const (
	// maxFragments is the largest k and n: they are unsigned shorts.
	maxFragments = 65535
	// maxReassembled caps the size of a message being reassembled. An
	// encoded Reveal Signature is about 700 bytes and a data message
	// carrying a full IRC line a few kilobytes; libotr has no cap at all.
	maxReassembled = 64 * 1024
	// fragmentOverheadV3 is the length of "?OTR|%08x|%08x,%05d,%05d,"
	// plus the trailing ",".
	fragmentOverheadV3 = 36
	// fragmentOverheadV2 is the length of "?OTR,%05d,%05d," plus the
	// trailing ",".
	fragmentOverheadV2 = 18
	// maxFragmentNumberDigits bounds how many digits (leading zeros
	// included) k and n may have.
	maxFragmentNumberDigits = 10
)

var (
	// errFragment reports a line that starts like a fragment but does not
	// follow the format. Such a fragment is illegal and is to be discarded
	// without touching the reassembly state.
	errFragment = errors.New("otrcore: malformed fragment")

	// errFragmentTooLarge reports a reassembly that exceeded
	// maxReassembled; the buffer has been reset. The error returned is a
	// sizeError wrapping it and ErrTooLarge.
	errFragmentTooLarge = errors.New("otrcore: fragmented message too large")

	// errIllegalFragment reports a fragment the spec says to discard
	// (k == 0, n == 0 or k > n); the reassembly state is unchanged.
	errIllegalFragment = errors.New("otrcore: illegal fragment numbers")
)

// fragmentMessage splits msg into fragments of at most maxLen bytes each,
// in the format of the given protocol version (libotr's fixed-width
// "?OTR|%08x|%08x,%05d,%05d,piece," for v3, "?OTR,%05d,%05d,piece," for
// v2). When maxLen is 0 or msg already fits, it returns msg unchanged as
// the only element. Every piece is non-empty. It fails when maxLen leaves
// no room for at least one byte of payload, when more than 65535
// fragments would be needed, or when msg contains a comma (fragment pieces
// cannot; encoded messages never do).
func fragmentMessage(msg string, maxLen int, version uint16, senderTag, receiverTag uint32) ([]string, error) {
	if maxLen < 0 {
		return nil, fmt.Errorf("otrcore: fragment: negative maximum length %d", maxLen)
	}
	if maxLen == 0 || len(msg) <= maxLen {
		return []string{msg}, nil
	}
	var overhead int
	switch version {
	case protocolV3:
		overhead = fragmentOverheadV3
	case protocolV2:
		overhead = fragmentOverheadV2
	default:
		return nil, fmt.Errorf("otrcore: fragment: %w: version %d", errUnsupportedVersion, version)
	}
	if strings.IndexByte(msg, ',') >= 0 {
		return nil, errors.New("otrcore: fragment: message contains a comma")
	}
	pieceLen := maxLen - overhead
	if pieceLen < 1 {
		return nil, fmt.Errorf("otrcore: fragment: maximum length %d leaves no room for payload (overhead %d)", maxLen, overhead)
	}
	n := (len(msg) + pieceLen - 1) / pieceLen
	if n > maxFragments {
		return nil, fmt.Errorf("otrcore: fragment: message needs %d fragments, more than %d", n, maxFragments)
	}
	// All fragments are written into one buffer, which becomes one string
	// that the fragments slice: two allocations whatever n is.
	var sb strings.Builder
	sb.Grow(n * (overhead + pieceLen))
	ends := make([]int, n)
	var num [20]byte
	for k := 1; k <= n; k++ {
		start := (k - 1) * pieceLen
		end := min(start+pieceLen, len(msg))
		if version == protocolV3 {
			sb.WriteString(fragmentPrefixV3)
			sb.Write(appendPadded(num[:0], uint64(senderTag), 16, 8))
			sb.WriteByte('|')
			sb.Write(appendPadded(num[:0], uint64(receiverTag), 16, 8))
			sb.WriteByte(',')
		} else {
			sb.WriteString(fragmentPrefixV2)
		}
		sb.Write(appendPadded(num[:0], uint64(k), 10, 5))
		sb.WriteByte(',')
		sb.Write(appendPadded(num[:0], uint64(n), 10, 5))
		sb.WriteByte(',')
		sb.WriteString(msg[start:end])
		sb.WriteByte(',')
		ends[k-1] = sb.Len()
	}
	all := sb.String()
	out := make([]string, n)
	prev := 0
	for i, e := range ends {
		out[i] = all[prev:e]
		prev = e
	}
	return out, nil
}

// appendPadded appends v in the given base (lower-case digits),
// left-padded with zeros to width, as "%08x" and "%05d" would.
func appendPadded(dst []byte, v uint64, base, width int) []byte {
	var tmp [20]byte
	d := strconv.AppendUint(tmp[:0], v, base)
	for i := len(d); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

// fragmentPiece is one parsed fragment. senderTag and receiverTag are zero
// for version 2.
type fragmentPiece struct {
	version                uint16
	senderTag, receiverTag uint32
	k, n                   int
	piece                  string
}

// parseFragment parses a fragment.
//
// The marker must start the line. libotr searches for it anywhere, but
// every implementation sends fragments as whole messages, and accepting a
// marker in the middle would let ordinary text be taken for protocol data.
// Instance tags are 1 to 8 hex digits (either case; the full uint32 range),
// k and n are decimal with optional leading zeros and must satisfy
// 1 ≤ k ≤ n ≤ 65535, and the piece is non-empty, has no comma and is
// followed by ",". Only spaces and tabs may follow that final comma.
//
// ok reports whether line starts with a fragment marker; err is non-nil
// (wrapping errFragment) when it does but the fragment is malformed. The
// spec's answer to an illegal fragment is to discard it and keep the stored
// state.
func parseFragment(line string) (f fragmentPiece, ok bool, err error) {
	var rest string
	switch {
	case strings.HasPrefix(line, fragmentPrefixV3):
		f.version = protocolV3
		rest = line[len(fragmentPrefixV3):]
		var s, r uint32
		var good bool
		if s, rest, good = cutHexTag(rest, '|'); !good {
			return fragmentPiece{}, true, fmt.Errorf("%w: bad sender instance tag", errFragment)
		}
		if r, rest, good = cutHexTag(rest, ','); !good {
			return fragmentPiece{}, true, fmt.Errorf("%w: bad receiver instance tag", errFragment)
		}
		f.senderTag, f.receiverTag = s, r
	case strings.HasPrefix(line, fragmentPrefixV2):
		f.version = protocolV2
		rest = line[len(fragmentPrefixV2):]
	default:
		return fragmentPiece{}, false, nil
	}
	var good bool
	if f.k, rest, good = cutFragmentNumber(rest); !good {
		return fragmentPiece{}, true, fmt.Errorf("%w: bad fragment number", errFragment)
	}
	if f.n, rest, good = cutFragmentNumber(rest); !good {
		return fragmentPiece{}, true, fmt.Errorf("%w: bad fragment count", errFragment)
	}
	if f.k > f.n {
		return fragmentPiece{}, true, fmt.Errorf("%w: fragment %d of %d", errFragment, f.k, f.n)
	}
	end := strings.IndexByte(rest, ',')
	if end < 0 {
		return fragmentPiece{}, true, fmt.Errorf("%w: unterminated piece", errFragment)
	}
	if end == 0 {
		return fragmentPiece{}, true, fmt.Errorf("%w: empty piece", errFragment)
	}
	f.piece = rest[:end]
	if strings.TrimRight(rest[end+1:], " \t") != "" {
		return fragmentPiece{}, true, fmt.Errorf("%w: data after the final comma", errFragment)
	}
	return f, true, nil
}

// cutHexTag parses 1 to 8 hex digits followed by sep.
func cutHexTag(s string, sep byte) (uint32, string, bool) {
	i := strings.IndexByte(s, sep)
	if i < 1 || i > 8 {
		return 0, s, false
	}
	for j := 0; j < i; j++ {
		if !isHexDigit(s[j]) {
			return 0, s, false
		}
	}
	v, err := strconv.ParseUint(s[:i], 16, 32)
	if err != nil {
		return 0, s, false
	}
	return uint32(v), s[i+1:], true
}

// cutFragmentNumber parses a decimal k or n in 1..65535 (leading zeros
// allowed) followed by ",".
func cutFragmentNumber(s string) (int, string, bool) {
	i := strings.IndexByte(s, ',')
	if i < 1 || i > maxFragmentNumberDigits {
		return 0, s, false
	}
	v := 0
	for j := 0; j < i; j++ {
		c := s[j]
		if c < '0' || c > '9' {
			return 0, s, false
		}
		v = v*10 + int(c-'0')
	}
	if v < 1 || v > maxFragments {
		return 0, s, false
	}
	return v, s[i+1:], true
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// reassembler collects the fragments of one message from one remote
// instance, following the spec's "Receiving Fragments" rules. The zero
// value is empty and ready; it holds no memory between messages.
type reassembler struct {
	buf []byte // F
	k   uint16 // K
	n   uint16 // N
	// version and senderTag of the fragment that started the message: a
	// continuation from another version or sender resets the buffer.
	version   uint16
	senderTag uint32
	// last is when the caller last added a piece; a message left partial
	// for fragmentTimeout is forgotten (Conversation.Tick).
	last time.Time
}

// pending reports whether a partial message is stored.
func (r *reassembler) pending() bool { return r.n != 0 }

// reset forgets any stored fragment (F = "", K = N = 0). Call it on every
// unfragmented or non-OTR message from the same peer, as the spec requires.
func (r *reassembler) reset() {
	*r = reassembler{}
}

// add processes one parsed fragment:
//
//   - k == 0, n == 0, k > n or n > 65535: the fragment is discarded,
//     errIllegalFragment is returned and the state is unchanged;
//   - k == 1: the stored fragment is replaced by this one;
//   - n == N and k == K+1: the piece is appended (additionally, version
//     and sender tag must match those of the first fragment);
//   - otherwise: the stored fragment is forgotten.
//
// When K == N afterwards, the complete message is returned with complete
// set and the state is reset. If the reassembled message would exceed
// maxReassembled bytes, the state is reset and errFragmentTooLarge
// returned.
func (r *reassembler) add(f fragmentPiece) (msg string, complete bool, err error) {
	if f.k <= 0 || f.n <= 0 || f.k > f.n || f.n > maxFragments {
		return "", false, fmt.Errorf("%w: %d of %d", errIllegalFragment, f.k, f.n)
	}
	switch {
	case f.k == 1:
		// The buffer grows with the pieces received, never with the count
		// n the peer announces.
		r.reset()
		if err := r.appendPiece(f.piece, f.n-f.k); err != nil {
			return "", false, err
		}
		r.k, r.n = 1, uint16(f.n)
		r.version, r.senderTag = f.version, f.senderTag
	case r.n != 0 && f.n == int(r.n) && f.k == int(r.k)+1 &&
		f.version == r.version && f.senderTag == r.senderTag:
		if err := r.appendPiece(f.piece, f.n-f.k); err != nil {
			return "", false, err
		}
		r.k = uint16(f.k)
	default:
		r.reset()
		return "", false, nil
	}
	if r.k == r.n {
		msg = string(r.buf)
		r.reset()
		return msg, true, nil
	}
	return "", false, nil
}

// appendPiece appends p to the buffer, enforcing maxReassembled. more is
// the number of pieces still announced after p.
func (r *reassembler) appendPiece(p string, more int) error {
	size := len(r.buf) + len(p)
	if size > maxReassembled {
		r.reset()
		return &sizeError{size: size, limit: maxReassembled, what: "fragmented message", step: errFragmentTooLarge}
	}
	if size > cap(r.buf) {
		// Double, but no further than the announced pieces need if they
		// are the size of this one (so the last piece does not double the
		// buffer), and never past maxReassembled: the buffer holds at
		// most twice what was received.
		want := min(2*cap(r.buf), size+len(p)*more)
		b := make([]byte, len(r.buf), min(max(want, size), maxReassembled))
		copy(b, r.buf)
		r.buf = b
	}
	r.buf = append(r.buf, p...)
	return nil
}
