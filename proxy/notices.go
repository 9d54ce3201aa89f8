package proxy

import (
	"time"

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

// tellClient sends a service line to one client.
func (n *network) tellClient(dc *downstream, text string) {
	for _, line := range splitText(text, 400) {
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
