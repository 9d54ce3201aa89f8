package otrcore

import (
	"errors"
	"fmt"
	"strings"
)

// versionSet is a set of OTR protocol versions this package can speak (2
// and 3). Version 1 is recognised in queries and tags but never included.
type versionSet uint8

// Members of a versionSet.
const (
	versionSetV2 versionSet = 1 << iota
	versionSetV3
)

// versionBit returns the set holding only v, or the empty set when v is
// not 2 or 3.
func versionBit(v uint16) versionSet {
	switch v {
	case protocolV2:
		return versionSetV2
	case protocolV3:
		return versionSetV3
	}
	return 0
}

// has reports whether v is in the set.
func (s versionSet) has(v uint16) bool {
	b := versionBit(v)
	return b != 0 && s&b != 0
}

// best returns the highest version in the set, or 0 when it is empty.
func (s versionSet) best() uint16 {
	switch {
	case s&versionSetV3 != 0:
		return protocolV3
	case s&versionSetV2 != 0:
		return protocolV2
	}
	return 0
}

// queryPrefix starts every OTR Query Message.
const queryPrefix = "?OTR"

// errQuery reports a query message whose version list holds a control
// character: it starts like a query but is no valid one.
var errQuery = errors.New("otrcore: broken query message")

// parseQuery recognises an OTR Query Message ("?OTR?" for version 1,
// "?OTRv23?", "?OTR?v2?", …) and returns the versions 2 and 3 it offers.
//
// Like libotr, the query is detected anywhere in the line (queries are
// often preceded by a client's own text) and the first "?OTR?" or "?OTRv"
// found counts. Version characters are read only up to the closing '?';
// the run also ends at whitespace or the end of the text, which libotr
// accepts as a query as well. Unknown version characters ("4", "x") are
// ignored. "?OTR?" alone and "?OTR?v?" are version 1 only, which is never
// spoken: ok is true but the set is empty. A control character in the
// version run makes the query broken: ok is true and err wraps errQuery.
func parseQuery(text string) (versions versionSet, ok bool, err error) {
	for off := 0; ; {
		i := strings.Index(text[off:], queryPrefix)
		if i < 0 {
			return 0, false, nil
		}
		rest := text[off+i+len(queryPrefix):]
		if strings.HasPrefix(rest, "?") {
			// Version 1; an optional "v…?" list may follow.
			rest = rest[1:]
			ok = true
		}
		if strings.HasPrefix(rest, "v") {
			ok = true
		versions:
			for j := 1; j < len(rest); j++ {
				switch c := rest[j]; {
				case c == '2':
					versions |= versionSetV2
				case c == '3':
					versions |= versionSetV3
				case c == '?', c == ' ', c == '\t', c == '\r', c == '\n':
					break versions
				case c < 0x20 || c == 0x7f:
					return 0, true, fmt.Errorf("%w: control character %#02x in the version list", errQuery, c)
				}
			}
		}
		if ok {
			return versions, true, nil
		}
		off += i + 1
	}
}

// queryMessage builds a single-line Query Message offering versions,
// followed by text (if any) with CR, LF and NUL replaced by spaces. libotr's
// default query has a newline and HTML, which IRC clients split into two
// messages; this one is always one line.
func queryMessage(versions versionSet, text string) string {
	var sb strings.Builder
	sb.WriteString(queryPrefix + "v")
	if versions.has(protocolV2) {
		sb.WriteByte('2')
	}
	if versions.has(protocolV3) {
		sb.WriteByte('3')
	}
	sb.WriteByte('?')
	if text != "" {
		sb.WriteByte(' ')
		sb.WriteString(oneLine(text))
	}
	return sb.String()
}

// Whitespace tag components (spec "Tagged plaintext messages"): the
// 16-byte base, then 8-byte version markers. The v1 marker is recognised
// but never sent.
const (
	wsTagBase = " \t  \t\t\t\t \t \t \t  "
	wsTagV1   = " \t \t  \t "
	wsTagV2   = "  \t\t  \t "
	wsTagV3   = "  \t\t  \t\t"
	wsTagLen  = 8
)

// whitespaceTag returns the whitespace tag advertising versions (never
// v1), or "" when the set is empty.
func whitespaceTag(versions versionSet) string {
	if versions&(versionSetV2|versionSetV3) == 0 {
		return ""
	}
	tag := wsTagBase
	if versions.has(protocolV2) {
		tag += wsTagV2
	}
	if versions.has(protocolV3) {
		tag += wsTagV3
	}
	return tag
}

// findWhitespaceTag finds a whitespace tag anywhere in text (the spec
// allows any position, and IRC servers strip trailing whitespace, so a peer
// may put it at the start) and returns the versions it offers and text
// with the tag removed.
//
// The tag is the base followed by consecutive 8-byte markers. Known
// markers (v1, v2, v3) are consumed; so is any other 8-byte run made only
// of spaces and tabs that contains a tab, so that a future version's
// marker is stripped too. Scanning stops at the first other run, so text
// after the tag is left intact. found is true whenever the base is present,
// even if no usable version follows; only the first tag is processed.
func findWhitespaceTag(text string) (versions versionSet, stripped string, found bool) {
	i := strings.Index(text, wsTagBase)
	if i < 0 {
		return 0, text, false
	}
	end := i + len(wsTagBase)
	for end+wsTagLen <= len(text) {
		m := text[end : end+wsTagLen]
		switch m {
		case wsTagV1:
		case wsTagV2:
			versions |= versionSetV2
		case wsTagV3:
			versions |= versionSetV3
		default:
			if !isUnknownWSMarker(m) {
				return versions, text[:i] + text[end:], true
			}
		}
		end += wsTagLen
	}
	return versions, text[:i] + text[end:], true
}

// isUnknownWSMarker reports whether m could be a version marker: only
// spaces and tabs, with at least one tab.
func isUnknownWSMarker(m string) bool {
	tab := false
	for j := 0; j < len(m); j++ {
		switch m[j] {
		case '\t':
			tab = true
		case ' ':
		default:
			return false
		}
	}
	return tab
}
