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
	"strconv"
	"strings"

	"otrbnc/keystore/atomicfile"
	"otrbnc/otrcore"
	"otrbnc/proxy/config"
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
			if err != nil || k < config.MinFragmentSize || k > config.MaxFragmentSize {
				return "", fmt.Errorf("want auto or a number from %d to %d", config.MinFragmentSize, config.MaxFragmentSize)
			}
			return strconv.Itoa(k), nil
		},
	},
	{
		name: "marker", values: "text",
		help: "the text put before a message that arrived unencrypted during a private conversation",
		def: func(n *network) string {
			if m := strings.TrimSpace(neutralize(n.cfg.PlaintextMarker)); m != "" {
				return m
			}
			return config.DefaultPlaintextMarker
		},
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

// settingNames lists the names of settingsTable, in its order.
func settingNames() []string {
	names := make([]string, len(settingsTable))
	for i, s := range settingsTable {
		names[i] = s.name
	}
	return names
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
