package proxy

import (
	"strconv"
	"strings"
	"time"

	"gopkg.in/irc.v4"
)

// History from the network (an upstream bouncer's playback, chathistory
// batches) must never reach the OTR engine: ciphertext from the past
// cannot be decrypted (forward secrecy), and feeding it in would answer
// the peer with OTR errors and restart key exchanges. A private message
// counts as history when it arrives inside a batch whose type names
// history or playback (chathistory, draft/chathistory, znc.in/playback,
// …), or when its server-time tag is more than historyAge older than the
// network's clock (corrected by the skew measured on the welcome and on
// PONG replies). OTR messages from history are shown as a placeholder;
// plaintext from history passes unchanged.

const (
	// historyAge is how old a time tag must be for the message to count
	// as history.
	historyAge = time.Minute
	// maxUpstreamBatches bounds the open batches remembered.
	maxUpstreamBatches = 64
	// historyPlaceholder replaces OTR data found in history.
	historyPlaceholder = "[OTR message from history, cannot be decrypted]"
)

// upstreamBatch is an open BATCH from the network.
type upstreamBatch struct {
	typ     string
	history bool
}

// isHistoryBatchType reports whether a batch type carries history.
func isHistoryBatchType(typ string) bool {
	t := strings.ToLower(typ)
	return strings.Contains(t, "history") || strings.Contains(t, "playback")
}

// onUpstreamBatch tracks BATCH +ref/-ref from the network; batches are
// never forwarded to clients (their messages are delivered on their own).
func (n *network) onUpstreamBatch(m *irc.Message) {
	ref := m.Param(0)
	if len(ref) < 2 {
		return
	}
	switch ref[0] {
	case '+':
		if n.batches == nil {
			n.batches = map[string]upstreamBatch{}
		}
		if len(n.batches) >= maxUpstreamBatches {
			return
		}
		typ := m.Param(1)
		parent := n.batches[m.Tags["batch"]]
		n.batches[ref[1:]] = upstreamBatch{typ: typ, history: parent.history || isHistoryBatchType(typ)}
	case '-':
		delete(n.batches, ref[1:])
	}
}

// noteServerTime measures the network's clock against ours from a live
// message (the welcome, a PONG).
func (n *network) noteServerTime(tags irc.Tags) {
	if t, ok := parseServerTime(tags["time"]); ok {
		n.skew = n.now().Sub(t)
	}
}

// isHistory reports whether an upstream message is history rather than
// live traffic. tags are the raw tags as received.
func (n *network) isHistory(tags irc.Tags) bool {
	if ref, ok := tags["batch"]; ok && n.batches[ref].history {
		return true
	}
	if t, ok := parseServerTime(tags["time"]); ok {
		return n.now().Sub(t)-n.skew > historyAge
	}
	return false
}

// handleHistoryText shows a private message from history without the
// engine: OTR data becomes a placeholder (once per message: continuation
// fragments are dropped), other OTR protocol messages are dropped, and
// plaintext passes, marked if the conversation with its sender is
// guarded now (I3: history tags are the server's word).
func (n *network) handleHistoryText(m *irc.Message) {
	text := m.Params[1]
	i := strings.Index(text, "?OTR")
	if i < 0 {
		if !n.guarded(m.Prefix.Name) {
			n.toClients(m)
			return
		}
		how := delivery{marked: true, tags: m.Tags}
		if cmd, body, ok := parseCTCP(text); ok && cmd == "ACTION" {
			how.action, text = true, body
		}
		n.deliverToClients(m.Prefix, how, text)
		return
	}
	rest := text[i:]
	switch {
	case strings.HasPrefix(rest, "?OTR:AAMD"), strings.HasPrefix(rest, "?OTR:AAID"):
	case strings.HasPrefix(rest, "?OTR|"), strings.HasPrefix(rest, "?OTR,"):
		if k, _, ok := fragmentIndex(rest); !ok || k != 1 {
			return
		}
	default:
		return // queries, key exchange, errors: nothing for the user
	}
	c := m.Copy()
	c.Params[1] = historyPlaceholder
	n.toClients(c)
}

// fragmentIndex parses the piece number k and count of an OTR fragment
// ("?OTR|sender|receiver,k,n,piece," for v3, "?OTR,k,n,piece," for v2).
func fragmentIndex(s string) (k, count int, ok bool) {
	var rest string
	switch {
	case strings.HasPrefix(s, "?OTR|"):
		_, after, found := strings.Cut(s[len("?OTR|"):], ",")
		if !found {
			return 0, 0, false
		}
		rest = after
	case strings.HasPrefix(s, "?OTR,"):
		rest = s[len("?OTR,"):]
	default:
		return 0, 0, false
	}
	ks, rest, found := strings.Cut(rest, ",")
	if !found {
		return 0, 0, false
	}
	ns, _, found := strings.Cut(rest, ",")
	if !found {
		return 0, 0, false
	}
	k, err1 := strconv.Atoi(ks)
	count, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil || k < 1 || count < k || count > 65535 {
		return 0, 0, false
	}
	return k, count, true
}
