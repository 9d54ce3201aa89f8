package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// flat renders e for comparisons: atoms as Go-quoted strings.
func flat(e *sexp) string {
	if !e.isList {
		return string(appendQuoted(nil, e.atom))
	}
	var b bytes.Buffer
	b.WriteByte('(')
	for i, c := range e.list {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(flat(c))
	}
	b.WriteByte(')')
	return b.String()
}

func TestSexpAtomForms(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`(a)`, `("a")`},
		{`(name alice)`, `("name" "alice")`},
		{`(a-b.c/d_e:f*g+h=i9)`, `("a-b.c/d_e:f*g+h=i9")`},
		{`(#0aFF#)`, `("\n` + "\xff" + `")`},
		{"(# 0a\n ff #)", `("\n` + "\xff" + `")`},
		{`(##)`, `("")`},
		{`("")`, `("")`},
		{`("a\"b\\c\'d")`, `("a\"b\\c'd")`},
		{`("\b\t\v\n\f\r")`, `("\b\t\v\n\f\r")`},
		{`("\x00\x7f\xA1")`, `("\x00\x7F` + "\xa1" + `")`},
		{`("\101\000\377")`, `("A\x00` + "\xff" + `")`},
		{"(\"a\\\nb\\\r\nc\\\n\rd\\\re\")", `("abcde")`},
		{"(\"raw\x00\xff\n\")", `("raw\x00` + "\xff" + `\n")`},
		{`(5:a(b)c)`, `("a(b)c")`},
		{`(0:)`, `("")`},
		{`(|YWJj|)`, `("abc")`},
		{`(|YWI=|)`, `("ab")`},
		{`(|YWI|)`, `("ab")`},
		{"(| YW\nJj |)", `("abc")`},
		{`(3"abc")`, `("abc")`},
		{`(2#0102#)`, `("\x01\x02")`},
		{`(3|YWJj|)`, `("abc")`},
		{`([text/plain]hello)`, `("hello")`},
		{`(a (b (c)) () d)`, `("a" ("b" ("c")) () "d")`},
		{" \t\r\n(a)\n\n", `("a")`},
	} {
		e, err := parseSexp([]byte(tc.in))
		if err != nil {
			t.Errorf("parseSexp(%q): %v", tc.in, err)
			continue
		}
		if got := flat(e); got != tc.want {
			t.Errorf("parseSexp(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestSexpErrors(t *testing.T) {
	for _, in := range []string{
		``, ` `, `(`, `)`, `(a`, `(a))`, `(a) b`, `(#0#)`, `(#0g#)`, `(#00)`,
		`("abc)`, `("\q")`, `("\x0")`, `("\x0g")`, `("\400")`, `("\08")`, `("\`,
		`(5:abc)`, `(5)`, `(3"ab")`, `(3x)`, `(9999999999:a)`, `(|@@@@|)`, `(|YWJj)`,
		`(a@b)`, `([hint)`, `([hint])`, `([hint] (a))`, `({YWJj})`, `(a) (b)`,
		string(bytes.Repeat([]byte("("), maxSexpDepth+1)) + string(bytes.Repeat([]byte(")"), maxSexpDepth+1)),
	} {
		e, err := parseSexp([]byte(in))
		if err == nil {
			t.Errorf("parseSexp(%q) = %s, want error", in, flat(e))
		} else if !errors.Is(err, ErrLibotrFormat) {
			t.Errorf("parseSexp(%q) error %v does not wrap ErrLibotrFormat", in, err)
		}
	}
	deep := bytes.Repeat([]byte("("), maxSexpDepth)
	deep = append(deep, bytes.Repeat([]byte(")"), maxSexpDepth)...)
	if _, err := parseSexp(deep); err != nil {
		t.Errorf("nesting %d deep: %v", maxSexpDepth, err)
	}
}

func TestSexpWriteRoundTrip(t *testing.T) {
	e := &sexp{isList: true, list: []*sexp{
		{atom: []byte("privkeys")},
		{atom: []byte("needs quoting: @[]\\\"\x01\x7f\xa0\xa1 ünïcode\n")},
		{atom: []byte{0, 1, 2, 0xff}},
		{atom: []byte("9starts-with-digit")},
		{atom: []byte{}},
		{atom: []byte("bin"), binary: true},
		{isList: true, list: []*sexp{{atom: []byte("x")}, {isList: true}}},
	}}
	out := appendSexp(nil, e, 0)
	back, err := parseSexp(out)
	if err != nil {
		t.Fatalf("parsing %q: %v", out, err)
	}
	if flat(back) != flat(e) {
		t.Errorf("round trip:\n got %s\nwant %s\ntext %q", flat(back), flat(e), out)
	}
	if !bytes.Contains(out, []byte("#62696E#")) {
		t.Errorf("binary atom not written in hex: %q", out)
	}
}

// FuzzSexp checks that the S-expression reader never panics, that whatever it
// accepts survives a write and re-read unchanged, and that the libotr key
// file interpreter copes with any parsed structure.
func FuzzSexp(f *testing.F) {
	for _, name := range []string{"otr.key", "mixed.key"} {
		data, err := os.ReadFile(filepath.Join("testdata", "libotr", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		`(privkeys (account (name a) (protocol b) (private-key (dsa (p #01#) (q #01#) (g #01#) (y #01#) (x #01#)))))`,
		`(a "q\x41\101\n" 3:abc |YWJj| #00# [h]t 3#616263#)`,
		"(\"\\\r\n\")", `(privkeys)`, `(privkeys (account))`, `((((a))))`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parseLibotrKeys(data)
		e, err := parseSexp(data)
		if err != nil {
			return
		}
		out := appendSexp(nil, e, 0)
		back, err := parseSexp(out)
		if err != nil {
			t.Fatalf("re-parsing written %q: %v", out, err)
		}
		if flat(back) != flat(e) {
			t.Fatalf("round trip changed %s into %s", flat(e), flat(back))
		}
	})
}
