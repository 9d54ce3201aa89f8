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
// base64 + ".". The text is encoded in chunks on the stack and written
// into a strings.Builder of the exact size: one allocation, no copy of
// the whole string.
func encodeEnvelope(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(envelopePrefix) + base64.StdEncoding.EncodedLen(len(b)) + len(envelopeSuffix))
	sb.WriteString(envelopePrefix)
	const chunkIn = 3 * 128 // a multiple of 3: only the last chunk is padded
	var chunk [chunkIn / 3 * 4]byte
	for len(b) > 0 {
		n := min(len(b), chunkIn)
		encodeBase64(chunk[:], b[:n])
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
	return decodeEnvelope(text, nil)
}

// decodeEnvelope is findEnvelope decoding into buf when it is large
// enough (the payload then aliases buf), else into a new buffer.
func decodeEnvelope(text string, buf []byte) (payload []byte, ok bool, err error) {
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
	// decodeBase64 is strict and, unlike encoding/base64, refuses line
	// breaks too; it decodes straight from the string.
	if need := len(rest) / 4 * 3; need <= len(buf) {
		payload = buf[:need]
	} else {
		payload = make([]byte, need)
	}
	n, valid := decodeBase64(payload, rest)
	if !valid {
		return nil, true, fmt.Errorf("%w: not strict, padded standard base64", errEnvelope)
	}
	return payload[:n], true, nil
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
