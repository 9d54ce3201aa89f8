package proxy

import (
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/irc.v4"
)

// backlogEntry is a *otr event kept for the next client.
type backlogEntry struct {
	at   time.Time
	text string
}

// serviceMsg is one line from *otr to dc, as PRIVMSG or NOTICE per the
// notify setting.
func (n *network) serviceMsg(dc *downstream, line string) *irc.Message {
	cmd := "PRIVMSG"
	if n.setting("notify") == "notice" {
		cmd = "NOTICE"
	}
	return msg(servicePrefix, cmd, dc.nick, line)
}

// Every *otr line is composed by otrbnc (docs/security.md, I2): text a
// peer or the server chose (an OTR error, an SMP question) appears only
// inside quotes after otrbnc's own words, neutralised and cut short
// (quotePeer), and a notice too long for one line goes on in lines that
// start with the first line's "[peer]" lead, so that no cut can make a
// line start with peer text.

const (
	// serviceLineMax bounds the text of one *otr line.
	serviceLineMax = 400
	// peerTextMax bounds peer text quoted in a notice.
	peerTextMax = 200
)

// quotePeer returns peer-chosen text for a *otr notice: neutralised (no
// formatting, controls or bidi tricks), double quotes replaced, cut to max
// bytes on a character boundary, and quoted.
func quotePeer(s string, max int) string {
	s = strings.ReplaceAll(neutralize(s), `"`, "'")
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return `"` + s + `"`
}

// serviceLines cuts a notice into *otr lines; every line after the first
// starts with the first line's "[…]" lead, or "(continued)".
func serviceLines(text string) []string {
	lead := "(continued)"
	if strings.HasPrefix(text, "[") {
		if i := strings.Index(text, "] "); i > 0 && i < 80 {
			lead = text[:i+1] + " (continued)"
		}
	}
	first, rest := text, ""
	if len(text) > serviceLineMax {
		pieces := splitText(text, serviceLineMax)
		first, rest = pieces[0], strings.Join(pieces[1:], " ")
	}
	lines := []string{first}
	for rest != "" {
		pieces := splitText(rest, serviceLineMax-len(lead)-1)
		lines = append(lines, lead+" "+pieces[0])
		rest = strings.Join(pieces[1:], " ")
	}
	return lines
}

// tellClient sends a service notice to one client.
func (n *network) tellClient(dc *downstream, text string) {
	for _, line := range serviceLines(text) {
		n.toClient(dc, n.serviceMsg(dc, line))
	}
}

// tellClients sends a service line to every client, or keeps it for the
// next one when none is attached.
func (n *network) tellClients(text string) {
	if len(n.downstreams) == 0 {
		n.backlog = append(n.backlog, backlogEntry{at: n.now(), text: text})
		if len(n.backlog) > maxBacklog {
			n.lostEvents += len(n.backlog) - maxBacklog
			n.backlog = n.backlog[len(n.backlog)-maxBacklog:]
		}
		return
	}
	for _, dc := range n.downstreams {
		n.tellClient(dc, text)
	}
}

// tellClientsAbout sends every client a service line about peer,
// prefixed with "[peer]".
func (n *network) tellClientsAbout(peer, text string) { n.tellClients("[" + peer + "] " + text) }
