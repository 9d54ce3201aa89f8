package proxy

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/irc.v4"
)

// Replies to one client's command go to that client only (doc.go,
// "Several clients"). Every command a client sends to the network is
// remembered as a pending command until its replies are over. A reply
// from the network is matched to a pending command:
//
//   - by label, when the network acknowledged labeled-response: otrbnc
//     puts its own label on each command it passes on, so the network's
//     answer (one labeled line, a labeled-response batch or ACK) names
//     its command exactly;
//   - otherwise by the command's reply family (which numerics it can
//     cause, which one ends it) and target (the nick, channel or mask in
//     the reply), oldest pending command first: a network answers the
//     commands of one connection in order.
//
// Only replies go to the asker. Lines that every client must see to keep
// its state right (JOIN, PART, NICK, channel MODE and TOPIC changes, a
// channel's names after a JOIN, messages) go to every client even inside
// a labeled response. A reply nobody asked for, or that matches no
// pending command, goes to every client. A reply to a client that has
// left goes to nobody.
//
// The list is bounded (maxPending; the oldest entry gives way) and an
// entry that has seen no reply for pendingTimeout is forgotten, so that a
// network that never answers cannot make it grow.

const (
	// maxPending bounds the pending commands of a network.
	maxPending = 512
	// pendingTimeout forgets a pending command that has seen no reply for
	// so long (commands wait in the paced upstream queue first).
	pendingTimeout = 5 * time.Minute
	// maxPendingTargets bounds the targets remembered for one command
	// (WHOIS a,b,c,…); replies about the others go to every client.
	maxPendingTargets = 16
)

// replyRule says how a reply belongs to a pending command.
type replyRule struct {
	// target is the index of the reply's parameter naming the command's
	// target (nick, channel, mask), or -1 when the reply names none: it
	// then belongs to the oldest pending command of its kind.
	target int
	// end marks the last reply to the command (for that target).
	end bool
}

// replyRules maps reply commands (numerics) to their rule.
type replyRules map[string]replyRule

func rules(target int, end bool, cmds ...string) replyRules {
	r := replyRules{}
	for _, c := range cmds {
		r[c] = replyRule{target: target, end: end}
	}
	return r
}

func mergeRules(rs ...replyRules) replyRules {
	out := replyRules{}
	for _, r := range rs {
		for k, v := range r {
			out[k] = v
		}
	}
	return out
}

// Reply families, by what the client asked. Errors that name a target
// (targetErrors) end any command naming that target, unless its family
// says otherwise; ERR_UNKNOWNCOMMAND, ERR_NEEDMOREPARAMS and FAIL name the
// command itself and end the oldest pending command of that name.
var (
	targetErrors = rules(1, true,
		"401", "402", "403", "404", "405", "406", "407", "432", "433", "436", "437",
		"441", "442", "443", "467", "471", "473", "474", "475", "476", "477", "478",
		"479", "482", "489")
	familyWhois = rules(1, false,
		"276", "301", "307", "310", "311", "312", "313", "317", "319", "320", "330",
		"335", "338", "378", "379", "671",
		// errors come before the end of the list
		"401", "402")
	familyWhowas = rules(1, false, "312", "314", "330", "338", "406")
	// familyUmode: MODE on our own nick, a query or a change.
	// The change itself (MODE alice +i) is the reply.
	familyUmode = rules(-1, true, "221", "501", "502", "MODE")
	// familyChanModes: MODE #chan.
	familyChanModes = mergeRules(rules(1, false, "324"), rules(1, true, "329"))
	// familyModeLists: MODE #chan b (or e, I, q): ban, exception,
	// invitation and quiet lists.
	familyModeLists = mergeRules(
		rules(1, false, "346", "348", "367", "728"),
		rules(1, true, "347", "349", "368", "729"))
	// familyChanModeChange: MODE #chan +o bob: only errors (the change
	// itself reaches every client).
	familyChanModeChange = rules(-1, true, "472", "501", "696")
)

// familyFor returns the reply family of a command a client sends, and the
// targets (as given) it names.
func (n *network) familyFor(m *irc.Message) (replyRules, []string) {
	p := m.Params
	first := m.Param(0)
	// list splits a comma-separated target list; the end of a WHOIS
	// (and WHOWAS, WHO) names the whole list.
	list := func(s string) []string {
		if s == "" {
			return nil
		}
		parts := strings.Split(s, ",")
		if len(parts) > 1 && (m.Command == "WHOIS" || m.Command == "WHOWAS" || m.Command == "WHO") {
			parts = append([]string{s}, parts...)
		}
		return parts
	}
	switch m.Command {
	case "WHOIS":
		if len(p) == 0 {
			return rules(-1, true, "431"), nil
		}
		return mergeRules(familyWhois, rules(1, true, "318"), rules(-1, true, "431")), list(p[len(p)-1])
	case "WHOWAS":
		return mergeRules(familyWhowas, rules(1, true, "369"), rules(-1, true, "431")), list(first)
	case "WHO":
		return mergeRules(rules(-1, false, "352", "354"), rules(1, true, "315")), list(first)
	case "NAMES":
		return mergeRules(rules(2, false, "353"), rules(1, true, "366")), list(first)
	case "LIST":
		return mergeRules(rules(-1, false, "321", "322"), rules(-1, true, "323")), nil
	case "MODE":
		switch {
		case first == "":
			return nil, nil
		case !n.isChannel(first):
			if n.isSelf(first) {
				return familyUmode, []string{first}
			}
			return rules(-1, true, "502"), []string{first}
		case len(p) == 1:
			return familyChanModes, []string{first}
		case len(p) == 2 && isModeListQuery(p[1]):
			return familyModeLists, []string{first}
		default:
			return familyChanModeChange, []string{first}
		}
	case "TOPIC":
		if len(p) == 1 {
			return mergeRules(rules(1, false, "332"), rules(1, true, "331", "333")), []string{first}
		}
		return nil, list(first)
	case "USERHOST":
		return rules(-1, true, "302"), nil
	case "ISON":
		return rules(-1, true, "303"), nil
	case "AWAY":
		return rules(-1, true, "305", "306"), nil
	case "MOTD":
		return mergeRules(rules(-1, false, "375", "372"), rules(-1, true, "376", "422")), nil
	case "INVITE":
		if len(p) == 0 {
			return rules(-1, true, "337", "336"), nil // the invite list
		}
		return rules(1, true, "341"), p
	case "KICK":
		targets := []string{first}
		if len(p) > 1 {
			targets = append(targets, strings.Split(p[1], ",")...)
		}
		return nil, targets
	case "JOIN", "PART":
		return nil, list(first)
	case "NICK":
		return nil, []string{first}
	}
	return nil, nil
}

// isModeListQuery reports whether MODE #chan s only asks for lists
// (b, e, I, q with an optional "+").
func isModeListQuery(s string) bool {
	s = strings.TrimPrefix(s, "+")
	if s == "" {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("beIq", c) {
			return false
		}
	}
	return true
}

// pendingCmd is a command a client sent to the network whose replies may
// still come.
type pendingCmd struct {
	// dc asked; nil once it has left (its replies then go to nobody).
	dc    *downstream
	cmd   string // upper case
	rules replyRules
	// targets are the folded targets the command names; done ones are
	// removed as their last reply arrives.
	targets []string
	// multi: the command names several targets, each ended separately
	// (JOIN #a,#b).
	multi bool
	// label is otrbnc's label on the command upstream, or "".
	label   string
	touched time.Time
	// release is the folded channel whose backlog waits for this command
	// (a NAMES sent when dc attached, see backlog.go).
	release string
}

// addPending remembers a command dc sends to the network and returns
// it; the caller labels the upstream message with its label, if any.
func (n *network) addPending(dc *downstream, m *irc.Message) *pendingCmd {
	r, targets := n.familyFor(m)
	p := &pendingCmd{dc: dc, cmd: strings.ToUpper(m.Command), rules: r, touched: n.now()}
	for _, t := range targets {
		if t != "" && len(p.targets) < maxPendingTargets {
			p.targets = append(p.targets, n.casemap.fold(t))
		}
	}
	switch p.cmd {
	case "JOIN", "PART", "NAMES":
		p.multi = len(targets) > 1
	}
	n.expirePending()
	if len(n.pending) >= maxPending {
		n.dropPending(0)
	}
	if n.upCaps["labeled-response"] && n.upCaps["batch"] {
		n.labelSeq++
		p.label = fmt.Sprintf("otrbnc%d", n.labelSeq)
	}
	n.pending = append(n.pending, p)
	return p
}

// sendCommand passes a client's command to the network, remembering it
// so that its replies reach dc only.
func (n *network) sendCommand(dc *downstream, m *irc.Message) error {
	p := n.addPending(dc, m)
	if p.label != "" {
		m.Tags = irc.Tags{"label": p.label}
	}
	err := n.toUpstreamMsg(m)
	if err != nil {
		n.removePending(p)
	}
	return err
}

// expirePending forgets commands that have seen no reply for too long
// (looking at most once a second).
func (n *network) expirePending() {
	now := n.now()
	if now.Sub(n.pendingSwept) < time.Second && !now.Before(n.pendingSwept) {
		return
	}
	n.pendingSwept = now
	for i := 0; i < len(n.pending); {
		if now.Sub(n.pending[i].touched) > pendingTimeout {
			n.dropPending(i)
			continue
		}
		i++
	}
}

// dropPending removes the i-th pending command; a backlog waiting for
// it is released.
func (n *network) dropPending(i int) {
	p := n.pending[i]
	n.pending = append(n.pending[:i], n.pending[i+1:]...)
	for ref, q := range n.labelBatches {
		if q == p {
			delete(n.labelBatches, ref)
		}
	}
	if p.release != "" && p.dc != nil {
		n.releaseChannelBacklog(p.dc, p.release)
	}
}

func (n *network) removePending(p *pendingCmd) {
	for i, q := range n.pending {
		if q == p {
			n.dropPending(i)
			return
		}
	}
}

// clearPending forgets every pending command (the upstream connection
// ended: no reply will come).
func (n *network) clearPending() {
	for len(n.pending) > 0 {
		n.dropPending(len(n.pending) - 1)
	}
	n.labelBatches = nil
}

// orphanPending is called when dc leaves: replies to its commands will
// go to nobody.
func (n *network) orphanPending(dc *downstream) {
	for _, p := range n.pending {
		if p.dc == dc {
			p.dc = nil
		}
	}
}

// relay sends a line from the network to the client that asked for it,
// or to every client. raw are the tags as the network sent them.
func (n *network) relay(m *irc.Message, raw irc.Tags) {
	p, end, ok := n.replyOwner(m, raw)
	if !ok {
		n.toClients(m)
		return
	}
	p.touched = n.now()
	if p.dc != nil && n.hasDownstream(p.dc) {
		n.toClient(p.dc, n.retarget(m, p.dc))
	}
	if end {
		n.removePending(p)
	}
}

// replyOwner finds the pending command m answers. end reports that m is
// its last reply.
func (n *network) replyOwner(m *irc.Message, raw irc.Tags) (p *pendingCmd, end, ok bool) {
	if len(n.pending) == 0 {
		return nil, false, false
	}
	n.expirePending()
	// A labeled reply, alone or inside a labeled-response batch.
	if label := raw["label"]; label != "" {
		p := n.pendingByLabel(label)
		if p == nil {
			return nil, false, false
		}
		if p.labeledOwns(m) {
			return p, true, true
		}
		n.removePending(p) // a single labeled line is the whole answer
		return nil, false, false
	}
	if ref := raw["batch"]; ref != "" {
		if p := n.labelBatches[ref]; p != nil {
			return p, false, p.labeledOwns(m)
		}
	}
	n.settle(m)
	if m.Command == "MODE" && n.isSelf(m.Param(0)) {
		// A change of our user modes a client asked for.
		for _, p := range n.pending {
			if p.label == "" && p.cmd == "MODE" && len(p.targets) == 1 && p.targets[0] == n.casemap.fold(m.Param(0)) {
				return p, true, true
			}
		}
		return nil, false, false
	}
	if !isNumeric(m.Command) && m.Command != "FAIL" && m.Command != "WARN" && m.Command != "NOTE" {
		return nil, false, false
	}
	for _, p := range n.pending {
		if p.label != "" {
			continue
		}
		rule, ok := p.ruleFor(m)
		if !ok {
			continue
		}
		if rule.target < 0 {
			return p, rule.end, true
		}
		if len(p.targets) == 0 {
			return p, rule.end, true
		}
		t := n.casemap.fold(m.Param(rule.target))
		for i, pt := range p.targets {
			if pt != t {
				continue
			}
			if rule.end && p.multi {
				p.targets = append(p.targets[:i], p.targets[i+1:]...)
				return p, len(p.targets) == 0, true
			}
			return p, rule.end, true
		}
	}
	return nil, false, false
}

// ruleFor returns how m belongs to p, if it does.
func (p *pendingCmd) ruleFor(m *irc.Message) (replyRule, bool) {
	switch m.Command {
	case "421", "461":
		if strings.EqualFold(m.Param(1), p.cmd) {
			return replyRule{target: -1, end: true}, true
		}
		return replyRule{}, false
	case "FAIL", "WARN", "NOTE":
		if strings.EqualFold(m.Param(0), p.cmd) {
			return replyRule{target: -1, end: m.Command == "FAIL"}, true
		}
		return replyRule{}, false
	}
	if r, ok := p.rules[m.Command]; ok {
		return r, true
	}
	if r, ok := targetErrors[m.Command]; ok && len(p.targets) > 0 {
		return r, true
	}
	return replyRule{}, false
}

// joinState are the numerics that follow a successful JOIN: every
// client, having seen the JOIN, needs them.
var joinState = map[string]bool{"324": true, "329": true, "332": true, "333": true, "353": true, "366": true}

// labeledOwns reports whether m, known by its label to answer p, goes to
// p's client only: a reply of p's family, or any numeric or standard
// reply except a joined channel's state; other lines (a JOIN, a NICK, a
// channel mode change) reach every client.
func (p *pendingCmd) labeledOwns(m *irc.Message) bool {
	if _, ok := p.ruleFor(m); ok {
		return true
	}
	switch {
	case m.Command == "FAIL" || m.Command == "WARN" || m.Command == "NOTE":
		return true
	case isNumeric(m.Command):
		return p.cmd != "JOIN" || !joinState[m.Command]
	}
	return false
}

// pendingByLabel returns the pending command with otrbnc's label, or nil.
func (n *network) pendingByLabel(label string) *pendingCmd {
	for _, p := range n.pending {
		if p.label == label {
			return p
		}
	}
	return nil
}

// settle ends pending commands whose effect the network just showed to
// everyone: our own JOIN, PART, KICK, NICK, TOPIC or channel MODE. The
// line itself still goes to every client.
func (n *network) settle(m *irc.Message) {
	if !n.isSelf(m.Prefix.Name) {
		return
	}
	cmd, target := m.Command, m.Param(0)
	switch cmd {
	case "JOIN", "PART", "KICK", "TOPIC":
	case "MODE":
		if !n.isChannel(target) {
			return
		}
	default:
		return
	}
	t := n.casemap.fold(target)
	for _, p := range n.pending {
		if p.label != "" || p.cmd != cmd {
			continue
		}
		for i, pt := range p.targets {
			if pt == t {
				if p.multi {
					p.targets = append(p.targets[:i], p.targets[i+1:]...)
					if len(p.targets) > 0 {
						return
					}
				}
				n.removePending(p)
				return
			}
		}
	}
}

// settleNick ends a pending NICK once the network changed our nick.
func (n *network) settleNick(newNick string) {
	t := n.casemap.fold(newNick)
	for _, p := range n.pending {
		if p.cmd == "NICK" && len(p.targets) == 1 && p.targets[0] == t {
			n.removePending(p)
			return
		}
	}
}

// onLabeledBatch notes the start of a labeled-response batch from the
// network (its lines answer one pending command) and ends the command
// with the batch.
func (n *network) onLabeledBatch(m *irc.Message) {
	ref := m.Param(0)
	if len(ref) < 2 {
		return
	}
	switch ref[0] {
	case '+':
		if !strings.EqualFold(m.Param(1), "labeled-response") {
			return
		}
		if p := n.pendingByLabel(m.Tags["label"]); p != nil {
			if n.labelBatches == nil {
				n.labelBatches = map[string]*pendingCmd{}
			}
			if len(n.labelBatches) < maxUpstreamBatches {
				n.labelBatches[ref[1:]] = p
			}
		}
	case '-':
		if p := n.labelBatches[ref[1:]]; p != nil {
			delete(n.labelBatches, ref[1:])
			n.removePending(p)
		}
	}
}

// isNumeric reports whether cmd is a three-digit numeric reply.
func isNumeric(cmd string) bool {
	return len(cmd) == 3 && isDigit(cmd[0]) && isDigit(cmd[1]) && isDigit(cmd[2])
}

// onACK ends the labeled command the network acknowledged without reply.
func (n *network) onACK(raw irc.Tags) {
	if p := n.pendingByLabel(raw["label"]); p != nil {
		n.removePending(p)
	}
}
