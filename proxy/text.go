package proxy

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"otrbnc/proxy/config"
)

// Fragment size bounds (bytes of one OTR message line, header included).
const (
	// fragmentMargin is subtracted from the computed room for safety
	// (servers that add a byte or two, a host change we have not seen yet).
	fragmentMargin = 10
	// Lengths assumed for the parts of our prefix we do not know yet:
	// USERLEN 10 plus "~", HOSTLEN 63.
	unknownUserLen = 11
	unknownHostLen = 63
)

// fragmentSize returns the largest OTR fragment that a PRIVMSG from
// nick!user@host to peer can carry once the server has added our prefix:
// 512 − len(":nick!user@host PRIVMSG peer :" CRLF) − margin, clamped to
// [config.MinFragmentSize, config.MaxFragmentSize]. Unknown user or host (empty) count
// as their maximum length.
func fragmentSize(nick, user, host, peer string) int {
	u, h := len(user), len(host)
	if u == 0 {
		u = unknownUserLen
	}
	if h == 0 {
		h = unknownHostLen
	}
	// ":" nick "!" user "@" host " PRIVMSG " peer " :" payload "\r\n"
	fixed := 1 + len(nick) + 1 + u + 1 + h + len(" PRIVMSG ") + len(peer) + len(" :") + 2
	n := 512 - fixed - fragmentMargin
	if n < config.MinFragmentSize {
		n = config.MinFragmentSize
	}
	if n > config.MaxFragmentSize {
		n = config.MaxFragmentSize
	}
	return n
}

// CTCP helpers. A CTCP message is \x01COMMAND[ params]\x01; the closing
// \x01 is optional in practice.

// parseCTCP splits a CTCP message; ok is false for ordinary text.
func parseCTCP(text string) (cmd, params string, ok bool) {
	if len(text) < 2 || text[0] != '\x01' {
		return "", "", false
	}
	body := strings.TrimSuffix(text[1:], "\x01")
	cmd, params, _ = strings.Cut(body, " ")
	if cmd == "" {
		return "", "", false
	}
	return strings.ToUpper(cmd), params, true
}

// actionToOTR turns an outgoing CTCP ACTION into the "/me …" plaintext
// convention used inside OTR; ok is false for other text.
func actionToOTR(text string) (string, bool) {
	cmd, params, ok := parseCTCP(text)
	if !ok || cmd != "ACTION" {
		return "", false
	}
	return "/me " + params, true
}

// fromOTRText classifies decrypted text: "/me x" and a literal CTCP ACTION
// become an action with body x; anything else is plain text with CTCP
// delimiters removed so a peer cannot smuggle other CTCP requests inside
// OTR.
func fromOTRText(text string) (body string, action bool) {
	if rest, ok := strings.CutPrefix(text, "/me "); ok {
		return stripBytes(rest, "\x01"), true
	}
	if text == "/me" {
		return "", true
	}
	if cmd, params, ok := parseCTCP(text); ok && cmd == "ACTION" {
		return stripBytes(params, "\x01"), true
	}
	return stripBytes(text, "\x01"), false
}

// ctcpAction wraps body as a CTCP ACTION.
func ctcpAction(body string) string { return "\x01ACTION " + body + "\x01" }

// neutralize removes what could disguise or fake a marker in front of
// peer-controlled text: IRC formatting codes (bold, colour, reset, reverse,
// italics, strike, underline, monospace, hex colour), other C0 controls
// and Unicode bidi/invisible format characters. Invalid UTF-8 is replaced.
func neutralize(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\x03': // colour: \x03[fg[,bg]] with 1-2 digits each
			i += size
			j := skipDigits(s, i, 2)
			if j > i && j+1 < len(s) && s[j] == ',' && isDigit(s[j+1]) {
				j = skipDigits(s, j+1, 2)
			}
			i = j
			continue
		case r == '\x04': // hex colour: \x04[RRGGBB[,RRGGBB]]
			i += size
			j := skipHex(s, i, 6)
			if j > i && j+1 < len(s) && s[j] == ',' && isHex(s[j+1]) {
				j = skipHex(s, j+1, 6)
			}
			i = j
			continue
		case r < 0x20 || r == 0x7f:
			// formatting codes and other controls, including \x01
		case isInvisibleFormat(r):
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func skipDigits(s string, i, max int) int {
	for n := 0; n < max && i < len(s) && isDigit(s[i]); n++ {
		i++
	}
	return i
}

func skipHex(s string, i, max int) int {
	for n := 0; n < max && i < len(s) && isHex(s[i]); n++ {
		i++
	}
	return i
}

// defuseAction keeps a peer's action from looking like otrbnc's own
// lines in the conversation window: HexChat shows numeric 404 about bob as
// "* bob :text", exactly like an action from bob whose text starts with a
// colon (only the colour of the asterisk differs). An action whose first
// visible character is a colon or looks like one gets "· " in front.
func defuseAction(text string) string {
	visible := strings.TrimLeftFunc(neutralize(text), unicode.IsSpace)
	r, _ := utf8.DecodeRuneInString(visible)
	switch r {
	case ':', '\uFF1A', '\u2236', '\uA789', '\u02D0', '\u02F8', '\u0589', '\u05C3', '\u0703', '\u0704', '\u16EC', '\uFE13', '\uFE30', '\uFE55', '\u1361', '\u205A', '\u2982', '\u1803', '\u1809':
		return "· " + text
	}
	return text
}

// isInvisibleFormat reports bidi controls and zero-width characters that
// could reorder or hide text around a marker.
func isInvisibleFormat(r rune) bool {
	switch {
	case r >= 0x200B && r <= 0x200F, // zero-width space/joiners, LRM, RLM
		r >= 0x202A && r <= 0x202E, // embeddings and overrides
		r >= 0x2066 && r <= 0x2069, // isolates
		r == 0x061C, r == 0xFEFF, r == 0x2060:
		return true
	}
	return false
}

// splitText cuts decrypted text into pieces of at most max bytes for
// client lines: at newlines first, then at UTF-8 boundaries (preferring a
// space in the second half of the piece). CR and NUL are removed and
// invalid UTF-8 is replaced. Empty lines are dropped; an entirely empty
// text yields one empty piece so that nothing vanishes.
func splitText(text string, max int) []string {
	if max < 4 {
		max = 4
	}
	text = strings.ToValidUTF8(text, "\uFFFD")
	if strings.ContainsAny(text, "\r\x00") {
		text = stripBytes(text, "\r\x00")
	}
	if len(text) <= max && strings.IndexByte(text, '\n') < 0 {
		if text == "" {
			return []string{""}
		}
		return []string{text}
	}
	var out []string
	for _, line := range strings.Split(text, "\n") {
		for len(line) > max {
			cut := max
			for cut > 0 && !utf8.RuneStart(line[cut]) {
				cut--
			}
			if sp := strings.LastIndexByte(line[:cut], ' '); sp >= cut/2 {
				cut = sp + 1
			}
			out = append(out, line[:cut])
			line = line[cut:]
		}
		if line != "" {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		out = append(out, "")
	}
	return out
}

// channelSigils are the only characters that may start a channel name,
// whatever the network announces: a server that claimed letters as
// channel types could otherwise turn private messages into channel
// messages, which travel in clear (docs/security.md). statusSigils may
// precede a channel (STATUSMSG: "@#chan" reaches its operators).
const (
	channelSigils = "#&+!"
	statusSigils  = "~&@%+"
)

// keepChars returns the characters of s that are in allowed, once each.
func keepChars(s, allowed string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(allowed, s[i]) >= 0 && strings.IndexByte(b.String(), s[i]) < 0 {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// isChannel reports whether target names a channel, possibly behind
// STATUSMSG prefixes, given the network's CHANTYPES and STATUSMSG as
// filtered by keepChars (real sigils only).
func isChannel(target, chantypes, statusmsg string) bool {
	for len(target) > 1 && strings.IndexByte(statusmsg, target[0]) >= 0 && strings.IndexByte(chantypes, target[0]) < 0 {
		target = target[1:]
	}
	return target != "" && strings.IndexByte(chantypes, target[0]) >= 0
}

// casemapping folds nicks per the network's CASEMAPPING ISUPPORT token.
type casemapping int

const (
	caseRFC1459 casemapping = iota
	caseASCII
	caseStrictRFC1459
)

func parseCasemapping(s string) casemapping {
	switch strings.ToLower(s) {
	case "ascii":
		return caseASCII
	case "strict-rfc1459":
		return caseStrictRFC1459
	}
	return caseRFC1459
}

// FoldNick case-folds nick as otrbnc does for a network whose CASEMAPPING
// ISUPPORT token is casemapping ("rfc1459", the default for anything
// unknown, "strict-rfc1459" or "ascii"). Conversations, trust and settings
// are keyed by folded nicks, so tools that write them must fold alike.
func FoldNick(casemapping, nick string) string {
	return parseCasemapping(casemapping).fold(nick)
}

// fold returns the case-folded form of name.
func (cm casemapping) fold(name string) string {
	i := 0
	for i < len(name) && !cm.folds(name[i]) {
		i++
	}
	if i == len(name) {
		return name // already folded: no copy
	}
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 32
		case cm != caseASCII && c >= '[' && c <= ']':
			b[i] = c + 32 // [\] → {|}
		case cm == caseRFC1459 && c == '~':
			b[i] = '^'
		}
	}
	return string(b)
}

// folds reports whether fold changes byte c.
func (cm casemapping) folds(c byte) bool {
	return c >= 'A' && c <= 'Z' || cm != caseASCII && c >= '[' && c <= ']' || cm == caseRFC1459 && c == '~'
}
