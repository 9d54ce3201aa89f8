package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// testPasswordHash is a cheap bcrypt hash for test configurations.
var testPasswordHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

func minimalConfig(extra string) string {
	return `password_hash = "` + testPasswordHash() + `"
[[network]]
address = "irc+insecure://127.0.0.1:6667"
nick = "alice"
` + extra
}

func TestParseConfigUnknownKeys(t *testing.T) {
	cases := []struct {
		text, wantKey string
		wantLine      int
	}{
		{minimalConfig("nik = \"x\"\n"), "network.nik", 5},
		{"log_levl = \"info\"\n" + minimalConfig(""), "log_levl", 1},
		{minimalConfig("[network.sasl]\nmechansim = \"plain\"\n"), "network.sasl.mechansim", 6},
		{minimalConfig("[[listen]]\naddress = \"127.0.0.1:1\"\ntls = true\n"), "listen.tls", 7},
		{minimalConfig("[network.peers.bob]\npolicy = \"always\"\ncolour = 1\n"), "network.peers.bob.colour", 7},
	}
	for _, c := range cases {
		_, err := ParseConfig([]byte(c.text))
		if err == nil {
			t.Errorf("no error for unknown key %s", c.wantKey)
			continue
		}
		if !strings.Contains(err.Error(), c.wantKey) || !strings.Contains(err.Error(), "line ") {
			t.Errorf("error %q should name %s and its line", err, c.wantKey)
		}
		if want := "line " + strconv.Itoa(c.wantLine) + ":"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q: want %q", err, want)
		}
	}
}

func TestParseConfigDefaultsAndErrors(t *testing.T) {
	cfg, err := ParseConfig([]byte(minimalConfig("")))
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Network[0]
	if cfg.Listen[0].Address != DefaultListenAddress || n.Name != "127.0.0.1" || n.Policy != "manual" ||
		n.PlaintextMarker != DefaultPlaintextMarker || n.Pacing != PacingAuto || n.RateBurst != 0 || n.Username != "alice" ||
		n.BacklogLines != DefaultBacklogLines {
		t.Errorf("defaults not applied: %+v %+v", cfg.Listen, n)
	}
	bad := map[string]string{
		"plaintext listener off loopback": minimalConfig("[[listen]]\naddress = \"0.0.0.0:6667\"\n"),
		"irc:// without +insecure":        strings.Replace(minimalConfig(""), "irc+insecure", "irc", 1),
		"unknown policy":                  minimalConfig("policy = \"sometimes\"\n"),
		"bad pin":                         minimalConfig("tls_fingerprint = \"abcd\"\n"),
		"sasl without password":           minimalConfig("[network.sasl]\nmechanism = \"plain\"\n"),
		"external without cert":           minimalConfig("[network.sasl]\nmechanism = \"external\"\n"),
		"fragment size too small":         minimalConfig("fragment_size = 20\n"),
		"unknown pacing":                  minimalConfig("pacing = \"fast\"\n"),
		"negative rate_burst":             minimalConfig("rate_burst = -1\n"),
		"negative backlog":                minimalConfig("backlog_lines = -1\n"),
		"backlog too large":               minimalConfig("backlog_lines = 10001\n"),
		"no password hash":                strings.Replace(minimalConfig(""), "password_hash", "# password_hash", 1),
		"bad duration":                    minimalConfig("rate_interval = \"soon\"\n"),
		"bad network name":                minimalConfig("name = \"a/b\"\n"),
		"bad log level":                   "log_level = \"loud\"\n" + minimalConfig(""),
		"no network":                      "password_hash = \"" + testPasswordHash() + "\"\n",
	}
	for name, text := range bad {
		if _, err := ParseConfig([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDefaultConfigTextParses(t *testing.T) {
	h, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(DefaultConfigText(h, "state")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("default config does not load: %v", err)
	}
	if cfg.StateDir != filepath.Join(dir, "state") || cfg.Network[0].Name != "libera" || !strings.HasPrefix(cfg.Network[0].Address, "ircs://") {
		t.Errorf("unexpected default config: %+v", cfg)
	}
	if pw, err := GeneratePassword(); err != nil || len(pw) < 20 {
		t.Errorf("GeneratePassword = %q, %v", pw, err)
	}
}

func TestParseServerAddress(t *testing.T) {
	cases := []struct {
		in         string
		tls        bool
		host, port string
		ok         bool
	}{
		{"ircs://irc.example.org", true, "irc.example.org", "6697", true},
		{"irc.example.org:7000", true, "irc.example.org", "7000", true},
		{"irc+insecure://127.0.0.1", false, "127.0.0.1", "6667", true},
		{"ircs://[::1]:6697", true, "::1", "6697", true},
		{"irc://example.org", false, "", "", false},
		{"http://example.org", false, "", "", false},
		{"ircs://", false, "", "", false},
		{"ircs://h:99999", false, "", "", false},
	}
	for _, c := range cases {
		tls, host, port, err := ParseServerAddress(c.in)
		if (err == nil) != c.ok || (c.ok && (tls != c.tls || host != c.host || port != c.port)) {
			t.Errorf("ParseServerAddress(%q) = %v %q %q %v", c.in, tls, host, port, err)
		}
	}
}
