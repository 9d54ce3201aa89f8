package keystore

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
)

// This file reads and writes the subset of SPKI/libgcrypt S-expressions that
// libotr's private key files use. The reader accepts every atom encoding
// libgcrypt's reader accepts in practice:
//
//   - tokens: letters, digits and -./_:*+= not starting with a digit;
//   - hexadecimal: #0A1b# (whitespace between digits is ignored);
//   - quoted strings: "..." with the escapes \b \t \v \n \f \r \" \' \\,
//     \xHH, three-digit octal \NNN and backslash-newline continuations;
//     other bytes, including raw binary, stand for themselves;
//   - verbatim: N:bytes, where N is a decimal length;
//   - base64: |...| (whitespace ignored);
//   - a decimal length before "...", #...# or |...|, which must then match;
//   - a display hint [atom] before an atom, which is discarded.

// maxSexpDepth bounds list nesting; libotr's files nest five levels deep.
const maxSexpDepth = 64

// sexp is a parsed S-expression: an atom or a list.
type sexp struct {
	isList bool
	atom   []byte
	list   []*sexp
	binary bool // write atom in hexadecimal; set only when building output
}

// sexpParser holds the parsing position.
type sexpParser struct {
	data []byte
	pos  int
}

// parseSexp parses exactly one S-expression from data, allowing surrounding
// whitespace only.
func parseSexp(data []byte) (*sexp, error) {
	p := &sexpParser{data: data}
	p.skipSpace()
	if p.pos == len(p.data) {
		return nil, p.errorf("empty input")
	}
	e, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.errorf("unexpected data after the S-expression")
	}
	return e, nil
}

func (p *sexpParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: S-expression at byte %d: %s", ErrLibotrFormat, p.pos, fmt.Sprintf(format, args...))
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c):
		return true
	}
	switch c {
	case '-', '.', '/', '_', ':', '*', '+', '=':
		return true
	}
	return false
}

func (p *sexpParser) skipSpace() {
	for p.pos < len(p.data) && isSpace(p.data[p.pos]) {
		p.pos++
	}
}

// value parses a list or an atom starting at p.pos.
func (p *sexpParser) value(depth int) (*sexp, error) {
	if p.pos >= len(p.data) {
		return nil, p.errorf("unexpected end of input")
	}
	switch p.data[p.pos] {
	case '(':
		if depth >= maxSexpDepth {
			return nil, p.errorf("nested more than %d levels deep", maxSexpDepth)
		}
		p.pos++
		l := &sexp{isList: true}
		for {
			p.skipSpace()
			if p.pos >= len(p.data) {
				return nil, p.errorf("unterminated list")
			}
			if p.data[p.pos] == ')' {
				p.pos++
				return l, nil
			}
			e, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			l.list = append(l.list, e)
		}
	case ')':
		return nil, p.errorf("unexpected ')'")
	case '[':
		p.pos++
		p.skipSpace()
		if _, err := p.atom(); err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ']' {
			return nil, p.errorf("unterminated display hint")
		}
		p.pos++
		p.skipSpace()
		a, err := p.atom()
		if err != nil {
			return nil, err
		}
		return &sexp{atom: a}, nil
	}
	a, err := p.atom()
	if err != nil {
		return nil, err
	}
	return &sexp{atom: a}, nil
}

// atom parses an atom in any encoding starting at p.pos.
func (p *sexpParser) atom() ([]byte, error) {
	if p.pos >= len(p.data) {
		return nil, p.errorf("unexpected end of input")
	}
	c := p.data[p.pos]
	switch {
	case c == '#':
		return p.hexAtom()
	case c == '|':
		return p.base64Atom()
	case c == '"':
		return p.quotedAtom()
	case isDigit(c):
		return p.lengthAtom()
	case isTokenChar(c):
		start := p.pos
		for p.pos < len(p.data) && isTokenChar(p.data[p.pos]) {
			p.pos++
		}
		return bytes.Clone(p.data[start:p.pos]), nil
	}
	return nil, p.errorf("unexpected character %q", c)
}

// lengthAtom parses N:bytes, or a length-prefixed quoted, hex or base64 atom.
func (p *sexpParser) lengthAtom() ([]byte, error) {
	start := p.pos
	for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
		p.pos++
		if p.pos-start > 9 {
			return nil, p.errorf("length prefix too long")
		}
	}
	n, _ := strconv.Atoi(string(p.data[start:p.pos]))
	if p.pos >= len(p.data) {
		return nil, p.errorf("unexpected end of input after length prefix")
	}
	var (
		a   []byte
		err error
	)
	switch p.data[p.pos] {
	case ':':
		p.pos++
		if n > len(p.data)-p.pos {
			return nil, p.errorf("length prefix %d exceeds the remaining input", n)
		}
		a = bytes.Clone(p.data[p.pos : p.pos+n])
		p.pos += n
		return a, nil
	case '"':
		a, err = p.quotedAtom()
	case '#':
		a, err = p.hexAtom()
	case '|':
		a, err = p.base64Atom()
	default:
		return nil, p.errorf("unexpected character %q after length prefix", p.data[p.pos])
	}
	if err != nil {
		return nil, err
	}
	if len(a) != n {
		return nil, p.errorf("atom has %d bytes but its length prefix says %d", len(a), n)
	}
	return a, nil
}

// delimited returns the bytes between the delimiter at p.pos and the next
// occurrence of the same delimiter, with whitespace removed.
func (p *sexpParser) delimited(what string) ([]byte, error) {
	d := p.data[p.pos]
	end := bytes.IndexByte(p.data[p.pos+1:], d)
	if end < 0 {
		return nil, p.errorf("unterminated %s atom", what)
	}
	body := p.data[p.pos+1 : p.pos+1+end]
	out := make([]byte, 0, len(body))
	for _, c := range body {
		if !isSpace(c) {
			out = append(out, c)
		}
	}
	p.pos += end + 2
	return out, nil
}

func (p *sexpParser) hexAtom() ([]byte, error) {
	start := p.pos
	digits, err := p.delimited("hexadecimal")
	if err != nil {
		return nil, err
	}
	out := make([]byte, hex.DecodedLen(len(digits)))
	if len(digits)%2 != 0 {
		p.pos = start
		return nil, p.errorf("odd number of hexadecimal digits")
	}
	if _, err := hex.Decode(out, digits); err != nil {
		p.pos = start
		return nil, p.errorf("invalid hexadecimal atom")
	}
	return out, nil
}

func (p *sexpParser) base64Atom() ([]byte, error) {
	start := p.pos
	text, err := p.delimited("base64")
	if err != nil {
		return nil, err
	}
	enc := base64.StdEncoding
	if len(text)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	out, err := enc.Strict().DecodeString(string(text))
	if err != nil {
		p.pos = start
		return nil, p.errorf("invalid base64 atom")
	}
	return out, nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func (p *sexpParser) quotedAtom() ([]byte, error) {
	p.pos++ // opening quote
	var out []byte
	for {
		if p.pos >= len(p.data) {
			return nil, p.errorf("unterminated quoted string")
		}
		c := p.data[p.pos]
		p.pos++
		switch c {
		case '"':
			if out == nil {
				out = []byte{}
			}
			return out, nil
		case '\\':
		default:
			out = append(out, c)
			continue
		}
		if p.pos >= len(p.data) {
			return nil, p.errorf("unterminated escape in quoted string")
		}
		e := p.data[p.pos]
		p.pos++
		switch e {
		case 'b':
			out = append(out, '\b')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'n':
			out = append(out, '\n')
		case 'f':
			out = append(out, '\f')
		case 'r':
			out = append(out, '\r')
		case '"', '\'', '\\':
			out = append(out, e)
		case '\n', '\r':
			// Line continuation: a backslash before a line break, which may
			// be followed by the other line-break character.
			if p.pos < len(p.data) && (p.data[p.pos] == '\n' || p.data[p.pos] == '\r') && p.data[p.pos] != e {
				p.pos++
			}
		case 'x':
			if len(p.data)-p.pos < 2 {
				return nil, p.errorf("truncated \\x escape")
			}
			hi, ok1 := hexVal(p.data[p.pos])
			lo, ok2 := hexVal(p.data[p.pos+1])
			if !ok1 || !ok2 {
				return nil, p.errorf("invalid \\x escape")
			}
			out = append(out, hi<<4|lo)
			p.pos += 2
		case '0', '1', '2', '3':
			if len(p.data)-p.pos < 2 {
				return nil, p.errorf("truncated octal escape")
			}
			d1, d2 := p.data[p.pos], p.data[p.pos+1]
			if d1 < '0' || d1 > '7' || d2 < '0' || d2 > '7' {
				return nil, p.errorf("invalid octal escape")
			}
			out = append(out, (e-'0')<<6|(d1-'0')<<3|(d2-'0'))
			p.pos += 2
		default:
			p.pos -= 2
			return nil, p.errorf("invalid escape \\%c in quoted string", e)
		}
	}
}

// validToken reports whether a can be written as a bare token.
func validToken(a []byte) bool {
	if len(a) == 0 || isDigit(a[0]) {
		return false
	}
	for _, c := range a {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

// appendQuoted appends a as a quoted string in libgcrypt's style.
func appendQuoted(b, a []byte) []byte {
	b = append(b, '"')
	for _, c := range a {
		switch c {
		case '\b':
			b = append(b, `\b`...)
		case '\t':
			b = append(b, `\t`...)
		case '\v':
			b = append(b, `\v`...)
		case '\n':
			b = append(b, `\n`...)
		case '\f':
			b = append(b, `\f`...)
		case '\r':
			b = append(b, `\r`...)
		case '"':
			b = append(b, `\"`...)
		case '\\':
			b = append(b, `\\`...)
		default:
			if c < 0x20 || (c >= 0x7f && c <= 0xa0) {
				b = append(b, fmt.Sprintf(`\x%02X`, c)...)
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}

// appendHex appends a as an uppercase #hex# atom.
func appendHex(b, a []byte) []byte {
	b = append(b, '#')
	b = append(b, bytes.ToUpper([]byte(hex.EncodeToString(a)))...)
	return append(b, '#')
}

// appendSexp appends e in an indented text form that libgcrypt reads: binary
// atoms and atoms that do not look like text are hexadecimal, valid tokens are
// bare, and other text is quoted.
func appendSexp(b []byte, e *sexp, indent int) []byte {
	if !e.isList {
		switch {
		case e.binary:
			return appendHex(b, e.atom)
		case validToken(e.atom):
			return append(b, e.atom...)
		case isText(e.atom):
			return appendQuoted(b, e.atom)
		default:
			return appendHex(b, e.atom)
		}
	}
	b = append(b, '(')
	nested := false
	for i, c := range e.list {
		if c.isList {
			nested = true
			b = append(b, '\n')
			b = append(b, bytes.Repeat([]byte{' '}, indent+1)...)
		} else if i > 0 {
			b = append(b, ' ')
		}
		b = appendSexp(b, c, indent+1)
	}
	if nested {
		b = append(b, '\n')
		b = append(b, bytes.Repeat([]byte{' '}, indent)...)
	}
	return append(b, ')')
}

// isText reports whether a is reasonable to write as a quoted string: it
// contains no NUL bytes and no more than a few other control bytes.
func isText(a []byte) bool {
	ctl := 0
	for _, c := range a {
		if c == 0 {
			return false
		}
		if c < 0x20 || c == 0x7f {
			ctl++
		}
	}
	return ctl*4 <= len(a)
}
