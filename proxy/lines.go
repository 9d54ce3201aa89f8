package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/irc.v4"
)

// maxLineLen bounds one IRC line read from any peer: 512 bytes of message
// (CRLF included) plus the IRCv3 tag budget (8191 bytes, the older and
// larger limit, so that no compliant server is refused).
const maxLineLen = 512 + 8191

// errLineTooLong reports a line over the reader's limit; the line has been
// discarded and the reader can go on.
var errLineTooLong = errors.New("line too long")

// lineReader reads LF-terminated lines of at most max bytes from an
// io.Reader (TLS connections, pipes); the framing is lineBuffer's, the
// one the raw socket reader uses. irc.v4's Reader has no limit, so
// network input goes through this instead.
type lineReader struct {
	r   io.Reader
	lb  *lineBuffer
	err error // the reader's error, returned once the buffered lines are out
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: r, lb: newLineBuffer(max)}
}

// readLine returns the next line without its CR/LF. A line longer than the
// limit is consumed up to its LF and reported with errLineTooLong. At EOF a
// final unterminated line is dropped and io.EOF returned.
func (lr *lineReader) readLine() (string, error) {
	for {
		if line, tooLong, ok := lr.lb.next(); ok {
			if tooLong {
				return "", errLineTooLong
			}
			return line, nil
		}
		if lr.err != nil {
			return "", lr.err
		}
		n, err := lr.r.Read(lr.lb.space())
		lr.lb.wrote(n)
		lr.err = err
	}
}

// hasLine reports whether a whole line is buffered, so that readLine
// returns without reading from the connection.
func (lr *lineReader) hasLine() bool {
	return bytes.IndexByte(lr.lb.buf[lr.lb.r:lr.lb.w], '\n') >= 0
}

// lineBuffer frames IRC input, from bytes read into it by the caller
// (rawSocket.readLines, lineReader): lines of at most max bytes with their
// LF, longer ones discarded up to their LF and reported once; bytes after
// the last LF wait for more.
type lineBuffer struct {
	buf  []byte // max+1 bytes: a line of max bytes and the byte that shows it is longer
	r, w int    // unread bytes are buf[r:w]
	max  int
	// skipping discards an over-long line up to its LF.
	skipping bool
}

func newLineBuffer(max int) *lineBuffer {
	return &lineBuffer{buf: make([]byte, max+1), max: max}
}

// space returns where the next read goes (never empty: a full buffer
// without an LF is discarded by next).
func (lb *lineBuffer) space() []byte {
	if lb.r > 0 {
		lb.w = copy(lb.buf, lb.buf[lb.r:lb.w])
		lb.r = 0
	}
	return lb.buf[lb.w:]
}

// wrote records n bytes read into space().
func (lb *lineBuffer) wrote(n int) { lb.w += n }

// next returns the next whole line without its CR/LF (ok), or reports an
// over-long line discarded (tooLong); ok is false when no whole line is
// buffered.
func (lb *lineBuffer) next() (line string, tooLong, ok bool) {
	i := bytes.IndexByte(lb.buf[lb.r:lb.w], '\n')
	if lb.skipping {
		if i < 0 {
			lb.r, lb.w = 0, 0
			return "", false, false
		}
		lb.r += i + 1
		lb.skipping = false
		return "", true, true
	}
	if i < 0 {
		if lb.w-lb.r == len(lb.buf) { // full, and no LF: too long
			lb.r, lb.w = 0, 0
			lb.skipping = true
		}
		return "", false, false
	}
	b := lb.buf[lb.r : lb.r+i+1]
	lb.r += i + 1
	if len(b) > lb.max {
		return "", true, true
	}
	return strings.TrimRight(string(b), "\r\n"), false, true
}

// parseLine parses one IRC line. It never panics, whatever the input
// (irc.v4's parser indexes past the end of some malformed lines), and it
// rejects NUL and CR inside the line and commands that are neither a word
// nor a three-digit numeric.
func parseLine(line string) (msg *irc.Message, err error) {
	line = strings.TrimLeft(strings.TrimRight(line, "\r\n"), " ")
	if line == "" {
		return nil, irc.ErrZeroLengthMessage
	}
	if strings.ContainsAny(line, "\x00\r\n") {
		return nil, errors.New("irc: NUL, CR or LF inside a line")
	}
	rest := line
	if rest[0] == '@' {
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			return nil, irc.ErrMissingDataAfterTags
		}
		rest = strings.TrimLeft(rest[i+1:], " ")
		if rest == "" {
			return nil, irc.ErrMissingDataAfterTags
		}
	}
	if rest[0] == ':' {
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			return nil, irc.ErrMissingDataAfterPrefix
		}
		if strings.TrimLeft(rest[i+1:], " ") == "" {
			return nil, irc.ErrMissingCommand
		}
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("irc: unparsable line: %v", r)
		}
	}()
	msg, err = irc.ParseMessage(line)
	if err != nil {
		return nil, fmt.Errorf("parsing line: %w", err)
	}
	if !validCommand(msg.Command) {
		return nil, fmt.Errorf("irc: invalid command %q", msg.Command)
	}
	if msg.Prefix == nil {
		msg.Prefix = &irc.Prefix{}
	}
	return msg, nil
}

// validCommand reports whether cmd is a command name (letters) or a
// three-digit numeric.
func validCommand(cmd string) bool {
	if cmd == "" || len(cmd) > 32 {
		return false
	}
	if len(cmd) == 3 && isDigit(cmd[0]) && isDigit(cmd[1]) && isDigit(cmd[2]) {
		return true
	}
	for i := 0; i < len(cmd); i++ {
		if !(cmd[i] >= 'a' && cmd[i] <= 'z' || cmd[i] >= 'A' && cmd[i] <= 'Z') {
			return false
		}
	}
	return true
}

// formatMessage encodes m for the wire, without CRLF. Parameters that
// would break the framing lose their CR, LF and NUL bytes.
func formatMessage(m *irc.Message) string {
	for i, p := range m.Params {
		if strings.ContainsAny(p, "\x00\r\n") {
			m.Params[i] = stripBytes(p, "\x00\r\n")
		}
	}
	if len(m.Tags) > 0 {
		return m.String()
	}
	return formatUntagged(m)
}

// formatUntagged is irc.Message.String for a message without tags, byte
// for byte, in one allocation.
func formatUntagged(m *irc.Message) string {
	p := m.Prefix
	if p != nil && p.Name == "" {
		p = nil
	}
	size := len(m.Command)
	if p != nil {
		size += 2 + prefixLen(p)
	}
	for _, a := range m.Params {
		size += 2 + len(a)
	}
	var b strings.Builder
	b.Grow(size)
	if p != nil {
		b.WriteByte(':')
		writePrefix(&b, p)
		b.WriteByte(' ')
	}
	b.WriteString(m.Command)
	if len(m.Params) > 0 {
		for _, a := range m.Params[:len(m.Params)-1] {
			b.WriteByte(' ')
			b.WriteString(a)
		}
		trailing := m.Params[len(m.Params)-1]
		if trailing == "" || strings.IndexByte(trailing, ' ') >= 0 || trailing[0] == ':' {
			b.WriteString(" :")
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(trailing)
	}
	return b.String()
}

// prefixLen is len(p.String()).
func prefixLen(p *irc.Prefix) int {
	n := len(p.Name)
	if p.User != "" {
		n += 1 + len(p.User)
	}
	if p.Host != "" {
		n += 1 + len(p.Host)
	}
	return n
}

// writePrefix writes p as p.String() does.
func writePrefix(b *strings.Builder, p *irc.Prefix) {
	b.WriteString(p.Name)
	if p.User != "" {
		b.WriteByte('!')
		b.WriteString(p.User)
	}
	if p.Host != "" {
		b.WriteByte('@')
		b.WriteString(p.Host)
	}
}

// prefixReparses reports whether irc.ParsePrefix(p.String()) equals *p:
// true unless the name holds '!' or '@', or the user '@'.
func prefixReparses(p *irc.Prefix) bool {
	return strings.IndexAny(p.Name, "!@") < 0 && strings.IndexByte(p.User, '@') < 0
}

func stripBytes(s, cut string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(cut, r) {
			return -1
		}
		return r
	}, s)
}

// msg builds a message with a prefix name (may be empty).
func msg(prefix, cmd string, params ...string) *irc.Message {
	m := &irc.Message{Tags: irc.Tags{}, Prefix: &irc.Prefix{}, Command: cmd, Params: params}
	if prefix != "" {
		m.Prefix = irc.ParsePrefix(prefix)
	}
	return m
}
