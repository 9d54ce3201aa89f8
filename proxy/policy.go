package proxy

import (
	"fmt"
	"slices"
	"strings"

	"otrbnc/otrcore"
)

// policyRule gives the policy of the nicks a mask matches.
type policyRule struct {
	Mask   string `json:"mask"`
	Policy string `json:"policy"`
}

// defaultIgnore is the ignore list until the user changes it: network
// services (NickServ, ChanServ, …). Nicks starting with "*" (bouncer
// modules such as *status) are always ignored.
var defaultIgnore = []string{"*serv"}

// validMask checks a nick or nick mask ("*" and "?" are wildcards).
func validMask(m string) error {
	if m == "" || len(m) > 64 || strings.ContainsAny(m, " ,!@:\x00\r\n") {
		return fmt.Errorf("%q is not a nick or nick mask", m)
	}
	return nil
}

func isMask(m string) bool { return strings.ContainsAny(m, "*?") }

// matchMask reports whether name matches the wildcard pattern: "*" is
// any run of bytes, "?" one byte. Both are already case-folded. It runs
// in O(len(pattern)·len(name)).
func matchMask(pattern, name string) bool {
	p, s := 0, 0
	star, mark := -1, 0
	for s < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, s
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == name[s]):
			p++
			s++
		case star >= 0:
			p = star + 1
			mark++
			s = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ignoreList returns the ignore masks in effect.
func (n *network) ignoreList() []string {
	if n.saved.Ignore != nil {
		return *n.saved.Ignore
	}
	return defaultIgnore
}

// matchIgnore returns the ignore mask that matches nick, or "" (the
// computation behind peerPolicy.ignored; see ignoredBy).
func (n *network) matchIgnore(nick string) string {
	if strings.HasPrefix(nick, "*") {
		return "*…"
	}
	f := n.casemap.fold(nick)
	for _, m := range n.ignoreList() {
		if matchMask(n.casemap.fold(m), f) {
			return m
		}
	}
	return ""
}

// policySource returns the policy and where it comes from for nick,
// without the ignore list and the whitespace_tags setting.
func (n *network) policySource(nick string) (otrcore.Policy, string) {
	f := n.casemap.fold(nick)
	parse := func(s string) otrcore.Policy {
		p, _ := otrcore.ParsePolicy(s) // validated when set or loaded
		return p
	}
	// Exact nicks first (set with *otr, then the configuration file),
	// then masks in the order they were added.
	for _, r := range n.saved.Policies {
		if !isMask(r.Mask) && n.casemap.fold(r.Mask) == f {
			return parse(r.Policy), "policy " + r.Mask
		}
	}
	if p, ok := n.otr.policies[f]; ok {
		return p, "configuration file"
	}
	for _, r := range n.saved.Policies {
		if isMask(r.Mask) && matchMask(n.casemap.fold(r.Mask), f) {
			return parse(r.Policy), "policy " + r.Mask
		}
	}
	if n.saved.KnownPolicy != "" && n.otr.id.Trust != nil && len(n.otr.id.Trust.KnownFingerprints(f)) > 0 {
		return parse(n.saved.KnownPolicy), "policy known"
	}
	if n.saved.DefaultPolicy != "" {
		return parse(n.saved.DefaultPolicy), "policy default"
	}
	return n.otr.policy, "configuration file default"
}

// defaultPolicy is the policy of nicks no rule names.
func (n *network) defaultPolicy() otrcore.Policy {
	if p, err := otrcore.ParsePolicy(n.saved.DefaultPolicy); err == nil && n.saved.DefaultPolicy != "" {
		return p
	}
	return n.otr.policy
}

// setPolicyRule adds, replaces or (policy "") removes the rule for mask.
func (n *network) setPolicyRule(mask, policy string) (removed bool) {
	f := n.casemap.fold(mask)
	for i, r := range n.saved.Policies {
		if n.casemap.fold(r.Mask) == f {
			if policy == "" {
				n.saved.Policies = slices.Delete(n.saved.Policies, i, i+1)
				return true
			}
			n.saved.Policies[i] = policyRule{Mask: mask, Policy: policy}
			return false
		}
	}
	if policy != "" {
		n.saved.Policies = append(n.saved.Policies, policyRule{Mask: mask, Policy: policy})
	}
	return false
}
