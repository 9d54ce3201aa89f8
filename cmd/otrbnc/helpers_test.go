package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// cheapHash is a bcrypt hash at the minimum cost, to keep tests fast.
func cheapHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// ircClient is a raw IRC connection for tests.
type ircClient struct {
	t     *testing.T
	nc    net.Conn
	lines chan string
}

func dialIRC(t *testing.T, addr string) *ircClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := &ircClient{t: t, nc: nc, lines: make(chan string, 10000)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(nc)
		sc.Buffer(make([]byte, 0, 8192), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if rest, ok := strings.CutPrefix(line, "PING "); ok {
				c.send("PONG " + rest)
				continue
			}
			c.lines <- line
		}
	}()
	t.Cleanup(func() { nc.Close() })
	return c
}

func (c *ircClient) send(lines ...string) {
	for _, l := range lines {
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c.nc, "%s\r\n", l); err != nil {
			c.t.Logf("write %q: %v", l, err)
			return
		}
	}
}

// expect waits for a line containing every one of subs, and returns it.
func (c *ircClient) expect(subs ...string) string {
	c.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %q", subs)
			}
			all := true
			for _, s := range subs {
				all = all && strings.Contains(l, s)
			}
			if all {
				return l
			}
		case <-timer.C:
			c.t.Fatalf("timed out waiting for a line with %q", subs)
		}
	}
}

// login registers with otrbnc (or any IRC server) and returns the first
// reply line with a numeric among wanted.
func login(t *testing.T, addr, pass, nick, user string) *ircClient {
	t.Helper()
	c := dialIRC(t, addr)
	if pass != "" {
		c.send("PASS :" + pass)
	}
	c.send("NICK "+nick, "USER "+user+" 0 * :"+nick)
	return c
}

// ngircd is a private IRC server for the tests.
type ngircd struct {
	addr string
	cmd  *exec.Cmd
}

// startNgircd runs ngIRCd on a free loopback port; a missing ngircd skips
// the test, or fails it under CI=true.
func startNgircd(t *testing.T) *ngircd {
	t.Helper()
	bin := ""
	for _, p := range []string{"ngircd", "/usr/sbin/ngircd"} {
		if path, err := exec.LookPath(p); err == nil {
			bin = path
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("ngircd is required under CI=true (apt-get install ngircd)")
		}
		t.Skip("ngircd not installed (apt-get install ngircd)")
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf(`[Global]
Name = irc.test
Info = otrbnc test server
Listen = 127.0.0.1
Ports = %d
MotdPhrase = test server
AdminInfo1 = test
AdminInfo2 = test
AdminEMail = test@example.invalid
[Limits]
MaxConnectionsIP = 0
MaxNickLength = 30
MaxPenaltyTime = 0
[Options]
DNS = no
Ident = no
PAM = no
DefaultUserModes = F
`, port)
	path := filepath.Join(dir, "ngircd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &ngircd{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	var out syncBuffer
	s.cmd = exec.Command(bin, "-n", "-f", path)
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting ngircd: %v", err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			nc.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("ngircd did not start: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// repoRoot is the module root, two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return root
}

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
