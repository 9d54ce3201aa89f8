package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// TestMain lets the test binary stand in for the user's editor in the
// README's quick start (see fakeEditor).
func TestMain(m *testing.M) {
	if spec := os.Getenv(editorEnv); spec != "" {
		if err := fakeEditor(spec, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "fake editor:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// editorEnv carries the fake editor's edits (JSON) to the test binary run
// as $EDITOR.
const editorEnv = "OTRBNC_TEST_EDITOR"

// editorEdits is what the fake editor changes: what a user would type in
// step 2 of the quick start, pointed at the test's servers.
type editorEdits struct {
	Listen  string // [[listen]] address
	Network string // [[network]] address
	Nick    string
}

// fakeEditor edits the configuration file named by args as a user would.
func fakeEditor(spec string, args []string) error {
	var e editorEdits
	if err := json.Unmarshal([]byte(spec), &e); err != nil {
		return err
	}
	if len(args) != 1 {
		return fmt.Errorf("want one file to edit, got %q", args)
	}
	var cfg map[string]any
	if _, err := toml.DecodeFile(args[0], &cfg); err != nil {
		return err
	}
	cfg["listen"] = []map[string]any{{"address": e.Listen}}
	nets, ok := cfg["network"].([]map[string]any)
	if !ok || len(nets) == 0 {
		return fmt.Errorf("no [[network]] in %s", args[0])
	}
	nets[0]["address"] = e.Network
	nets[0]["nick"] = e.Nick
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
		return err
	}
	return os.WriteFile(args[0], buf.Bytes(), 0o600)
}

// quickStartCommands returns the commands of the README's quick-start
// block.
func quickStartCommands(t *testing.T, readme string) []string {
	return readmeBlock(t, readme, "cmd/otrbnc/readme_test.go runs the commands")
}

// readmeBlock returns the commands of the first ```sh block after marker
// in the README, one per line, without comment lines.
func readmeBlock(t *testing.T, readme, marker string) []string {
	t.Helper()
	at := strings.Index(readme, marker)
	if at < 0 {
		t.Fatalf("README.md: the marker comment %q is gone", marker)
	}
	rest := readme[at:]
	start := strings.Index(rest, "```sh\n")
	if start < 0 {
		t.Fatalf("README.md: no ```sh block after %q", marker)
	}
	rest = rest[start+len("```sh\n"):]
	end := strings.Index(rest, "```")
	if end < 0 {
		t.Fatalf("README.md: unterminated block after %q", marker)
	}
	var cmds []string
	for _, line := range strings.Split(rest[:end], "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			cmds = append(cmds, line)
		}
	}
	return cmds
}

// goEnv returns `go env NAME` for the Go settings the quick start must
// share with this test run (a fresh HOME would otherwise mean a cold build
// cache and module downloads).
func goEnv(t *testing.T, names ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"env"}, names...)...).Output()
	if err != nil {
		t.Skipf("go command not available: %v", err)
	}
	vals := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	var env []string
	for i, n := range names {
		env = append(env, n+"="+vals[i])
	}
	return env
}

// TestReadmeQuickStart runs the README's quick start literally, in a fresh
// HOME: generate the configuration, edit it (the test binary plays the
// editor, pointing the network at a private ngIRCd), run otrbnc, connect a
// client with the printed password and ask *otr for help.
func TestReadmeQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs otrbnc with go run")
	}
	t.Parallel()
	irc := startNgircd(t)
	root := repoRoot(t)
	readme := readRepoFile(t, "README.md")
	cmds := quickStartCommands(t, readme)
	if len(cmds) < 2 {
		t.Fatalf("quick start has %d commands, want at least a first run and a run", len(cmds))
	}
	if !strings.Contains(readme, "/msg *otr help") {
		t.Error("README.md no longer tells how to reach *otr (/msg *otr help)")
	}

	home := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	edits, _ := json.Marshal(editorEdits{Listen: listen, Network: "irc+insecure://" + irc.Addr, Nick: "quickstart"})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + home + "/.config",
		"PATH=" + os.Getenv("PATH"),
		"EDITOR=" + self,
		editorEnv + "=" + string(edits),
	}
	env = append(env, goEnv(t, "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV", "GOFLAGS", "GOTOOLCHAIN", "GOPROXY")...)
	shell := func(line string) *exec.Cmd {
		// exec: the command itself, not a shell around it, gets the
		// Ctrl-C, as in an interactive terminal.
		c := exec.Command("sh", "-c", "exec "+line)
		c.Dir = root
		c.Env = env
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return c
	}

	// Every command but the last runs to completion.
	var firstOut string
	for i, line := range cmds[:len(cmds)-1] {
		out, err := runBounded(shell(line), 3*time.Minute)
		if err != nil {
			t.Fatalf("quick-start step %d %q: %v\n%s", i+1, line, err, out)
		}
		if i == 0 {
			firstOut = out
		}
	}
	pw := regexp.MustCompile(`(?m)^    (\S+)$`).FindStringSubmatch(firstOut)
	if pw == nil {
		t.Fatalf("the first run printed no password:\n%s", firstOut)
	}
	// It tells how to go on in the user's terms: the README's own command,
	// not a binary that go run left in its cache, nor -config.
	last, _, _ := strings.Cut(cmds[len(cmds)-1], " #")
	if again := "Run otrbnc again: " + strings.TrimSpace(last) + "\n"; !strings.Contains(firstOut, again) || strings.Contains(firstOut, " -config") {
		t.Errorf("the first run does not say %q, or mentions -config:\n%s", again, firstOut)
	}

	// The last one runs otrbnc until interrupted.
	var out syncBuffer
	run := shell(cmds[len(cmds)-1])
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(3 * time.Minute) // go run may compile first
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("otrbnc exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("otrbnc is not listening on %s:\n%s", listen, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// An IRC client connects with the printed password.
	c := login(t, listen, pw[1], "me", "libera")
	c.expect(" 001 ")
	c.send("PRIVMSG *otr :help")
	c.expect(":*otr!", "PRIVMSG")

	// And the network side works: a user on the IRC server reaches us.
	bob := login(t, irc.Addr, "", "bob", "bob")
	bob.expect(" 001 ")
	waitFor(t, "otrbnc on the network", func() bool {
		bob.send("ISON quickstart")
		select {
		case l := <-bob.lines:
			return strings.Contains(l, " 303 ") && strings.Contains(l, "quickstart")
		case <-time.After(time.Second):
			return false
		}
	})
	bob.send("PRIVMSG quickstart :hello through otrbnc")
	c.expect("PRIVMSG", "hello through otrbnc")

	// Ctrl-C stops it cleanly. (go run itself exits with status 1 when
	// interrupted, whatever its child does, so the log tells.)
	syscall.Kill(-run.Process.Pid, syscall.SIGINT)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if log := out.String(); !strings.Contains(log, "shutting down") || strings.Contains(log, "level=ERROR") || strings.Contains(log, "upstream disconnected") {
			t.Errorf("otrbnc did not stop cleanly on Ctrl-C (%v):\n%s", err, log)
		}
	case <-time.After(testTimeout):
		t.Errorf("otrbnc did not stop on Ctrl-C:\n%s", out.String())
	}
}

// TestReadmeInstall runs the README's "go install" block in a fresh HOME,
// with GOPATH and GOBIN unset as on a new machine and a PATH without Go's
// bin directory: the block alone must make "otrbnc" a command the shell
// finds.
func TestReadmeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds otrbnc with go install")
	}
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not available: %v", err)
	}
	cmds := readmeBlock(t, readRepoFile(t, "README.md"), "cmd/otrbnc/readme_test.go runs this block as one shell script")
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"PATH=" + filepath.Dir(goBin) + ":/usr/bin:/bin",
		"GOENV=off", // no go env -w settings of this machine
	}
	// Share the build and module caches (a fresh HOME would download and
	// build everything), and the flags this test run uses.
	env = append(env, goEnv(t, "GOCACHE", "GOMODCACHE", "GOFLAGS", "GOTOOLCHAIN", "GOPROXY")...)
	script := strings.Join(cmds, "\n") + "\ncommand -v otrbnc\n"
	c := exec.Command("sh", "-e", "-c", script)
	c.Dir = repoRoot(t)
	c.Env = env
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := runBounded(c, 3*time.Minute)
	if err != nil {
		t.Fatalf("the README's install block failed: %v\n%s", err, out)
	}
	installed := filepath.Join(home, "go", "bin", "otrbnc")
	if !strings.HasSuffix(strings.TrimSpace(out), installed) {
		t.Errorf("the shell does not find %s after the install block:\n%s", installed, out)
	}
	if !regexp.MustCompile(`(?m)^otrbnc \S+ \(OTR protocol versions`).MatchString(out) {
		t.Errorf("otrbnc version printed no version:\n%s", out)
	}
}

// runBounded runs c, killing its process group after limit.
func runBounded(c *exec.Cmd, limit time.Duration) (string, error) {
	var out syncBuffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(limit):
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-done
		return out.String(), fmt.Errorf("still running after %s", limit)
	}
}
