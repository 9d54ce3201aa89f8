package otrcore

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// envelopePrefix starts a base64-encoded binary OTR message; '.' ends it
// (spec "Encoded messages").
const (
	envelopePrefix = "?OTR:"
	envelopeSuffix = "."
)

// maxEncodedMessage bounds the base64 text of one encoded message, in
// characters. It is far above any legitimate message (a Reveal Signature
// is about 700 characters; reassembled fragments are capped lower still)
// and keeps a hostile peer from making us decode megabytes.
const maxEncodedMessage = 256 * 1024

// errEnvelope reports a "?OTR:" message whose payload cannot be decoded.
var errEnvelope = errors.New("otrcore: bad encoded message")

// encodeEnvelope wraps a binary message as "?OTR:" + standard padded
// base64 + ".".
func encodeEnvelope(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(envelopePrefix) + base64.StdEncoding.EncodedLen(len(b)) + len(envelopeSuffix))
	sb.WriteString(envelopePrefix)
	// Encode through a stack buffer in runs of whole 3-byte groups, so
	// only the last run is padded and the string is built in one
	// allocation.
	var chunk [1024]byte
	const run = len(chunk) / 4 * 3
	for len(b) > 0 {
		n := min(len(b), run)
		base64.StdEncoding.Encode(chunk[:], b[:n])
		sb.Write(chunk[:base64.StdEncoding.EncodedLen(n)])
		b = b[n:]
	}
	sb.WriteString(envelopeSuffix)
	return sb.String()
}

// findEnvelope looks for "?OTR:" anywhere in text (as libotr does; text
// before the marker is ignored) and decodes the base64 that follows it up
// to the first ".". A missing "." is tolerated and the rest of the string
// (less trailing whitespace) is used, as libotr does for data messages;
// anything after the "." is ignored. Once isolated, the base64 is decoded strictly: standard
// alphabet, correct padding, no embedded whitespace or other characters.
//
// ok reports whether the marker was found. err is non-nil when it was but
// the payload is empty, longer than maxEncodedMessage characters or not
// valid base64.
func findEnvelope(text string) (payload []byte, ok bool, err error) {
	i := strings.Index(text, envelopePrefix)
	if i < 0 {
		return nil, false, nil
	}
	rest := text[i+len(envelopePrefix):]
	// Look no further than the size cap for the terminator.
	window := rest
	if len(window) > maxEncodedMessage+1 {
		window = window[:maxEncodedMessage+1]
	}
	if end := strings.IndexByte(window, '.'); end >= 0 {
		rest = rest[:end]
	} else {
		rest = strings.TrimRight(rest, " \t\r\n")
	}
	if len(rest) > maxEncodedMessage {
		return nil, true, &sizeError{size: len(rest), limit: maxEncodedMessage, what: "encoded message", step: errEnvelope}
	}
	if rest == "" {
		return nil, true, fmt.Errorf("%w: empty", errEnvelope)
	}
	// The strict decoder rejects every character outside the alphabet
	// except CR and LF, which encoding/base64 always skips; refuse those
	// explicitly.
	if strings.IndexByte(rest, '\r') >= 0 || strings.IndexByte(rest, '\n') >= 0 {
		return nil, true, fmt.Errorf("%w: line break inside the encoded message", errEnvelope)
	}
	payload, err = base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, true, fmt.Errorf("%w: %w", errEnvelope, err)
	}
	return payload, true, nil
}

// errorPrefix marks an OTR Error Message.
const errorPrefix = "?OTR Error:"

// encodeError builds an OTR Error Message the way libotr does:
// "?OTR Error: " followed by the human-readable text. CR and LF in text
// are replaced by spaces so that the message stays one IRC line.
func encodeError(text string) string {
	return errorPrefix + " " + oneLine(text)
}

// parseError recognises an OTR Error Message and returns its text with
// surrounding whitespace removed.
//
// Unlike libotr, which treats "?OTR Error:" anywhere in a message as an
// error, the prefix must start the message. Error messages are
// unauthenticated and can trigger a new AKE (ERROR_START_AKE); matching
// anywhere would let a peer or an injector hide one inside ordinary text.
// OTRv4 adopted the same rule.
func parseError(text string) (msg string, ok bool) {
	rest, found := strings.CutPrefix(text, errorPrefix)
	if !found {
		return "", false
	}
	return strings.TrimSpace(rest), true
}

// oneLine replaces CR, LF and NUL by spaces, so that text can be sent as a
// single IRC message.
func oneLine(text string) string {
	if !strings.ContainsAny(text, "\r\n\x00") {
		return text
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '\r', '\n', 0:
			return ' '
		}
		return r
	}, text)
}
