package proxy

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/irc.v4"
)

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

// tellClients sends a service line to every client, and keeps it for the
// client identities that are not attached (backlog.go).
func (n *network) tellClients(text string) {
	n.keepNotice(text)
	for _, dc := range n.downstreams {
		n.tellClient(dc, text)
	}
}

// tellClientsAbout sends every client a service line about peer,
// prefixed with "[peer]".
func (n *network) tellClientsAbout(peer, text string) { n.tellClients("[" + peer + "] " + text) }

// Notices a peer can cause at will (a malformed or unreadable message, an
// OTR error, clear text in a private conversation, a query) are limited
// so that a flood of bad lines does not become a flood of notices: per
// peer and kind, the first one in a minute is shown and the rest are
// counted and summed up when the minute ends ("37 more malformed OTR
// messages from mallory ignored in the last minute"). Across peers the
// user is not talking to, at most strangerNotices such notices are shown
// per minute; the rest are summed up the same way. Notices about peers the
// user talks to are never hidden by the second rule.

const (
	// noticeWindow is the period over which repeated notices are summed.
	noticeWindow = time.Minute
	// strangerNotices bounds the peer-caused notices shown per window
	// about peers the user is not talking to.
	strangerNotices = 20
	// maxNoticeCounters bounds the counters kept per window.
	maxNoticeCounters = 1024
)

// noticeKind is a kind of peer-caused notice, with the plural used in
// its summary.
type noticeKind string

const (
	noticeMalformed    noticeKind = "malformed or unreadable OTR messages"
	noticeUndecrypt    noticeKind = "encrypted messages that could not be read"
	noticePeerError    noticeKind = "OTR error messages"
	noticeClearText    noticeKind = "unencrypted messages"
	noticeQuery        noticeKind = "requests for a private conversation"
	noticeClearCTCP    noticeKind = "CTCP requests sent in clear"
	noticeNewKey       noticeKind = "new keys"
	noticeTooLarge     noticeKind = "OTR messages too large to reassemble"
	noticeOtherSession noticeKind = "messages from another session"
	noticeClosed       noticeKind = "private conversations closed for lack of activity or memory"
)

// noticeLimiter counts peer-caused notices within the current window.
type noticeLimiter struct {
	start time.Time
	shown map[string]bool // peer and kind shown once this window
	// hidden counts the notices not shown about peers the user talks to,
	// by peer and kind; nicks names them.
	hidden map[string]int
	nicks  map[string]string
	// strangers counts the notices shown this window about peers the user
	// is not talking to; strangerHidden the ones not shown, by kind, and
	// strangerNicks how many nicks they were about (up to
	// maxNoticeCounters).
	strangers      int
	strangerHidden map[noticeKind]int
	strangerNicks  map[string]bool
}

// tellClientsAboutPeerEvent shows a notice about p that p can cause at
// will, within the limits above: text in *otr and, when short is not
// empty, short in the conversation's window.
func (n *network) tellClientsAboutPeerEvent(p *otrPeer, kind noticeKind, short, text string) {
	l := &n.notices
	now := n.now()
	if l.shown == nil || now.Sub(l.start) >= noticeWindow {
		n.summarizeNotices(now)
	}
	key := p.key + "\x00" + string(kind)
	engaged := p.engaged(now)
	if !l.shown[key] && (engaged || l.strangers < strangerNotices) && len(l.shown) < maxNoticeCounters {
		l.shown[key] = true
		if !engaged {
			l.strangers++
		}
		if short != "" {
			n.stateToClients(p.nick, short, text)
		} else {
			n.tellClientsAbout(p.nick, text)
		}
		return
	}
	if engaged && len(l.hidden) < maxNoticeCounters {
		l.hidden[key]++
		l.nicks[key] = p.nick
		return
	}
	l.strangerHidden[kind]++
	if len(l.strangerNicks) < maxNoticeCounters {
		l.strangerNicks[p.key] = true
	}
}

// summarizeNotices ends the current window: what was not shown is summed
// up, one line per peer the user talks to and kind, and one line for all
// the others.
func (n *network) summarizeNotices(now time.Time) {
	l := &n.notices
	keys := make([]string, 0, len(l.hidden))
	for k := range l.hidden {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		_, kind, _ := strings.Cut(k, "\x00")
		nick := l.nicks[k]
		n.tellClientsAbout(nick, fmt.Sprintf("%d more %s from %s ignored in the last minute", l.hidden[k], kind, nick))
	}
	if len(l.strangerHidden) > 0 {
		total := 0
		var parts []string
		kinds := make([]noticeKind, 0, len(l.strangerHidden))
		for k := range l.strangerHidden {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			total += l.strangerHidden[k]
			parts = append(parts, fmt.Sprintf("%d %s", l.strangerHidden[k], k))
		}
		nicks := fmt.Sprintf("%d %s", len(l.strangerNicks), plural("nick", "nicks", len(l.strangerNicks)))
		if len(l.strangerNicks) >= maxNoticeCounters {
			nicks = "over " + nicks
		}
		n.tellClients(fmt.Sprintf("%d more %s about %s you are not talking to ignored in the last minute: %s", total, plural("notice", "notices", total), nicks, strings.Join(parts, ", ")))
	}
	*l = noticeLimiter{start: now, shown: map[string]bool{}, hidden: map[string]int{}, nicks: map[string]string{},
		strangerHidden: map[noticeKind]int{}, strangerNicks: map[string]bool{}}
}

// tickNotices closes the window once it is over.
func (n *network) tickNotices() {
	if l := &n.notices; l.shown != nil && n.now().Sub(l.start) >= noticeWindow && (len(l.hidden) > 0 || len(l.strangerHidden) > 0) {
		n.summarizeNotices(n.now())
	}
}

// The conversation's own window. Every client draws the lines its user
// types itself, so a refused message looks sent unless the refusal shows
// where the user looks; and state changes (started, ended, verified) belong
// there too, as in-client OTR plugins print them. otrbnc shows both as a
// line the peer cannot send (docs/user-guide.md, "Where otrbnc talks to
// you"): numeric 404 naming the peer, which irssi and HexChat show in the
// query window ("-!- [otrbnc] bob OTR: …", "* bob :OTR: …") and WeeChat
// in the server buffer (or the query, with /set irc.msgbuffer.404
// private); and, to clients that negotiated standard-replies, FAIL for a
// refusal and NOTE for a state change. The *otr notice with the details
// follows as before.

// defuseWindowLine keeps a line from the network from passing for one of
// otrbnc's window lines: a numeric or standard reply whose text starts
// like "OTR:" gets "(from the server)" in front.
func defuseWindowLine(m *irc.Message) {
	switch m.Command {
	case "FAIL", "WARN", "NOTE":
	default:
		if !isNumeric(m.Command) {
			return
		}
	}
	if len(m.Params) == 0 {
		return
	}
	last := len(m.Params) - 1
	if startsLikeOTR(m.Params[last]) {
		m.Params[last] = "(from the server) " + m.Params[last]
	}
}

// startsLikeOTR reports whether the visible text of s starts with "OTR",
// in any case, or in letters drawn like them (Cyrillic, Greek, full
// width).
func startsLikeOTR(s string) bool {
	var first []rune
	for _, r := range strings.TrimLeftFunc(neutralize(s), unicode.IsSpace) {
		switch r {
		case 'О', 'о', 'Ο', 'ο', 'Ｏ', 'ｏ', '0':
			r = 'o'
		case 'Т', 'т', 'Τ', 'τ', 'Ｔ', 'ｔ':
			r = 't'
		case 'Ｒ', 'ｒ', 'ʀ':
			r = 'r'
		}
		first = append(first, unicode.ToLower(r))
		if len(first) == 3 {
			break
		}
	}
	return string(first) == "otr"
}

// windowLine is a refusal or state line about peer for dc.
func (n *network) windowLine(dc *downstream, peer string, refusal bool, text string) *irc.Message {
	text = "OTR: " + text
	switch {
	case refusal && (dc.hasCap("standard-replies") || dc.hasCap("draft/standard-replies")):
		return msg(serverName, "FAIL", "PRIVMSG", "CANNOT_SEND", peer, text)
	case dc.hasCap("standard-replies") || dc.hasCap("draft/standard-replies"):
		return msg(serverName, "NOTE", "PRIVMSG", "OTR_STATE", peer, text)
	}
	return msg(serverName, "404", dc.nick, peer, text)
}

// refuseToClient tells dc, in the conversation's window and in *otr, that
// what it sent to peer was not sent (or not yet: queued). short is for
// the window, detail for *otr.
func (n *network) refuseToClient(dc *downstream, peer, short, detail string) {
	n.toClient(dc, n.windowLine(dc, peer, true, short))
	n.tellClient(dc, "["+peer+"] "+detail)
}

// stateToClients tells every client, in the conversation's window and in
// *otr, that the conversation with peer changed. short is for the window,
// detail for *otr.
func (n *network) stateToClients(peer, short, detail string) {
	for _, dc := range n.downstreams {
		n.toClient(dc, n.windowLine(dc, peer, false, short))
	}
	n.tellClientsAbout(peer, detail)
}
