package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"otrbnc/proxy/config"

	"golang.org/x/crypto/bcrypt"
)

func TestFirstRunWritesDefaultConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("HOME", dir)
	var out bytes.Buffer
	if err := dispatch(context.Background(), nil, strings.NewReader(""), &out, &out); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "otrbnc", "config.toml")
	cfg, err := config.LoadConfig(path)
	if err != nil {
		t.Fatalf("written config does not load: %v", err)
	}
	pw := regexp.MustCompile(`(?m)^    (\S+)$`).FindStringSubmatch(out.String())
	if pw == nil {
		t.Fatalf("password not shown:\n%s", out.String())
	}
	if bcrypt.CompareHashAndPassword([]byte(cfg.PasswordHash), []byte(pw[1])) != nil {
		t.Error("shown password does not match the stored hash")
	}
	if data, _ := os.ReadFile(path); strings.Contains(string(data), pw[1]) {
		t.Error("the password itself is stored")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v", st.Mode().Perm())
	}
	if !strings.Contains(out.String(), "127.0.0.1 port 6667") {
		t.Errorf("no connection instructions:\n%s", out.String())
	}
	// The next command is the one the user ran, without -config: the
	// default path is where otrbnc looks anyway.
	again, _ := runAgain()
	if !strings.Contains(out.String(), "Run otrbnc again: "+again+"\n") || strings.Contains(out.String(), " -config") {
		t.Errorf("the first run does not say to run %q again, or mentions -config:\n%s", again, out.String())
	}
}

// TestSelfCommand checks how the first run tells the user to start otrbnc
// again: as they started it (go run, a path, or PATH), with a PATH hint
// when a Go bin directory is not in PATH.
func TestSelfCommand(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "cmd", "otrbnc"), 0o755)
	env := map[string]string{"HOME": "/home/u", "PATH": "/usr/local/go/bin:/usr/bin:/bin:/home/u/bin"}
	getenv := func(k string) string { return env[k] }
	for _, c := range []struct {
		argv0, cwd, cmd, hint string
	}{
		// go run: a temporary directory, or (Go 1.24 and later) the build cache.
		{"/tmp/go-build3301/b001/exe/otrbnc", src, "go run ./cmd/otrbnc", "go install ./cmd/otrbnc"},
		{"/home/u/.cache/go-build/0b/0b9485bdcaa95a2c1c2234566689bc6f38e93227e58ea9ea4d5a979ef500964a-d/otrbnc", src, "go run ./cmd/otrbnc", "$(go env GOPATH)/bin"},
		{"/tmp/go-build3301/b001/exe/otrbnc", filepath.Join(src, "cmd", "otrbnc"), "go run .", "PATH"},
		// Found in PATH.
		{"otrbnc", src, "otrbnc", ""},
		{"/usr/bin/otrbnc", src, "otrbnc", ""},
		{"../../home/u/bin/otrbnc", "/usr/lib", "otrbnc", ""},
		// A path outside PATH: as typed, with a hint for Go's bin directory.
		{"./otrbnc", src, "./otrbnc", ""},
		{"/home/u/go/bin/otrbnc", src, "/home/u/go/bin/otrbnc", `export PATH="$PATH:/home/u/go/bin"`},
		{"bin/otrbnc", "/home/u/go", "bin/otrbnc", "/home/u/go/bin is not in your PATH"},
		// A test binary is not go run.
		{"/tmp/go-build3301/b001/otrbnc.test", src, "/tmp/go-build3301/b001/otrbnc.test", ""},
	} {
		cmd, hint := selfCommand(c.argv0, c.cwd, getenv)
		if cmd != c.cmd || (c.hint == "") != (hint == "") || !strings.Contains(hint, c.hint) {
			t.Errorf("selfCommand(%q, %q) = %q, %q; want %q and a hint with %q", c.argv0, c.cwd, cmd, hint, c.cmd, c.hint)
		}
	}
	env["GOPATH"], env["GOBIN"] = "/opt/go", "/opt/gobin"
	for _, dir := range []string{"/opt/go/bin", "/opt/gobin"} {
		if _, hint := selfCommand(dir+"/otrbnc", src, getenv); !strings.Contains(hint, dir) {
			t.Errorf("no PATH hint for %s: %q", dir, hint)
		}
	}
	if _, hint := selfCommand("/home/u/go/bin/otrbnc", src, getenv); hint != "" {
		t.Errorf("with GOPATH set, ~/go/bin is not Go's: %q", hint)
	}
}

func TestHashPasswordAndUnknownSubcommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := dispatch(context.Background(), []string{"hash-password"}, strings.NewReader("pw\n"), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(out.String())), []byte("pw")) != nil {
		t.Errorf("bad hash %q", out.String())
	}
	if err := dispatch(context.Background(), []string{"frobnicate"}, nil, &out, &errb); err == nil {
		t.Error("unknown subcommand accepted")
	}
	out.Reset()
	if err := dispatch(context.Background(), []string{"help"}, nil, &out, &errb); err != nil || !strings.Contains(out.String(), "hash-password") {
		t.Errorf("help: %v %q", err, out.String())
	}
}

// TestVersion checks "otrbnc version" and its --version spelling: the
// version proxy.Options gets (and "/msg *otr version" shows, see
// TestSighupReload).
func TestVersion(t *testing.T) {
	want := "otrbnc " + versionString() + " ("
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		out := mustRun(t, args...)
		if !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 1 {
			t.Errorf("otrbnc %s = %q, want one line starting with %q", args[0], out, want)
		}
	}
	wantErr(t, []string{"version", "extra"}, "unexpected arguments")
	if h := mustRun(t, "help"); !strings.Contains(h, "\n  version ") {
		t.Errorf("otrbnc help does not list version:\n%s", h)
	}
}

func TestRunServesAndShutsDown(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	conf := fmt.Sprintf("password_hash = %q\nstate_dir = \"state\"\n[[listen]]\naddress = %q\n[[network]]\nname = \"t\"\naddress = \"irc+insecure://127.0.0.1:1\"\nnick = \"me\"\n", hash, addr)
	path := filepath.Join(dir, "c.toml")
	os.WriteFile(path, []byte(conf), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var errb bytes.Buffer
	go func() { done <- dispatch(ctx, []string{"-config", path}, nil, &bytes.Buffer{}, &errb) }()
	var c net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("not listening: %v", <-done)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintf(c, "PASS pw\r\nNICK me\r\nUSER t 0 * :t\r\n")
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := c.Read(buf)
	if !strings.Contains(string(buf[:n]), " 001 ") {
		t.Errorf("no welcome: %q", buf[:n])
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no graceful shutdown")
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err != nil {
		t.Errorf("state directory not created: %v", err)
	}
	// The key generated at this first start is in the log with its
	// fingerprint (journalctl -u otrbnc shows it), at level INFO.
	own := regexp.MustCompile(`our fingerprint: ([0-9A-F ]{44})`).FindStringSubmatch(mustRun(t, "fingerprints", "-config", path))
	if own == nil {
		t.Fatal("otrbnc fingerprints shows no fingerprint of our own")
	}
	if want := fmt.Sprintf("level=INFO msg=\"OTR key ready\" network=t fingerprint=\"%s\"", own[1]); !strings.Contains(errb.String(), want) {
		t.Errorf("the log does not show %s:\n%s", want, errb.String())
	}
}
