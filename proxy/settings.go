package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"otrbnc/keystore/atomicfile"
	"otrbnc/otrcore"
)

// What a network remembers across restarts: the *otr settings, policies
// and ignore list the user changed. It lives in the state directory as
// "settings-NAME.json" (mode 0600, replaced atomically on every change),
// next to the keystore's files. Values set there take precedence over the
// configuration file; "unset" returns to it.

const (
	settingsFormat  = "otrbnc-settings"
	settingsVersion = 1
	settingsPrefix  = "settings-"
	settingsSuffix  = ".json"
	// maxSettingsFile bounds how much of a settings file is read.
	maxSettingsFile = 4 << 20
	// maxRules bounds policy rules and ignore masks.
	maxRules = 1000
)

// policyRule gives the policy of the nicks a mask matches.
type policyRule struct {
	Mask   string `json:"mask"`
	Policy string `json:"policy"`
}

// savedState is the JSON form of a settings file.
type savedState struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Network string `json:"network"`
	// Settings holds the values changed with "set", by name.
	Settings map[string]string `json:"settings,omitempty"`
	// DefaultPolicy and KnownPolicy are empty when not changed.
	DefaultPolicy string `json:"default_policy,omitempty"`
	KnownPolicy   string `json:"known_policy,omitempty"`
	// Policies are per nick or mask, in the order they were added.
	Policies []policyRule `json:"policies,omitempty"`
	// Ignore is the ignore list; absent means the default list.
	Ignore *[]string `json:"ignore,omitempty"`
}

// defaultIgnore is the ignore list until the user changes it: network
// services (NickServ, ChanServ, …). Nicks starting with "*" (bouncer
// modules such as *status) are always ignored.
var defaultIgnore = []string{"*serv"}

// settingsPath returns the settings file of network in dir.
func settingsPath(dir, network string) string {
	return filepath.Join(dir, settingsPrefix+network+settingsSuffix)
}

// loadSettings reads the settings of network from dir. A missing file is
// an empty state; an unreadable one is an error naming it, so that a
// policy such as "always" is never silently forgotten.
func loadSettings(dir, network string) (*savedState, error) {
	st := &savedState{}
	if dir == "" {
		return st, nil
	}
	removeSettingsTemps(dir, network)
	path := settingsPath(dir, network)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading settings: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSettingsFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading settings: %w", err)
	}
	if len(data) > maxSettingsFile {
		return nil, fmt.Errorf("settings file %s is larger than %d bytes", path, maxSettingsFile)
	}
	st, err = parseSettings(data, network)
	if err != nil {
		return nil, fmt.Errorf("settings file %s (left untouched; fix or move it away): %w", path, err)
	}
	return st, nil
}

// removeSettingsTemps deletes temporary files left by an interrupted save.
func removeSettingsTemps(dir, network string) {
	name := settingsPrefix + network + settingsSuffix
	atomicfile.RemoveStale(dir, func(n string) bool { return n == name })
}

// parseSettings decodes and validates a settings file.
func parseSettings(data []byte, network string) (*savedState, error) {
	var st savedState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not valid JSON: data after the object")
	}
	if st.Format != settingsFormat {
		return nil, fmt.Errorf("not an otrbnc settings file (format %q)", st.Format)
	}
	if st.Version != settingsVersion {
		return nil, fmt.Errorf("unsupported settings version %d", st.Version)
	}
	if st.Network != network {
		return nil, fmt.Errorf("written for network %q", st.Network)
	}
	// Values are validated and normalised as if typed with *otr.
	for name, v := range st.Settings {
		s := lookupSetting(name)
		if s == nil {
			return nil, fmt.Errorf("unknown setting %q", name)
		}
		nv, err := s.parse(v)
		if err != nil {
			return nil, fmt.Errorf("setting %s: %w", name, err)
		}
		st.Settings[name] = nv
	}
	if len(st.Settings) == 0 {
		st.Settings = nil
	}
	for _, p := range []*string{&st.DefaultPolicy, &st.KnownPolicy} {
		if *p != "" {
			pol, err := otrcore.ParsePolicy(*p)
			if err != nil {
				return nil, err
			}
			*p = pol.String()
		}
	}
	if len(st.Policies) > maxRules {
		return nil, fmt.Errorf("more than %d policy rules", maxRules)
	}
	for i, r := range st.Policies {
		if err := validMask(r.Mask); err != nil {
			return nil, err
		}
		pol, err := otrcore.ParsePolicy(r.Policy)
		if err != nil {
			return nil, err
		}
		st.Policies[i].Policy = pol.String()
	}
	if len(st.Policies) == 0 {
		st.Policies = nil
	}
	if st.Ignore != nil {
		if len(*st.Ignore) > maxRules {
			return nil, fmt.Errorf("more than %d ignore masks", maxRules)
		}
		for _, m := range *st.Ignore {
			if err := validMask(m); err != nil {
				return nil, err
			}
		}
	}
	return &st, nil
}

// saveSettings writes st atomically: a temporary file (mode 0600) is
// written and flushed, renamed over the old file, and the directory is
// flushed, so a crash leaves the old or the new settings.
func saveSettings(dir string, st *savedState) error {
	if dir == "" {
		return errNoStateDir
	}
	st.Format, st.Version = settingsFormat, settingsVersion
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding settings: %w", err)
	}
	data = append(data, '\n')
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	if err := atomicfile.Write(settingsPath(dir, st.Network), data); err != nil {
		return fmt.Errorf("saving settings: %w", err)
	}
	return nil
}

// errNoStateDir means settings cannot be saved.
var errNoStateDir = errors.New("no state directory configured; the change lasts until otrbnc stops")

// ---------------------------------------------------------------------
// Settings changed with "set".

// setting is one row of the settings table.
type setting struct {
	name   string
	values string // allowed values, for help
	help   string
	// def returns the value used when the user did not set one (from the
	// configuration file).
	def func(n *network) string
	// parse validates and normalises a value.
	parse func(v string) (string, error)
}

func oneOf(vals ...string) func(string) (string, error) {
	return func(v string) (string, error) {
		for _, x := range vals {
			if strings.EqualFold(v, x) {
				return x, nil
			}
		}
		return "", fmt.Errorf("want %s", strings.Join(vals, " or "))
	}
}

func onOff(v string) (string, error) {
	switch strings.ToLower(v) {
	case "on", "yes", "true", "1":
		return "on", nil
	case "off", "no", "false", "0":
		return "off", nil
	}
	return "", errors.New("want on or off")
}

// settingsTable lists every setting, sorted by name.
var settingsTable = []setting{
	{
		name: "client_tags", values: "strip|pass",
		help: "client-only tags (+typing, +draft/reply, …) on messages to peers whose messages are encrypted: strip them (they would go in clear) or pass them on the first line; TAGMSG to such peers is dropped when stripping",
		def:  func(*network) string { return "strip" }, parse: oneOf("strip", "pass"),
	},
	{
		name: "fragment_size", values: "auto|200-480",
		help: "the size of OTR fragments sent to peers; auto computes it from our visible nick!user@host",
		def: func(n *network) string {
			if n.cfg.FragmentSize > 0 {
				return strconv.Itoa(n.cfg.FragmentSize)
			}
			return "auto"
		},
		parse: func(v string) (string, error) {
			if strings.EqualFold(v, "auto") {
				return "auto", nil
			}
			k, err := strconv.Atoi(v)
			if err != nil || k < minFragmentSize || k > maxFragmentSize {
				return "", fmt.Errorf("want auto or a number from %d to %d", minFragmentSize, maxFragmentSize)
			}
			return strconv.Itoa(k), nil
		},
	},
	{
		name: "marker", values: "text",
		help: "the text put before a message that arrived unencrypted during a private conversation",
		def:  func(n *network) string { return n.cfg.PlaintextMarker },
		parse: func(v string) (string, error) {
			v = strings.TrimSpace(neutralize(v))
			if v == "" || len(v) > 64 {
				return "", errors.New("want 1 to 64 visible characters")
			}
			return v, nil
		},
	},
	{
		name: "notify", values: "privmsg|notice",
		help: "whether *otr talks to you with PRIVMSG (a query window) or NOTICE",
		def:  func(*network) string { return "privmsg" }, parse: oneOf("privmsg", "notice"),
	},
	{
		name: "whitespace_tags", values: "on|off",
		help: "whether policy opportunistic marks plaintext messages with the OTR whitespace tag (invisible spaces and tabs that some bots and bridges mangle)",
		def:  func(*network) string { return "on" }, parse: onOff,
	},
}

// lookupSetting finds a setting by exact name.
func lookupSetting(name string) *setting {
	for i := range settingsTable {
		if settingsTable[i].name == name {
			return &settingsTable[i]
		}
	}
	return nil
}

// findSetting finds a setting by name or unique prefix.
func findSetting(word string) (*setting, error) {
	word = strings.ToLower(word)
	if s := lookupSetting(word); s != nil {
		return s, nil
	}
	var found []string
	for _, s := range settingsTable {
		if strings.HasPrefix(s.name, word) {
			found = append(found, s.name)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("unknown setting %q; send \"set\" for the list", word)
	case 1:
		return lookupSetting(found[0]), nil
	}
	return nil, fmt.Errorf("ambiguous setting %q: %s", word, strings.Join(found, ", "))
}

// setting returns the effective value of a setting.
func (n *network) setting(name string) string {
	if v, ok := n.saved.Settings[name]; ok {
		return v
	}
	if s := lookupSetting(name); s != nil {
		return s.def(n)
	}
	return ""
}

// marker is the plaintext marker in effect.
func (n *network) marker() string { return n.setting("marker") }

// save writes the network's settings; the error explains what happens.
func (n *network) save() error {
	n.saved.Network = n.cfg.Name
	if err := saveSettings(n.stateDir, n.saved); err != nil {
		if errors.Is(err, errNoStateDir) {
			return err
		}
		n.logger.Error("could not save settings", "err", err)
		return fmt.Errorf("%w; the change lasts until otrbnc stops", err)
	}
	return nil
}

// ---------------------------------------------------------------------
// Masks, ignore list and policies.

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

// ignoredBy returns the mask that makes otrbnc leave nick alone, or "".
func (n *network) ignoredBy(nick string) string {
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

// effectivePolicy is the policy a conversation with nick runs under.
func (n *network) effectivePolicy(nick string) otrcore.Policy {
	if n.ignoredBy(nick) != "" {
		return otrcore.PolicyNever
	}
	p, _ := n.policySource(nick)
	if n.setting("whitespace_tags") == "off" {
		p &^= otrcore.SendWhitespaceTag
	}
	return p
}

// refreshPolicies applies policy changes to every conversation.
func (n *network) refreshPolicies() {
	for _, p := range n.otr.peers {
		p.conv.SetPolicy(n.effectivePolicy(p.nick))
	}
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
