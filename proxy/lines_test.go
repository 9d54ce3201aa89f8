package proxy

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"gopkg.in/irc.v4"
)

func TestLineReaderBounds(t *testing.T) {
	in := "short\r\n" + strings.Repeat("x", 100) + "\r\nnext\nlast-unterminated"
	lr := newLineReader(strings.NewReader(in), 50)
	want := []struct {
		line string
		err  error
	}{{"short", nil}, {"", errLineTooLong}, {"next", nil}, {"", io.EOF}}
	for i, w := range want {
		line, err := lr.readLine()
		if line != w.line || !errors.Is(err, w.err) {
			t.Fatalf("read %d = %q, %v; want %q, %v", i, line, err, w.line, w.err)
		}
	}
	// Exactly at the limit (LF included) is fine.
	lr = newLineReader(strings.NewReader(strings.Repeat("y", 49)+"\n"), 50)
	if line, err := lr.readLine(); err != nil || len(line) != 49 {
		t.Fatalf("line at the limit: %d, %v", len(line), err)
	}
}

func TestParseLineNeverPanics(t *testing.T) {
	for _, s := range lineSeeds {
		m, err := parseLine(s)
		if err == nil && (m.Command == "" || m.Prefix == nil) {
			t.Errorf("parseLine(%q) = %+v without error", s, m)
		}
	}
	if _, err := parseLine("@a "); err == nil {
		t.Error("tags without command accepted")
	}
	m, err := parseLine(":nick!user@host PRIVMSG bob :hello there")
	if err != nil || m.Prefix.Name != "nick" || m.Param(0) != "bob" || m.Trailing() != "hello there" {
		t.Errorf("parse: %+v %v", m, err)
	}
}

var lineSeeds = []string{
	"", "@", "@a", "@a ", "@a  ", "@a :", "@a :p", "@a :p ", ":", ": ", ":p", ":p ", ":p  ", " ",
	"PING", "PING :x", "@time=1 :n!u@h PRIVMSG #c :hi", "PRIVMSG a :\x00", "CMD a b c :d e",
	":n PRIVMSG bob :?OTR:AAMDabc.", "\r\n", "a\rb",
}

func FuzzLineReader(f *testing.F) {
	for _, s := range lineSeeds {
		f.Add([]byte(s+"\r\n"+s), 64)
	}
	f.Add(bytes.Repeat([]byte("z"), 300), 16)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 1 || max > 4096 {
			return
		}
		lr := newLineReader(bytes.NewReader(data), max)
		for range len(data) + 2 {
			line, err := lr.readLine()
			if err != nil {
				if errors.Is(err, errLineTooLong) {
					continue
				}
				return
			}
			if len(line) >= max || strings.ContainsAny(line, "\n") {
				t.Fatalf("line of %d bytes (max %d): %q", len(line), max, line)
			}
			parseLine(line)
		}
	})
}

func FuzzParseLine(f *testing.F) {
	for _, s := range lineSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseLine(s)
		if err != nil {
			return
		}
		if m.Command == "" || m.Prefix == nil {
			t.Fatalf("bad message from %q", s)
		}
		out := formatMessage(m)
		if strings.ContainsAny(out, "\r\n\x00") {
			t.Fatalf("formatted %q contains framing bytes", out)
		}
	})
}

func TestSplitText(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want []string
	}{
		{"hello", 10, []string{"hello"}},
		{"", 10, []string{""}},
		{"a\nb\r\n\nc", 10, []string{"a", "b", "c"}},
		{"aaaa bbbb cccc", 10, []string{"aaaa bbbb ", "cccc"}},
		{"ééééé", 5, []string{"éé", "éé", "é"}},
		{"bad\xffbyte", 20, []string{"bad\uFFFDbyte"}},
		{"nul\x00here", 20, []string{"nulhere"}},
	}
	for _, c := range cases {
		got := splitText(c.in, c.max)
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("splitText(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
}

func FuzzSplitText(f *testing.F) {
	f.Add("hello world", 5)
	f.Add("ééé\nx\xff\r", 4)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 4 || max > 1000 {
			return
		}
		pieces := splitText(s, max)
		for _, p := range pieces {
			if len(p) > max || !utf8.ValidString(p) || strings.ContainsAny(p, "\r\n\x00") {
				t.Fatalf("bad piece %q (max %d)", p, max)
			}
		}
		clean := strings.NewReplacer("\r", "", "\n", "", "\x00", "").Replace(strings.ToValidUTF8(s, "\uFFFD"))
		if strings.Join(pieces, "") != clean {
			t.Fatalf("pieces %q lose text of %q", pieces, s)
		}
	})
}

// FuzzFormatUntagged: formatMessage's own encoding of a message without
// tags is irc.v4's, byte for byte; and prefixReparses says truly when a
// prefix reads back as itself.
func FuzzFormatUntagged(f *testing.F) {
	f.Add("nick", "user", "host", "PRIVMSG", "#chan", "hello there", 2)
	f.Add("", "", "", "PING", "", ":x", 1)
	f.Add("srv.example", "", "", "001", "alice", "", 2)
	f.Add("a!b", "c@d", "e", "NOTICE", "x", "y", 3)
	f.Add("n", "", "h", "PRIVMSG", "bob", ":colon", 2)
	f.Fuzz(func(t *testing.T, name, user, host, cmd, p1, p2 string, nparams int) {
		m := &irc.Message{Tags: irc.Tags{}, Prefix: &irc.Prefix{Name: name, User: user, Host: host}, Command: cmd}
		switch nparams % 4 {
		case 1:
			m.Params = []string{p2}
		case 2:
			m.Params = []string{p1, p2}
		case 3:
			m.Params = []string{p1, p1, p2}
		}
		if got, want := formatUntagged(m), m.String(); got != want {
			t.Fatalf("formatUntagged = %q, irc.v4 = %q", got, want)
		}
		m.Prefix = nil
		if got, want := formatUntagged(m), m.String(); got != want {
			t.Fatalf("without prefix: formatUntagged = %q, irc.v4 = %q", got, want)
		}
		p := &irc.Prefix{Name: name, User: user, Host: host}
		if prefixLen(p) != len(p.String()) {
			t.Fatalf("prefixLen %d, len(String) %d", prefixLen(p), len(p.String()))
		}
		if prefixReparses(p) && *irc.ParsePrefix(p.String()) != *p {
			t.Fatalf("%+v does not read back as itself: %+v", *p, *irc.ParsePrefix(p.String()))
		}
	})
}

// FuzzFold: folding without a copy when nothing changes gives what the
// byte-by-byte mapping gives.
func FuzzFold(f *testing.F) {
	f.Add("Alice[]~")
	f.Add("bob")
	f.Fuzz(func(t *testing.T, s string) {
		for _, cm := range []casemapping{caseRFC1459, caseASCII, caseStrictRFC1459} {
			want := []byte(s)
			for i, c := range want {
				switch {
				case c >= 'A' && c <= 'Z':
					want[i] = c + 32
				case cm != caseASCII && c >= '[' && c <= ']':
					want[i] = c + 32
				case cm == caseRFC1459 && c == '~':
					want[i] = '^'
				}
			}
			if got := cm.fold(s); got != string(want) {
				t.Fatalf("fold(%q) under %v = %q, want %q", s, cm, got, want)
			}
		}
	})
}

// FuzzLineFraming: lineBuffer fed in arbitrary pieces (as the raw socket
// reader feeds it) and lineReader on a reader returning arbitrary pieces
// (TLS, pipes) give exactly the lines and over-long reports of the
// framing rule, written out plainly in framedLines.
func FuzzLineFraming(f *testing.F) {
	f.Add([]byte("PING :a\r\nPRIVMSG b :c\n\nx"), []byte{3, 1, 200}, 16)
	f.Add(bytes.Repeat([]byte("y"), 40), []byte{7}, 16)
	f.Add([]byte(strings.Repeat("z", 17)+"\n"+strings.Repeat("w", 16)+"\nok\n"), []byte{5, 30}, 16)
	f.Add([]byte(strings.Repeat("v", 40)+"\nafter\n"), []byte{16, 16, 16}, 16)
	f.Fuzz(func(t *testing.T, data, pieces []byte, max int) {
		if max < 1 || max > 64 {
			return
		}
		want := framedLines(data, max)
		piece := func(i int) int {
			if len(pieces) == 0 {
				return len(data) + 1
			}
			return int(pieces[i%len(pieces)]) + 1
		}

		var got []string
		lb := newLineBuffer(max)
		rest := data
		for i := 0; len(rest) > 0; i++ {
			space := lb.space()
			if len(space) == 0 {
				t.Fatal("no space to read into")
			}
			n := copy(space[:min(len(space), piece(i))], rest)
			rest = rest[n:]
			lb.wrote(n)
			for {
				line, tooLong, ok := lb.next()
				if !ok {
					break
				}
				if tooLong {
					got = append(got, "<too long>")
				} else {
					got = append(got, "="+line)
				}
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("lineBuffer %q\nwant       %q", got, want)
		}

		got = got[:0]
		lr := newLineReader(&pieceReader{data: data, piece: piece}, max)
		for range len(data) + 2 {
			line, err := lr.readLine()
			if errors.Is(err, errLineTooLong) {
				got = append(got, "<too long>")
				continue
			}
			if err != nil {
				if err != io.EOF {
					t.Fatalf("lineReader: %v", err)
				}
				break
			}
			got = append(got, "="+line)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("lineReader %q\nwant       %q", got, want)
		}
	})
}

// framedLines is the framing rule: every LF ends a line; a line of more
// than max bytes, its LF included, is reported as too long; CR and LF at
// its end are cut; bytes after the last LF are no line.
func framedLines(data []byte, max int) []string {
	var out []string
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return out
		}
		line := data[:i+1]
		data = data[i+1:]
		if len(line) > max {
			out = append(out, "<too long>")
			continue
		}
		out = append(out, "="+strings.TrimRight(string(line), "\r\n"))
	}
}

// pieceReader returns data in pieces of the sizes piece gives, then EOF.
type pieceReader struct {
	data  []byte
	piece func(int) int
	i     int
}

func (r *pieceReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), r.piece(r.i))], r.data)
	r.data = r.data[n:]
	r.i++
	return n, nil
}
