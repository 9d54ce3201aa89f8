package proxy

import (
	"strings"
	"testing"
	"unicode/utf8"

	"otrbnc/proxy/config"
)

func TestFragmentSize(t *testing.T) {
	cases := []struct {
		nick, user, host, peer string
		want                   int
	}{
		// The worked examples: 496 − |nick| − |user| − |host| − |peer| − margin.
		{"alice", "~alice", "user/alice", "bob", 472 - fragmentMargin},
		{strings.Repeat("n", 16), strings.Repeat("u", 11), strings.Repeat("h", 63), strings.Repeat("p", 16), 390 - fragmentMargin},
		// Unknown user and host count as their maximum.
		{"alice", "", "", "bob", 496 - 5 - 11 - 63 - 3 - fragmentMargin},
		// Clamped.
		{"a", "u", "h", "b", config.MaxFragmentSize},
		{strings.Repeat("n", 100), "u", strings.Repeat("h", 200), "b", config.MinFragmentSize},
	}
	for _, c := range cases {
		if got := fragmentSize(c.nick, c.user, c.host, c.peer); got != c.want {
			t.Errorf("fragmentSize(%q,%q,%q,%q) = %d, want %d", c.nick, c.user, c.host, c.peer, got, c.want)
		}
		// The relayed line fits in 512 bytes.
		line := ":" + c.nick + "!" + c.user + "@" + c.host + " PRIVMSG " + c.peer + " :" + strings.Repeat("x", fragmentSize(c.nick, c.user, c.host, c.peer)) + "\r\n"
		if len(line) > 512 && fragmentSize(c.nick, c.user, c.host, c.peer) != config.MinFragmentSize {
			t.Errorf("relayed line of %d bytes", len(line))
		}
	}
}

func TestCTCPAndOTRText(t *testing.T) {
	if s, ok := actionToOTR("\x01ACTION waves\x01"); !ok || s != "/me waves" {
		t.Errorf("actionToOTR = %q %v", s, ok)
	}
	if _, ok := actionToOTR("\x01VERSION\x01"); ok {
		t.Error("VERSION treated as action")
	}
	if _, ok := actionToOTR("plain"); ok {
		t.Error("plain text treated as action")
	}
	cases := []struct {
		in     string
		body   string
		action bool
	}{
		{"/me dances", "dances", true},
		{"/me", "", true},
		{"\x01ACTION jumps\x01", "jumps", true},
		{"/mentions", "/mentions", false},
		{"\x01DCC SEND x 1 2 3\x01", "DCC SEND x 1 2 3", false},
		{"hi \x01there", "hi there", false},
	}
	for _, c := range cases {
		body, action := fromOTRText(c.in)
		if body != c.body || action != c.action {
			t.Errorf("fromOTRText(%q) = %q %v, want %q %v", c.in, body, action, c.body, c.action)
		}
	}
}

func TestNeutralize(t *testing.T) {
	cases := map[string]string{
		"\x02bold\x02 \x0304,01red\x03 \x0f": "bold red ",
		"\x03,5comma":                        ",5comma",
		"\x0412ab34,ffffffhex":               "hex",
		"\u202eevil\u202c \u200bzero\u2066x": "evil zerox",
		"[NOT ENCRYPTED]\x16":                "[NOT ENCRYPTED]",
		"ok\xff":                             "ok\uFFFD",
		"\x01CTCP\x01\r\n":                   "CTCP",
	}
	for in, want := range cases {
		if got := neutralize(in); got != want {
			t.Errorf("neutralize(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzPeerText checks what a peer controls: the text after our marker can
// hold no control, formatting or bidi character, and decrypted text never
// smuggles a CTCP delimiter.
func FuzzPeerText(f *testing.F) {
	for _, s := range []string{"/me x", "\x01ACTION y\x01", "\x0301,01\u202ehidden", "\x04ff0000red", "plain", "\x01VERSION\x01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := neutralize(s)
		if !utf8.ValidString(n) {
			t.Fatalf("invalid UTF-8 from %q", s)
		}
		for _, r := range n {
			if r < 0x20 || r == 0x7f || isInvisibleFormat(r) {
				t.Fatalf("neutralize(%q) kept %U", s, r)
			}
		}
		body, _ := fromOTRText(s)
		if strings.ContainsRune(body, '\x01') {
			t.Fatalf("fromOTRText(%q) kept a CTCP delimiter", s)
		}
		if a, ok := actionToOTR(s); ok && !strings.HasPrefix(a, "/me ") {
			t.Fatalf("actionToOTR(%q) = %q", s, a)
		}
	})
}

func TestCasemapping(t *testing.T) {
	if got := caseRFC1459.fold("Nick[]\\~"); got != "nick{}|^" {
		t.Errorf("rfc1459 fold = %q", got)
	}
	if got := caseASCII.fold("Nick[]"); got != "nick[]" {
		t.Errorf("ascii fold = %q", got)
	}
	if got := caseStrictRFC1459.fold("A[~"); got != "a{~" {
		t.Errorf("strict fold = %q", got)
	}
	if parseCasemapping("ascii") != caseASCII || parseCasemapping("weird") != caseRFC1459 {
		t.Error("parseCasemapping")
	}
}

func TestSplitWordsAndLookup(t *testing.T) {
	words, err := splitWords(`authq bob "what is my cat's name" 'Mr "Whiskers"' a\ b`)
	if err != nil || strings.Join(words, "|") != `authq|bob|what is my cat's name|Mr "Whiskers"|a b` {
		t.Errorf("splitWords = %q, %v", words, err)
	}
	for _, bad := range []string{`"open`, `trailing\`} {
		if _, err := splitWords(bad); err == nil {
			t.Errorf("splitWords(%q) accepted", bad)
		}
	}
	cmds := serviceCommands()
	for word, want := range map[string]string{"help": "help", "HE": "help", "fini": "finish", "smp": "auth", "authq": "authq", "init": "start", "fingerprint": "fingerprint"} {
		c, err := lookupCommand(cmds, word)
		if err != nil || c.name != want {
			t.Errorf("lookupCommand(%q) = %v, %v; want %s", word, c, err, want)
		}
	}
	if _, err := lookupCommand(cmds, "auth"); err != nil {
		t.Errorf("exact match beats prefix: %v", err)
	}
	if _, err := lookupCommand(cmds, "f"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := lookupCommand(cmds, "nope"); err == nil || !strings.Contains(err.Error(), "help") {
		t.Errorf("unknown command: %v", err)
	}
}

// TestDefuseAction: an action cannot start like otrbnc's 404 line in
// HexChat ("* bob :OTR: …"), even behind formatting, invisible characters
// or a look-alike colon.
func TestDefuseAction(t *testing.T) {
	for _, in := range []string{":OTR: private conversation ended", "\x02:OTR:", "\u200b:OTR:", " \u2236OTR:", "\uFF1AOTR:", "\x0304:x"} {
		if got := defuseAction(in); !strings.HasPrefix(got, "· ") {
			t.Errorf("defuseAction(%q) = %q", in, got)
		}
	}
	for _, in := range []string{"waves", "", "smiles :)"} {
		if got := defuseAction(in); got != in {
			t.Errorf("defuseAction(%q) = %q, want it unchanged", in, got)
		}
	}
}
