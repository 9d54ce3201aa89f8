package proxy

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"gopkg.in/irc.v4"
)

// Fuzz targets for the parsers a client or the network reaches. Their
// seeds run with every "go test".

var wordSeeds = []string{
	`authq bob "what is my cat's name" 'Mr "Whiskers"' a\ b`,
	`"open`, `trailing\`, `''`, `""`, ` a  b `, "\t\ttab\tsep", `a"b c"d`, `\"`, `'\'`, "é \"ü\" 'ß'",
}

func FuzzSplitWords(f *testing.F) {
	for _, s := range wordSeeds {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		words, err := splitWords(s)
		if err == nil {
			for _, w := range words {
				if !utf8.ValidString(s) {
					break
				}
				if !utf8.ValidString(w) {
					t.Fatalf("word %q from valid %q", w, s)
				}
			}
			// Quoting every word with single quotes (when it has none)
			// gives the words back.
			var quoted []string
			ok := true
			for _, w := range words {
				if strings.Contains(w, "'") {
					ok = false
				}
				quoted = append(quoted, "'"+w+"'")
			}
			if ok {
				again, err := splitWords(strings.Join(quoted, " "))
				if err != nil || len(again) != len(words) {
					t.Fatalf("requoting %q: %q, %v", words, again, err)
				}
				for i := range again {
					if again[i] != words[i] {
						t.Fatalf("requoting %q: %q", words, again)
					}
				}
			}
		}
		if max < 1 || max > 8 {
			return
		}
		args, err := splitRaw(s, max)
		if err == nil && len(args) > max {
			t.Fatalf("splitRaw(%q, %d) = %d args", s, max, len(args))
		}
		if err == nil && len(args) == max && max > 0 && strings.TrimLeft(args[max-1], " \t") != args[max-1] {
			t.Fatalf("raw argument %q keeps leading blanks", args[max-1])
		}
	})
}

func TestSplitRaw(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want []string
	}{
		{`bob it's "quoted"  as typed`, 2, []string{"bob", `it's "quoted"  as typed`}},
		{`  "bob"   x`, 2, []string{"bob", "x"}},
		{`bob`, 2, []string{"bob"}},
		{``, 2, nil},
	} {
		got, err := splitRaw(c.in, c.max)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitRaw(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzCapReq(f *testing.F) {
	for _, s := range []string{"echo-message", "-batch server-time", "", "sts", "sasl echo-message bogus", " - -- ---", strings.Repeat("batch ", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		caps := map[string]bool{"server-time": true}
		before := map[string]bool{"server-time": true}
		ok := capReq(caps, arg)
		if !ok && !reflect.DeepEqual(caps, before) {
			t.Fatalf("refused REQ %q changed caps to %v", arg, caps)
		}
		for c := range caps {
			if !capOffered(c) {
				t.Fatalf("REQ %q enabled %q, which is not offered", arg, c)
			}
		}
		for _, c := range []string{"sts", "draft/multiline", "draft/chathistory", "znc.in/playback"} {
			if caps[c] {
				t.Fatalf("hidden capability %s enabled", c)
			}
		}
	})
}

var tagSeeds = []string{
	"@+typing=active TAGMSG bob",
	"@label=x;+draft/reply=abc\\s;time=2020-01-01T00:00:00.000Z PRIVMSG bob :hi",
	"@batch=x;msgid=1;account=a :n!u@h PRIVMSG alice :?OTR:AAMD.",
	"@;=;+;+/x=1;a/=2;vendor.example/tag=v :n PRIVMSG a :b",
	"@" + strings.Repeat("+k=v;", 200) + " PRIVMSG a b",
	"@+x=\\\\\\:\\r\\n PRIVMSG a :b",
}

func FuzzMessageTags(f *testing.F) {
	for _, s := range tagSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, err := parseLine(line)
		if err != nil {
			return
		}
		for k := range clientOnlyTags(m.Tags) {
			if !strings.HasPrefix(k, "+") || !validTagKey(k) {
				t.Fatalf("client-only tag %q", k)
			}
		}
		up := upstreamTags(m.Tags)
		if _, ok := up["batch"]; ok {
			t.Fatal("batch kept")
		}
		if _, ok := up["label"]; ok {
			t.Fatal("label kept")
		}
		m.Tags = up
		all := map[string]bool{"message-tags": true, "server-time": true, "batch": true, "labeled-response": true}
		for _, caps := range []map[string]bool{{}, all, {"server-time": true}} {
			c := forClient(caps, m, time.Unix(0, 0))
			if c == nil {
				if m.Command != "TAGMSG" || caps["message-tags"] {
					t.Fatalf("message dropped for %v", caps)
				}
				continue
			}
			if !caps["message-tags"] {
				for k := range c.Tags {
					if k != "time" {
						t.Fatalf("tag %q sent to a client without message-tags", k)
					}
				}
			}
			out := formatMessage(c.Copy())
			if strings.ContainsAny(out, "\r\n\x00") {
				t.Fatalf("formatted %q", out)
			}
			back, err := parseLine(out)
			if err != nil {
				t.Fatalf("reparsing %q: %v", out, err)
			}
			for k, v := range c.Tags {
				if back.Tags[k] != v && utf8.ValidString(v) {
					t.Fatalf("tag %q: %q became %q", k, v, back.Tags[k])
				}
			}
		}
	})
}

// maskRegexp is a reference implementation of matchMask for ASCII.
func maskRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^(?s)")
	for _, c := range p {
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func FuzzMatchMask(f *testing.F) {
	for _, s := range [][2]string{{"*serv", "nickserv"}, {"b?t*", "bot"}, {"*", ""}, {"a*b*c", "aXbYbZc"}, {"**?", "x"}, {"abc", "abd"}, {"*a", "ba"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 64 || len(name) > 128 {
			return
		}
		got := matchMask(pattern, name)
		for i := 0; i < len(pattern); i++ {
			if pattern[i] >= 0x80 {
				return
			}
		}
		for i := 0; i < len(name); i++ {
			if name[i] >= 0x80 {
				return
			}
		}
		if want := maskRegexp(pattern).MatchString(name); got != want {
			t.Fatalf("matchMask(%q, %q) = %v, want %v", pattern, name, got, want)
		}
	})
}

func FuzzSettingsFile(f *testing.F) {
	f.Add(`{"format":"otrbnc-settings","version":1,"network":"test","settings":{"notify":"notice"},"policies":[{"mask":"b*","policy":"always"}],"ignore":["*serv"]}`)
	f.Add(`{"format":"otrbnc-settings","version":1,"network":"test"} {}`)
	f.Add(`{"format":"otrbnc-settings","version":2,"network":"test"}`)
	f.Add(`{"format":"otrbnc-settings","version":1,"network":"test","default_policy":"sometimes"}`)
	f.Fuzz(func(t *testing.T, data string) {
		st, err := parseSettings([]byte(data), "test")
		if err != nil {
			return
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseSettings(b, "test")
		if err != nil {
			t.Fatalf("re-reading %s: %v", b, err)
		}
		if !reflect.DeepEqual(st, again) {
			t.Fatalf("round trip changed %+v into %+v", st, again)
		}
	})
}

// TestTagsForClient pins the tag rules per capability.
func TestTagsForClient(t *testing.T) {
	m := msg("n!u@h", "PRIVMSG", "alice", "hi")
	m.Tags = irc.Tags{"time": "2020-01-01T00:00:00.000Z", "msgid": "1", "+draft/reply": "x", "account": "a", "label": "l", "batch": "b"}
	now := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		caps map[string]bool
		want irc.Tags
	}{
		{map[string]bool{}, nil},
		{map[string]bool{"server-time": true}, irc.Tags{"time": "2020-01-01T00:00:00.000Z"}},
		{map[string]bool{"message-tags": true}, irc.Tags{"msgid": "1", "+draft/reply": "x"}},
		{map[string]bool{"batch": true, "labeled-response": true}, irc.Tags{"batch": "b", "label": "l"}},
	}
	for _, c := range cases {
		if got := tagsForClient(c.caps, m, now); !reflect.DeepEqual(got, c.want) {
			t.Errorf("caps %v: %v, want %v", c.caps, got, c.want)
		}
	}
	plain := msg("n!u@h", "PRIVMSG", "alice", "hi")
	if got := tagsForClient(map[string]bool{"server-time": true}, plain, now); got["time"] != "2021-01-01T00:00:00.000Z" {
		t.Errorf("time not added: %v", got)
	}
	if forClient(map[string]bool{}, msg("n", "TAGMSG", "alice"), now) != nil {
		t.Error("TAGMSG sent to a client without message-tags")
	}
}
