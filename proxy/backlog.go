package proxy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/irc.v4"
)

// The backlog keeps, in memory only, what clients have not seen yet:
// channel and private messages (decrypted OTR text included) and *otr
// notices. Nothing of it is ever written to disk.
//
// A client names its identity in its username, as with soju:
// "user/network@client" (see parseClientUser); without "@client" it uses
// the network's default identity. Every kept line has a sequence number
// (one counter per network); an identity's cursor is the last number it
// was shown. While one of its clients is attached an identity sees
// everything live; when its last client leaves, its cursor stays where
// it was, and the identity's next client is shown, in order, everything
// kept after the cursor: private messages and *otr notices at once, each
// channel's messages after that channel's JOIN and names list. An
// identity otrbnc has not met since it started is shown everything kept.
//
// A line is kept only while some identity otrbnc knows has not seen it
// (or while otrbnc knows none yet). The bounds: backlog_lines lines per
// target (channel or nick; *otr notices have at least minServiceBacklog),
// maxBacklogTargets targets (the least recently active gives way; *otr
// never does), maxBacklogBytes in all (the oldest lines give way) and
// maxClientIdentities identities (the one unseen for longest is
// forgotten). An identity is told how many lines it missed were dropped.

const (
	// maxBacklogTargets bounds the channels and nicks with kept lines.
	maxBacklogTargets = 128
	// maxBacklogBytes bounds the size of all kept lines of a network.
	maxBacklogBytes = 32 << 20
	// maxClientIdentities bounds the identities a network remembers.
	maxClientIdentities = 32
	// minServiceBacklog is how many *otr notices are kept at least.
	minServiceBacklog = 100
	// maxClientName bounds the length of an identity's name.
	maxClientName = 32
	// replayChunk is how many lines are queued to a client at once.
	replayChunk = 64
	// serviceKey is the backlog target of *otr notices.
	serviceKey = serviceNick
)

// backlogLine is one kept line.
type backlogLine struct {
	seq uint64
	at  time.Time
	// m is the message (with its time tag); nil for a *otr notice.
	m *irc.Message
	// text is the *otr notice.
	text string
	// own: we sent it (from some client); shown only to clients that
	// want their other clients' messages (echo-message,
	// znc.in/self-message).
	own bool
	// toSelf: a private message to us, addressed to the client's nick
	// when shown.
	toSelf bool
	size   int
}

// backlogTarget holds the kept lines of one channel, nick or *otr, oldest
// first, in a ring of at most max lines.
type backlogTarget struct {
	key     string
	channel bool
	max     int
	lines   []backlogLine
	head    int // index of the oldest line once the ring is full
}

func (t *backlogTarget) len() int { return len(t.lines) }

// at returns the i-th oldest line.
func (t *backlogTarget) at(i int) *backlogLine { return &t.lines[(t.head+i)%len(t.lines)] }

// newest returns the sequence number of the newest line (0 when empty).
func (t *backlogTarget) newest() uint64 {
	if len(t.lines) == 0 {
		return 0
	}
	return t.at(len(t.lines) - 1).seq
}

// push adds l; when the ring is full the oldest line is returned.
func (t *backlogTarget) push(l backlogLine) (dropped backlogLine, ok bool) {
	if len(t.lines) < t.max {
		t.lines = append(t.lines, l)
		return backlogLine{}, false
	}
	dropped = t.lines[t.head]
	t.lines[t.head] = l
	t.head = (t.head + 1) % len(t.lines)
	return dropped, true
}

// popOldest removes the oldest line.
func (t *backlogTarget) popOldest() backlogLine {
	l := *t.at(0)
	rest := make([]backlogLine, 0, len(t.lines)-1)
	for i := 1; i < len(t.lines); i++ {
		rest = append(rest, *t.at(i))
	}
	t.lines, t.head = rest, 0
	return l
}

// trim removes the lines numbered upTo or lower.
func (t *backlogTarget) trim(upTo uint64) (removed []backlogLine) {
	n := 0
	for n < len(t.lines) && t.at(n).seq <= upTo {
		n++
	}
	if n == 0 {
		return nil
	}
	removed = make([]backlogLine, 0, n)
	rest := make([]backlogLine, 0, len(t.lines)-n)
	for i := range len(t.lines) {
		if i < n {
			removed = append(removed, *t.at(i))
		} else {
			rest = append(rest, *t.at(i))
		}
	}
	t.lines, t.head = rest, 0
	return removed
}

// clientIdentity is a client's name for itself ("laptop"), with what it
// has seen.
type clientIdentity struct {
	name string
	// attached counts its attached clients.
	attached int
	// cursor is the last line it was shown (while no client of it is
	// attached).
	cursor uint64
	// lost counts lines dropped before it saw them.
	lost int
	// lastSeen orders identities for forgetting.
	lastSeen time.Time
}

// backlogStore is a network's backlog. It belongs to the network's
// goroutine.
type backlogStore struct {
	lines   int // per target
	seq     uint64
	bytes   int
	targets map[string]*backlogTarget
	ids     map[string]*clientIdentity
}

func newBacklogStore(lines int) *backlogStore {
	if lines <= 0 {
		lines = 1
	}
	return &backlogStore{lines: lines, targets: map[string]*backlogTarget{}, ids: map[string]*clientIdentity{}}
}

// minCursor is the last line every known identity has seen; 0 when
// otrbnc knows no identity yet (lines are kept for the first one).
func (b *backlogStore) minCursor() uint64 {
	if len(b.ids) == 0 {
		return 0
	}
	low := b.seq
	for _, id := range b.ids {
		if id.attached == 0 && id.cursor < low {
			low = id.cursor
		}
	}
	return low
}

// wanted reports whether the next line added will be kept: false when
// every known identity is attached (and so sees it live).
func (b *backlogStore) wanted() bool {
	if len(b.ids) == 0 {
		return true
	}
	for _, id := range b.ids {
		if id.attached == 0 && id.cursor <= b.seq {
			return true
		}
	}
	return false
}

// add keeps a line for target key (folded) unless every known identity
// is attached (and so sees it live).
func (b *backlogStore) add(key string, channel bool, l backlogLine) {
	if !b.wanted() {
		b.seq++
		return
	}
	b.seq++
	l.seq = b.seq
	l.size = lineSize(l)
	t := b.targets[key]
	if t == nil {
		if key != serviceKey && b.countTargets() >= maxBacklogTargets {
			b.evictTarget()
		}
		max := b.lines
		if key == serviceKey && max < minServiceBacklog {
			max = minServiceBacklog
		}
		t = &backlogTarget{key: key, channel: channel, max: max}
		b.targets[key] = t
	}
	if dropped, ok := t.push(l); ok {
		b.lose(dropped)
	}
	b.bytes += l.size
	for b.bytes > maxBacklogBytes {
		b.dropOldest()
	}
}

// lineSize estimates the memory a kept line takes.
func lineSize(l backlogLine) int {
	size := 64 + len(l.text)
	if m := l.m; m != nil {
		size += len(m.Command) + len(m.Prefix.Name) + len(m.Prefix.User) + len(m.Prefix.Host)
		for _, p := range m.Params {
			size += len(p) + 16
		}
		for k, v := range m.Tags {
			size += len(k) + len(v) + 32
		}
	}
	return size
}

func (b *backlogStore) countTargets() int {
	n := len(b.targets)
	if b.targets[serviceKey] != nil {
		n--
	}
	return n
}

// evictTarget drops the least recently active target (never *otr's).
func (b *backlogStore) evictTarget() {
	var victim *backlogTarget
	for _, t := range b.targets {
		if t.key != serviceKey && (victim == nil || t.newest() < victim.newest()) {
			victim = t
		}
	}
	if victim == nil {
		return
	}
	for i := range victim.len() {
		b.lose(*victim.at(i))
	}
	delete(b.targets, victim.key)
}

// dropOldest drops the oldest kept line of all.
func (b *backlogStore) dropOldest() {
	var victim *backlogTarget
	for _, t := range b.targets {
		if t.len() > 0 && (victim == nil || t.at(0).seq < victim.at(0).seq) {
			victim = t
		}
	}
	if victim == nil {
		b.bytes = 0
		return
	}
	b.lose(victim.popOldest())
	if victim.len() == 0 {
		delete(b.targets, victim.key)
	}
}

// lose accounts for a line dropped for lack of room: every identity
// that had not seen it is told later.
func (b *backlogStore) lose(l backlogLine) {
	b.bytes -= l.size
	for _, id := range b.ids {
		if id.attached == 0 && id.cursor < l.seq {
			id.lost++
		}
	}
}

// trim drops the lines every known identity has seen.
func (b *backlogStore) trim() {
	low := b.minCursor()
	if low == 0 {
		return
	}
	for key, t := range b.targets {
		for _, l := range t.trim(low) {
			b.bytes -= l.size
		}
		if t.len() == 0 {
			delete(b.targets, key)
		}
	}
}

// identity returns the identity named name, meeting it if needed (it
// has then seen nothing); nil when every remembered identity is
// attached and there is no room for another.
func (b *backlogStore) identity(name string, now time.Time) *clientIdentity {
	if id := b.ids[name]; id != nil {
		return id
	}
	if len(b.ids) >= maxClientIdentities {
		var oldest *clientIdentity
		for _, id := range b.ids {
			if id.attached == 0 && (oldest == nil || id.lastSeen.Before(oldest.lastSeen)) {
				oldest = id
			}
		}
		if oldest == nil {
			return nil
		}
		delete(b.ids, oldest.name)
		b.trim()
	}
	id := &clientIdentity{name: name, lastSeen: now}
	b.ids[name] = id
	return id
}

// since returns the kept lines after cursor, in order.
func (b *backlogStore) since(cursor uint64) []backlogLine {
	var out []backlogLine
	for _, t := range b.targets {
		for i := range t.len() {
			if l := t.at(i); l.seq > cursor {
				out = append(out, *l)
			}
		}
	}
	slices.SortFunc(out, func(a, b backlogLine) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	return out
}

// parseClientUser splits a client's username into the network it names
// and its identity: "name", "anything/name", either followed by
// "@client". ok is false when the identity is not a valid name.
func parseClientUser(user string) (network, client string, ok bool) {
	rest := user
	slash := strings.LastIndexByte(user, '/')
	if at := strings.LastIndexByte(user, '@'); at >= 0 && at > slash {
		rest, client = user[:at], user[at+1:]
		if !validClientName(client) {
			return "", "", false
		}
	}
	network = rest
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		network = rest[i+1:]
	}
	return network, client, true
}

// validClientName reports whether s may name a client identity: 1 to
// maxClientName letters, digits, '.', '_' and '-'.
func validClientName(s string) bool {
	if s == "" || len(s) > maxClientName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// keepTags is what a kept message keeps of its tags.
func keepTags(tags irc.Tags, at time.Time) irc.Tags {
	out := irc.Tags{"time": formatServerTime(at)}
	if t, ok := parseServerTime(tags["time"]); ok {
		out["time"] = formatServerTime(t)
	}
	if id := tags["msgid"]; id != "" && len(id) <= 128 {
		out["msgid"] = id
	}
	return out
}

// backlogKey returns where m (a line about to reach clients) is kept:
// the folded channel, or the nick we talk with, with own and toSelf; ok
// is false for lines that are not kept (not PRIVMSG or NOTICE, CTCP
// other than ACTION, notices to other targets).
func (n *network) backlogKey(m *irc.Message) (key string, channel, own, toSelf, ok bool) {
	if (m.Command != "PRIVMSG" && m.Command != "NOTICE") || len(m.Params) < 2 {
		return "", false, false, false, false
	}
	if cmd, _, isCTCP := parseCTCP(m.Params[1]); isCTCP && cmd != "ACTION" {
		return "", false, false, false, false
	}
	target := m.Params[0]
	own = m.Prefix != nil && m.Prefix.Name != "" && n.isSelf(m.Prefix.Name)
	switch {
	case n.isChannel(target):
		return n.channelKey(target), true, own, false, true
	case own:
		return n.casemap.fold(target), false, true, false, true
	case n.isSelf(target):
		from := "*"
		if m.Prefix != nil && m.Prefix.Name != "" {
			from = m.Prefix.Name
		}
		return n.casemap.fold(from), false, false, true, true
	}
	return "", false, false, false, false
}

// channelKey folds a channel name, without STATUSMSG prefixes (@#chan is
// kept with #chan).
func (n *network) channelKey(target string) string {
	for len(target) > 1 && strings.IndexByte(n.statusmsg, target[0]) >= 0 && strings.IndexByte(n.chantypes, target[0]) < 0 {
		target = target[1:]
	}
	return n.casemap.fold(target)
}

// keep adds m (a message about to reach clients) to the backlog, if it
// is kept at all.
func (n *network) keep(m *irc.Message) {
	key, channel, own, toSelf, ok := n.backlogKey(m)
	if !ok {
		return
	}
	if !n.backlog.wanted() {
		n.backlog.seq++ // every known identity sees it live (as add)
		return
	}
	at := n.now()
	prefix := &irc.Prefix{}
	if m.Prefix != nil {
		prefix = m.Prefix.Copy()
	}
	c := &irc.Message{Tags: keepTags(m.Tags, at), Prefix: prefix, Command: m.Command, Params: slices.Clone(m.Params)}
	n.backlog.add(key, channel, backlogLine{at: at, m: c, own: own, toSelf: toSelf})
}

// keepNotice adds a *otr notice to the backlog.
func (n *network) keepNotice(text string) {
	n.backlog.add(serviceKey, false, backlogLine{at: n.now(), text: text})
}

// wantsOwn reports whether dc is shown what other clients sent
// (echo-message, or ZNC's and soju's znc.in/self-message).
func wantsOwn(dc *downstream) bool {
	return dc.hasCap("echo-message") || dc.hasCap("znc.in/self-message")
}

// attachBacklog marks dc's identity attached and returns what it has not
// seen yet, in order.
func (n *network) attachBacklog(dc *downstream) (lines []backlogLine, lost int, ok bool) {
	id := n.backlog.identity(dc.clientName, n.now())
	dc.identity = id
	if id == nil {
		return nil, 0, false
	}
	id.lastSeen = n.now()
	id.attached++
	if id.attached > 1 {
		return nil, 0, true // another client of it is attached: nothing missed
	}
	lines = n.backlog.since(id.cursor)
	lost, id.lost = id.lost, 0
	id.cursor = n.backlog.seq
	n.backlog.trim()
	return lines, lost, true
}

// detachBacklog marks dc's identity detached when dc was its last
// client: its cursor stays at what it was shown (a channel backlog that
// was still waiting for its names list counts as not shown).
func (n *network) detachBacklog(dc *downstream) {
	id := dc.identity
	if id == nil {
		return
	}
	id.lastSeen = n.now()
	if id.attached--; id.attached > 0 {
		return
	}
	id.cursor = n.backlog.seq
	for _, ls := range dc.deferred {
		for _, l := range ls {
			if l.seq > 0 && l.seq <= id.cursor {
				id.cursor = l.seq - 1
			}
		}
	}
}

// replayBacklog shows dc what its identity missed: a summary, private
// messages and *otr notices now, and each channel in waiting (folded
// names whose names list dc is about to get) once its list is complete.
func (n *network) replayBacklog(dc *downstream, lines []backlogLine, lost int, waiting map[string]bool) {
	var now []*irc.Message
	var private, channel, notices int
	for _, l := range lines {
		if l.own && !wantsOwn(dc) {
			continue
		}
		switch {
		case l.m == nil:
			notices++
		case n.isChannel(l.m.Param(0)):
			channel++
		default:
			private++
		}
		if l.m != nil && n.isChannel(l.m.Param(0)) {
			if key := n.channelKey(l.m.Param(0)); waiting[key] {
				if dc.deferred == nil {
					dc.deferred = map[string][]backlogLine{}
				}
				dc.deferred[key] = append(dc.deferred[key], l)
				continue
			}
		}
		now = append(now, n.replayLines(dc, l)...)
	}
	if lost > 0 || private+channel+notices > 0 {
		who := "this client"
		if dc.clientName != "" {
			who = "client " + dc.clientName
		}
		note := fmt.Sprintf("while %s was away: %d private message(s), %d channel message(s) and %d *otr notice(s)", who, private, channel, notices)
		if lost > 0 {
			note += fmt.Sprintf("; %d older message(s) did not fit in memory and are lost", lost)
		}
		n.tellClient(dc, note)
	}
	n.writeChunked(dc, now)
}

// replayLines returns a kept line as dc is shown it.
func (n *network) replayLines(dc *downstream, l backlogLine) []*irc.Message {
	if l.m == nil {
		var out []*irc.Message
		for _, line := range serviceLines(l.text) {
			m := n.serviceMsg(dc, line)
			m.Tags["time"] = formatServerTime(l.at)
			out = append(out, n.replayed(dc, m))
		}
		return out
	}
	m := l.m
	if l.toSelf && m.Params[0] != dc.nick {
		m = m.Copy()
		m.Params[0] = dc.nick
	}
	return []*irc.Message{n.replayed(dc, m)}
}

// writeChunked queues ms to dc in batches of replayChunk lines.
func (n *network) writeChunked(dc *downstream, ms []*irc.Message) {
	for len(ms) > 0 {
		k := min(len(ms), replayChunk)
		dc.write(ms[:k]...)
		ms = ms[k:]
	}
}

// releaseChannelBacklog shows dc the channel's backlog that waited for
// the channel's names list, with what arrived for it meanwhile.
func (n *network) releaseChannelBacklog(dc *downstream, key string) {
	ls, ok := dc.deferred[key]
	if !ok {
		return
	}
	delete(dc.deferred, key)
	if !n.hasDownstream(dc) {
		return
	}
	var out []*irc.Message
	for _, l := range ls {
		out = append(out, n.replayLines(dc, l)...)
	}
	n.writeChunked(dc, out)
}

// releaseAllBacklog shows dc every channel backlog still waiting.
func (n *network) releaseAllBacklog(dc *downstream) {
	keys := make([]string, 0, len(dc.deferred))
	for k := range dc.deferred {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n.releaseChannelBacklog(dc, k)
	}
}

// deferLive holds a live channel line for dc while that channel's backlog
// waits for its names list, so that the client sees them in order; false
// when m can go now.
func (n *network) deferLive(dc *downstream, m *irc.Message) bool {
	if len(dc.deferred) == 0 || (m.Command != "PRIVMSG" && m.Command != "NOTICE" && m.Command != "TAGMSG") || !n.isChannel(m.Param(0)) {
		return false
	}
	key := n.channelKey(m.Param(0))
	ls, ok := dc.deferred[key]
	if !ok {
		return false
	}
	if len(ls) >= n.backlog.lines+maxDeferredLive {
		n.releaseChannelBacklog(dc, key)
		return false
	}
	c := m.Copy()
	if c.Tags["time"] == "" {
		c.Tags["time"] = formatServerTime(n.now())
	}
	dc.deferred[key] = append(ls, backlogLine{at: n.now(), m: c})
	return true
}

// maxDeferredLive bounds the live lines held for one channel while its
// backlog waits; beyond, the backlog is shown at once.
const maxDeferredLive = 256
