package proxy

import (
	"strconv"
	"strings"
	"time"

	"gopkg.in/irc.v4"
)

// Capabilities offered to clients. The list is built from what otrbnc
// implements itself, never passed through from the network: sts (it would
// push loopback clients to TLS), draft/multiline (outgoing batches would
// have to be gathered before encryption), draft/chathistory and the
// bouncer vendor capabilities for history (soju.im/*, znc.in/playback:
// they replay ciphertext that can no longer be decrypted) are therefore
// never offered. znc.in/self-message (ZNC's and soju's) asks for what the
// user's other clients send; without it (or echo-message) a client is
// not shown those messages, which it would file as sent to ourselves.
var offeredCaps = []struct{ name, value string }{
	{"batch", ""},
	{"cap-notify", ""},
	{"echo-message", ""},
	{"labeled-response", ""},
	{"message-tags", ""},
	{"sasl", "PLAIN"},
	{"server-time", ""},
	{"standard-replies", ""},
	{"znc.in/self-message", ""},
}

// capOffered reports whether otrbnc offers the capability name.
func capOffered(name string) bool {
	for _, c := range offeredCaps {
		if c.name == name {
			return true
		}
	}
	return false
}

// capLS returns the CAP LS list; version 302 and later get values.
func capLS(version int) string {
	parts := make([]string, 0, len(offeredCaps))
	for _, c := range offeredCaps {
		if c.value != "" && version >= 302 {
			parts = append(parts, c.name+"="+c.value)
		} else {
			parts = append(parts, c.name)
		}
	}
	return strings.Join(parts, " ")
}

// capReq applies a CAP REQ argument to caps, all or nothing: ok is false
// (and caps untouched) if the list is empty or names a capability we do
// not offer.
func capReq(caps map[string]bool, arg string) (ok bool) {
	req := strings.Fields(arg)
	if len(req) == 0 || len(req) > 32 {
		return false
	}
	for _, c := range req {
		if !capOffered(strings.TrimPrefix(c, "-")) {
			return false
		}
	}
	for _, c := range req {
		name, off := strings.CutPrefix(c, "-")
		caps[name] = !off
	}
	return true
}

// capListOn returns the enabled capabilities, in the offered order.
func capListOn(caps map[string]bool) string {
	var on []string
	for _, c := range offeredCaps {
		if caps[c.name] {
			on = append(on, c.name)
		}
	}
	return strings.Join(on, " ")
}

// capCommand answers one CAP command of a client, before or after
// registration. It returns whether the client is now negotiating
// (registration waits for CAP END) and the replies.
func capCommand(caps map[string]bool, target string, m *irc.Message) (negotiating, end bool, replies []*irc.Message) {
	reply := func(params ...string) { replies = append(replies, msg(serverName, "CAP", params...)) }
	switch strings.ToUpper(m.Param(0)) {
	case "LS":
		v, _ := strconv.Atoi(m.Param(1))
		if v >= 302 {
			// cap-notify is implied by 302 (IRCv3 capability negotiation).
			caps["cap-notify"] = true
		}
		reply(target, "LS", capLS(v))
		return true, false, replies
	case "LIST":
		reply(target, "LIST", capListOn(caps))
	case "REQ":
		if capReq(caps, m.Param(1)) {
			reply(target, "ACK", m.Param(1))
		} else {
			reply(target, "NAK", m.Param(1))
		}
		return true, false, replies
	case "END":
		return false, true, nil
	default:
		replies = append(replies, msg(serverName, "410", target, m.Param(0), "Invalid CAP command"))
	}
	return false, false, replies
}

// validTagKey reports whether k is a well-formed message tag name:
// an optional "+", an optional vendor prefix ending in "/", and a name of
// letters, digits and hyphens.
func validTagKey(k string) bool {
	k = strings.TrimPrefix(k, "+")
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		vendor := k[:i]
		if vendor == "" {
			return false
		}
		for _, c := range []byte(vendor) {
			if !(isAlnum(c) || c == '-' || c == '.') {
				return false
			}
		}
		k = k[i+1:]
	}
	if k == "" || len(k) > 128 {
		return false
	}
	for _, c := range []byte(k) {
		if !(isAlnum(c) || c == '-') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// clientOnlyTags returns the well-formed client-only ("+") tags of tags,
// or nil.
func clientOnlyTags(tags irc.Tags) irc.Tags {
	var out irc.Tags
	for k, v := range tags {
		if strings.HasPrefix(k, "+") && validTagKey(k) {
			if out == nil {
				out = irc.Tags{}
			}
			out[k] = v
		}
	}
	return out
}

// upstreamTags keeps what otrbnc forwards of the tags the network sent:
// every well-formed tag except batch (upstream batches are consumed, see
// history.go) and label (otrbnc answers labels itself).
func upstreamTags(tags irc.Tags) irc.Tags {
	out := irc.Tags{}
	for k, v := range tags {
		if k == "batch" || k == "label" || !validTagKey(k) {
			continue
		}
		out[k] = v
	}
	return out
}

// serverTimeFormat is the IRCv3 server-time format.
const serverTimeFormat = "2006-01-02T15:04:05.000Z"

// formatServerTime formats t for a time tag.
func formatServerTime(t time.Time) string { return t.UTC().Format(serverTimeFormat) }

// parseServerTime parses a time tag value.
func parseServerTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false // the common case, without a parse error
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// tagsForClient returns the tags a client with caps may receive for m:
// time with server-time (added, from now, when m has none), batch with
// batch, label with labeled-response, everything else with message-tags.
// The account tag needs account-tag, which otrbnc does not offer.
func tagsForClient(caps map[string]bool, m *irc.Message, now time.Time) irc.Tags {
	var out irc.Tags
	set := func(k, v string) {
		if out == nil {
			out = irc.Tags{}
		}
		out[k] = v
	}
	for k, v := range m.Tags {
		switch {
		case k == "time":
			if caps["server-time"] {
				set(k, v)
			}
		case k == "batch":
			if caps["batch"] {
				set(k, v)
			}
		case k == "label":
			if caps["labeled-response"] {
				set(k, v)
			}
		case k == "account":
		case caps["message-tags"]:
			set(k, v)
		}
	}
	if caps["server-time"] && m.Tags["time"] == "" && m.Command != "BATCH" {
		set("time", formatServerTime(now))
	}
	return out
}

// forClient returns m as client dc may receive it (tags filtered), or nil
// when the client must not see it at all (TAGMSG without message-tags).
func forClient(caps map[string]bool, m *irc.Message, now time.Time) *irc.Message {
	if m.Command == "TAGMSG" && !caps["message-tags"] {
		return nil
	}
	tags := tagsForClient(caps, m, now)
	if len(tags) == 0 && len(m.Tags) == 0 {
		return m
	}
	c := *m
	c.Tags = tags
	return &c
}
