package proxy

import (
	"strings"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
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
	switch line := otrcore.Classify(m.Params[1]); {
	case line.Kind == otrcore.LinePlain:
		if !n.guarded(m.Prefix.Name) {
			n.toClients(m)
			return
		}
		how := delivery{marked: true, tags: m.Tags}
		text := m.Params[1]
		if cmd, body, ok := parseCTCP(text); ok && cmd == "ACTION" {
			how.action, text = true, body
		}
		n.deliverToClients(m.Prefix, how, text)
		return
	case line.Kind == otrcore.LineData:
	case line.Kind == otrcore.LineFragment && line.Piece == 1 && (line.Message == otrcore.MessageData || line.Message == 0):
	default:
		return // queries, key exchange, errors, unreadable lines: nothing for the user
	}
	c := m.Copy()
	c.Params[1] = historyPlaceholder
	n.toClients(c)
}
