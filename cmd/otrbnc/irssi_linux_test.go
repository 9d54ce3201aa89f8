//go:build linux

package main

import (
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// TestIrssiQueryWindow is the user's story in irssi 1.4 (without its OTR
// module) through otrbnc and ngIRCd, with an irssi-otr-like peer (libotr
// 4.1.1): start OTR from irssi, talk both ways, the peer ends the
// conversation, the user types one more line. It asserts on irssi's log of
// the query window with the peer.
func TestIrssiQueryWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs irssi, otrbnc and ngIRCd")
	}
	t.Parallel()
	irc := startNgircd(t)
	addr, pw := otrbncProcess(t, irc.Addr)
	bob := newOTRPeer(t, irc.Addr, "bob")
	bob.waitOnline("alice")
	cl := startIrssi(t, addr, pw)

	// A line in clear opens the query window (and shows irssi is attached).
	bob.say("alice", "hello alice, in clear")
	cl.waitWindow("bob", "<bob> hello alice, in clear")

	// OTR starts from irssi; a message each way.
	cl.query("bob", "/msg *otr start bob")
	cl.waitWindow("*otr", "private conversation with bob started")
	bob.waitState("alice", "encrypted")
	cl.query("bob", "hello bob from irssi")
	bob.expectText("hello bob from irssi")
	bob.say("alice", "hello alice from libotr")
	cl.waitWindow("bob", "<bob> hello alice from libotr")

	// The peer ends the conversation. A line from the peer in clear
	// afterwards marks, in the query window, the point by which whatever
	// otrbnc showed about the end has arrived.
	sent := bob.receivedCount()
	bob.end("alice")
	cl.waitWindow("*otr", "ended the private conversation")
	bob.c.send("PRIVMSG alice :sync after the end")
	cl.waitWindow("bob", "sync after the end")

	// The user types one more line: otrbnc refuses it.
	cl.query("bob", "are you still there?")
	cl.waitWindow("*otr", "your message was NOT sent")
	bob.c.send("PRIVMSG alice :sync after the refusal")
	cl.waitWindow("bob", "sync after the refusal")

	// Talking in clear again proves the refused line never left: the peer
	// gets the next line, and nothing before it.
	cl.typeLine("/msg *otr finish bob")
	cl.waitWindow("*otr", "private conversation ended")
	cl.query("bob", "now in clear")
	bob.expectText("now in clear")
	if got := bob.receivedSince(sent); len(got) != 1 || got[0] != "now in clear" {
		t.Errorf("after ending OTR the peer got %q, want only the line in clear", got)
	}

	win := cl.window("bob")
	t.Logf("query window:\n%s", strings.Join(win, "\n"))
	// irssi 1.4 has no echo-message: it shows the lines the user types
	// itself, the refused one too; otrbnc's line after it says it was not
	// sent (RefusalAndStateInQueryWindow).
	if !containsLine(win, "<alice> are you still there?") {
		t.Errorf("the refused line is not in the query window")
	}

	t.Run("RefusalAndStateInQueryWindow", func(t *testing.T) {
		var ours []string
		check := func(what, from, to string, want *regexp.Regexp) {
			t.Helper()
			seg := between(win, from, to)
			for _, l := range seg {
				if want.MatchString(l) && !strings.HasPrefix(l, "<alice> ") {
					ours = append(ours, l)
					return
				}
			}
			t.Errorf("the query window does not show that %s; between %q and %q it shows:\n%s", what, from, to, strings.Join(seg, "\n"))
		}
		check("the private conversation started", "<bob> hello alice, in clear", "<bob> hello alice from libotr", regexp.MustCompile(`(?i)\b(start|encrypt|private|secure|active)`))
		check("bob ended it", "<bob> hello alice from libotr", "sync after the end", regexp.MustCompile(`(?i)\bend|finish`))
		check("the message was NOT sent", "<alice> are you still there?", "sync after the refusal", regexp.MustCompile(`(?i)not sent|refused|not delivered`))

		// The peer must not be able to make the same lines appear: it
		// tries every tail of each line, in clear and encrypted, as a
		// message, a notice and an action; as is, behind formatting codes
		// that show nothing, behind an invisible character, and in
		// look-alike letters.
		var tries []string
		for _, l := range ours {
			words := strings.Fields(l)
			for k := 0; k < len(words) && k < 5; k++ {
				tail := strings.Join(words[k:], " ")
				tries = append(tries, tail, "\x02\x02"+tail, "\u200b"+tail, lookalikes.Replace(tail))
			}
		}
		imitate := func(encrypted bool) {
			t.Helper()
			mark := "end of the imitations in clear"
			if encrypted {
				mark = "end of the encrypted imitations"
			}
			start := len(cl.window("bob"))
			for _, s := range tries {
				if encrypted {
					bob.say("alice", s)
					bob.say("alice", "/me "+s)
				} else {
					bob.c.send("PRIVMSG alice :"+s, "NOTICE alice :"+s, "PRIVMSG alice :\x01ACTION "+s+"\x01")
				}
			}
			bob.say("alice", mark)
			cl.waitWindow("bob", mark)
			for _, l := range cl.window("bob")[start:] {
				for _, o := range ours {
					if sameLine(l, o) {
						t.Errorf("the peer imitated otrbnc's line %q (encrypted: %v)", o, encrypted)
					}
				}
			}
		}
		imitate(false)
		cl.query("bob", "/msg *otr start bob")
		bob.waitState("alice", "encrypted")
		bob.say("alice", "encrypted again")
		cl.waitWindow("bob", "encrypted again")
		imitate(true)
	})
}

// containsLine reports whether lines has exactly line.
func containsLine(lines []string, line string) bool {
	for _, l := range lines {
		if l == line {
			return true
		}
	}
	return false
}

// between returns the lines after the first one containing from and before
// the first later one containing to.
func between(lines []string, from, to string) []string {
	for i, l := range lines {
		if strings.Contains(l, from) {
			for j := i + 1; j < len(lines); j++ {
				if strings.Contains(lines[j], to) {
					return lines[i+1 : j]
				}
			}
			return lines[i+1:]
		}
	}
	return nil
}

// sameLine compares two rendered lines as a reader would: case, runs of
// spaces, invisible characters and look-alike letters do not matter.
func sameLine(a, b string) bool { return skeleton(a) == skeleton(b) }

// lookalikePairs are Latin letters and Cyrillic letters drawn the same.
var lookalikePairs = []string{"a", "а", "c", "с", "e", "е", "i", "і", "o", "о", "p", "р", "x", "х", "y", "у",
	"A", "А", "B", "В", "C", "С", "E", "Е", "H", "Н", "K", "К", "M", "М", "O", "О", "P", "Р", "T", "Т", "X", "Х"}

// lookalikes writes Latin letters in Cyrillic look-alikes.
var lookalikes = strings.NewReplacer(lookalikePairs...)

// skeleton is what a reader sees of s: Latin letters for their
// look-alikes, lower case, no invisible (format) characters, single
// spaces.
func skeleton(s string) string {
	latin := map[rune]rune{}
	for i := 0; i < len(lookalikePairs); i += 2 {
		latin[[]rune(lookalikePairs[i+1])[0]] = []rune(lookalikePairs[i])[0]
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.Is(unicode.Cf, r) {
			continue
		}
		if l, ok := latin[r]; ok {
			r = l
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
