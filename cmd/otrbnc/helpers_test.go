package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"otrbnc/proxy/ircdtest"
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

func freePort(t *testing.T) int { return ircdtest.FreePort(t) }

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

// startNgircd runs a private ngIRCd with flood control off (see
// ircdtest.Start).
func startNgircd(t *testing.T) *ircdtest.Server { return ircdtest.Start(t, true) }

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
