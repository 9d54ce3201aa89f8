package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"otrbnc/proxy/config"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md from the subcommand table")

// configKeys lists every TOML key of t as a dotted path; map keys (such as
// the nick in network.peers.NICK.policy) become "*".
func configKeys(prefix string, t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		path := prefix + name
		ft := f.Type
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(path+".*.", ft.Elem())...)
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[config.Duration]():
			keys = append(keys, configKeys(path+".", ft)...)
		default:
			keys = append(keys, path)
		}
	}
	return keys
}

// TestConfigurationDocCoversEveryKey checks that docs/configuration.md
// gives every key of the configuration a table row (type, default) and a
// section, so that a new key cannot go undocumented.
func TestConfigurationDocCoversEveryKey(t *testing.T) {
	doc := readRepoFile(t, "docs/configuration.md")
	keys := configKeys("", reflect.TypeFor[config.Config]())
	if len(keys) < 20 {
		t.Fatalf("only %d keys found: %q", len(keys), keys)
	}
	for _, k := range keys {
		pat := strings.ReplaceAll(regexp.QuoteMeta(k), `\*`, `[A-Z]+`)
		row := regexp.MustCompile("(?m)^\\| `" + pat + "` \\|[^|]+\\|[^|]+\\|[^|]+\\|$")
		if !row.MatchString(doc) {
			t.Errorf("docs/configuration.md has no table row | `%s` | type | default | reload |", k)
		}
		last := k[strings.LastIndex(k, ".")+1:]
		section := regexp.MustCompile("(?m)^###.*`[^`]*" + regexp.QuoteMeta(last) + "`")
		if !section.MatchString(doc) {
			t.Errorf("docs/configuration.md has no ### section for %s", k)
		}
	}
}

// TestReloadDocMatchesCode checks that the keys the documentation calls
// reloadable are exactly those Reload applies.
func TestReloadDocMatchesCode(t *testing.T) {
	doc := readRepoFile(t, "docs/configuration.md")
	rows := regexp.MustCompile("(?m)^\\| `([a-z_.A-Z]+)` \\|[^|]+\\|[^|]+\\| (reload|restart) \\|$").FindAllStringSubmatch(doc, -1)
	var reloadable []string
	for _, r := range rows {
		if r[2] == "reload" {
			reloadable = append(reloadable, r[1])
		}
	}
	want := []string{"log_level", "password_hash", "network.policy", "network.peers.NICK.policy", "network.fragment_size", "network.plaintext_marker"}
	slices.Sort(reloadable)
	slices.Sort(want)
	if !slices.Equal(reloadable, want) {
		t.Errorf("docs/configuration.md marks %q as reloadable; Reload applies %q", reloadable, want)
	}
}

// cliDoc renders docs/cli.md from the subcommand table.
func cliDoc() string {
	var b bytes.Buffer
	b.WriteString(`# otrbnc command line

<!-- Generated from the subcommand table in cmd/otrbnc by
     go test ./cmd/otrbnc -run TestCLIDoc -update
     Do not edit by hand. -->

One binary, several subcommands. ` + "`otrbnc`" + ` alone runs the bouncer;
` + "`otrbnc SUBCOMMAND -h`" + ` prints the same help as below. Flags may come
before or after the other arguments.

`)
	b.WriteString("```text\n")
	printOverview(&b)
	b.WriteString("```\n")
	for _, c := range subcommands() {
		b.WriteString("\n## otrbnc " + c.name + "\n\n```text\n")
		printHelp(&b, &c)
		b.WriteString("```\n")
	}
	return strings.ReplaceAll(b.String(), "\n\n\n", "\n\n")
}

// TestCLIDoc keeps docs/cli.md equal to the built-in help.
func TestCLIDoc(t *testing.T) {
	path := filepath.Join(repoRoot(t), "docs", "cli.md")
	want := cliDoc()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("docs/cli.md is out of date: run go test ./cmd/otrbnc -run TestCLIDoc -update")
	}
}

// TestDocLinks checks that relative links between the documents lead to
// existing files and headings.
func TestDocLinks(t *testing.T) {
	root := repoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	files = append(files, filepath.Join(root, "README.md"))
	link := regexp.MustCompile(`\]\(([^)#\s]*)(#[^)\s]*)?\)`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target, anchor := m[1], strings.TrimPrefix(m[2], "#")
			if strings.Contains(target, "://") {
				continue
			}
			dest := f
			if target != "" {
				dest = filepath.Join(filepath.Dir(f), target)
			}
			rel, _ := filepath.Rel(root, f)
			content, err := os.ReadFile(dest)
			if err != nil {
				if target == "commands.md" || target == "docs/commands.md" {
					t.Logf("%s links to %s, which does not exist yet (the *otr command reference)", rel, target)
					continue
				}
				t.Errorf("%s: broken link to %s", rel, target)
				continue
			}
			if anchor != "" && !hasAnchor(string(content), anchor) {
				t.Errorf("%s: link to %s#%s: no such heading", rel, target, anchor)
			}
		}
	}
}

// hasAnchor reports whether markdown has a heading whose GitHub anchor is
// anchor.
func hasAnchor(markdown, anchor string) bool {
	for _, line := range strings.Split(markdown, "\n") {
		h, ok := strings.CutPrefix(line, "#")
		if !ok {
			continue
		}
		h = strings.TrimLeft(h, "#")
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(h)) {
			switch {
			case r == ' ' || r == '-':
				b.WriteRune('-')
			case r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
				b.WriteRune(r)
			}
		}
		if b.String() == anchor {
			return true
		}
	}
	return false
}

// unitDirectives parses a systemd unit into directive → values.
func unitDirectives(unit string) map[string][]string {
	d := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		d[k] = append(d[k], v)
	}
	return d
}

// TestSystemdUnit checks deploy/otrbnc.service: the directives the
// deployment relies on, systemd's own verification, and its exposure
// rating (at most 2.0, and the figure in docs/deployment.md).
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	unitPath := filepath.Join(repoRoot(t), "deploy", "otrbnc.service")
	unit := readRepoFile(t, "deploy/otrbnc.service")
	d := unitDirectives(unit)
	for k, want := range map[string]string{
		"User":                    "otrbnc",
		"StateDirectory":          "otrbnc",
		"ConfigurationDirectory":  "otrbnc",
		"LoadCredential":          "passphrase:/etc/otrbnc/passphrase",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter":        "@system-service",
		"MemoryDenyWriteExecute":  "yes",
		"CapabilityBoundingSet":   "",
		"ExecStart":               "/usr/local/bin/otrbnc run -config " + systemdConfig,
	} {
		vals, ok := d[k]
		if !ok || vals[0] != want {
			t.Errorf("%s=%q, want %q", k, vals, want)
		}
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	// verify needs ExecStart to exist: check a copy that runs /bin/true.
	tmp := filepath.Join(t.TempDir(), "otrbnc.service")
	os.WriteFile(tmp, []byte(strings.ReplaceAll(unit, "/usr/local/bin/otrbnc", "/bin/true")), 0o644)
	if out, err := exec.Command("systemd-analyze", "verify", tmp).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", unitPath).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for otrbnc\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, _ := strconv.ParseFloat(string(m[1]), 64)
	if level > 2.0 {
		t.Errorf("exposure %.1f, want 2.0 or lower:\n%s", level, out)
	}
	version, _ := exec.Command("systemd-analyze", "--version").Output()
	figure := "Overall exposure level for otrbnc.service: " + string(m[1])
	if strings.HasPrefix(string(version), "systemd 252 ") {
		if !strings.Contains(readRepoFile(t, "docs/deployment.md"), figure) || !strings.Contains(readRepoFile(t, "README.md"), "exposure "+string(m[1])) {
			t.Errorf("docs/deployment.md or README.md does not show the measured %q", figure)
		}
	}
	t.Logf("%s (%s)", figure, strings.SplitN(string(version), "\n", 2)[0])
}

// TestDeployConfig checks that deploy/config.toml is a valid configuration
// once its password hash is filled in, and agrees with the unit.
func TestDeployConfig(t *testing.T) {
	text := readRepoFile(t, "deploy/config.toml")
	const placeholder = "REPLACE-WITH-THE-OUTPUT-OF otrbnc hash-password"
	if !strings.Contains(text, placeholder) {
		t.Fatal("deploy/config.toml: password_hash placeholder changed; update this test")
	}
	if _, err := config.ParseConfig([]byte(text)); err == nil || !strings.Contains(err.Error(), "password_hash") {
		t.Errorf("the example with its placeholder should be refused for its password_hash: %v", err)
	}
	cfg, err := config.ParseConfig([]byte(strings.Replace(text, placeholder, cheapHash(t, "x"), 1)))
	if err != nil {
		t.Fatalf("deploy/config.toml: %v", err)
	}
	if cfg.StateDir != "/var/lib/otrbnc" || cfg.PassphraseFile != "${CREDENTIALS_DIRECTORY}/passphrase" {
		t.Errorf("state_dir %q, passphrase_file %q: they must match StateDirectory= and LoadCredential= of the unit", cfg.StateDir, cfg.PassphraseFile)
	}
}

// docSection returns the section of a Markdown document under the heading
// line heading (such as "## Trust: is it really bob?"), up to the next
// heading of the same or a higher level, with backslash-continued lines
// joined.
func docSection(t *testing.T, doc, heading string) string {
	t.Helper()
	level := strings.Index(heading, " ")
	start := strings.Index(doc, "\n"+heading+"\n")
	if start < 0 {
		t.Errorf("no heading %q", heading)
		return ""
	}
	rest := doc[start+len(heading)+2:]
	for i, line := range strings.SplitAfter(rest, "\n") {
		if n := len(line) - len(strings.TrimLeft(line, "#")); n > 0 && n <= level && strings.HasPrefix(line[n:], " ") {
			rest = strings.Join(strings.SplitAfter(rest, "\n")[:i], "")
			break
		}
	}
	return regexp.MustCompile(`\\\n\s*`).ReplaceAllString(rest, "")
}

// TestDocsForNewUsers checks that the README and the user guide say what
// new users of WeeChat 3.8, irssi 1.4 and HexChat tripped over: where each
// point is explained, the section has to say it.
func TestDocsForNewUsers(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	guide := readRepoFile(t, "docs/user-guide.md")
	for _, c := range []struct {
		doc, file, heading string
		want               []string // regular expressions
		not                []string
	}{
		// WeeChat 3.8 (Debian 12) ignores -notls/-tls: its spelling first.
		{readme, "README.md", "## Connect your IRC client",
			[]string{`(?m)^/server add otrbnc 127\.0\.0\.1/6667 -nossl -password=`, "`-ssl_fingerprint=", "WeeChat 4\\.0 and later[^.]*`-notls`"},
			[]string{"/server add otrbnc 127.0.0.1/6667 -notls"}},
		// Debian's irssi autoloads its OTR module.
		{readme, "README.md", "## Connect your IRC client",
			[]string{`(?m)^/unload otr$`, `(?m)^/set autoload_modules perl$`, `(?m)^/save$`}, nil},
		{guide, "docs/user-guide.md", "### irssi's own OTR module",
			[]string{"irssi-plugin-otr", "`perl otr`", `(?m)^/unload otr$`, `(?m)^/set autoload_modules perl$`, `(?m)^/save$`, "~/.irssi/startup"}, nil},
		// After a first run, import-libotr needs -replace-key.
		{readme, "README.md", "## Your first private conversation",
			[]string{`(?m)^otrbnc import-libotr -key \S+ -fingerprints \S+ .*-replace-key$`, "irssi's OTR module[^.]*`/otr auth \"the secret\"`"}, nil},
		{guide, "docs/user-guide.md", "## Moving from another OTR program",
			[]string{`(?m)^otrbnc import-libotr -key \S+ -fingerprints \S+ .*-replace-key$`, "`-replace-key` is needed once otrbnc has started"}, nil},
		// irssi takes one word of an unquoted SMP secret.
		{guide, "docs/user-guide.md", "## Trust: is it really bob?",
			[]string{"`/otr auth \"the name of our first cat\"`", "irssi uses only"}, nil},
		// Which half of the session id to read aloud.
		{guide, "docs/user-guide.md", "## Trust: is it really bob?",
			[]string{"session id", "`a1b2c3d4 \\[e5f6a7b8\\]`", "half in brackets is the one \\*\\*you read aloud\\*\\*"}, nil},
		// A client without a password.
		{guide, "docs/user-guide.md", "## Troubleshooting",
			[]string{"`Password required`", "`Password incorrect`"}, nil},
	} {
		sec := docSection(t, c.doc, c.heading)
		for _, w := range c.want {
			if !regexp.MustCompile(w).MatchString(sec) {
				t.Errorf("%s, %q: nothing matches %s", c.file, c.heading, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(sec, n) {
				t.Errorf("%s, %q: still says %q", c.file, c.heading, n)
			}
		}
	}
}
