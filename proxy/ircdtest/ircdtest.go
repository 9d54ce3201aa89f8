// Package ircdtest runs a private ngIRCd for tests: on a free loopback
// port, with its own configuration file, stopped when the test ends.
//
// A missing ngircd skips the test, except under CI=true, where the real
// IRC server is mandatory and its absence fails the test.
package ircdtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Server is a running ngIRCd.
type Server struct {
	// Addr is the host:port clients connect to (127.0.0.1).
	Addr string

	tb   testing.TB
	bin  string
	conf string
	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *syncBuffer
	// log holds the output of the runs before the current one.
	log string
}

// syncBuffer is a bytes.Buffer that ngIRCd's output goroutine and the test
// can use at the same time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Log returns what ngIRCd has written so far, over all its runs: in the
// foreground it logs every registration ("User \"nick!user@host\"
// registered (connection N).") and every connection it closes, with the
// reason ("Shutting down connection N (reason) …").
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return s.log
	}
	return s.log + s.out.String()
}

// Path returns the ngircd executable, skipping tb when it is missing (or
// failing it under CI=true).
func Path(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"ngircd", "/usr/sbin/ngircd"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("ngircd is required under CI=true (apt-get install ngircd)")
	}
	tb.Skip("ngircd not installed (apt-get install ngircd)")
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start runs ngIRCd on a free loopback port and stops it when tb ends.
// relaxed turns its flood control off (user mode F, no penalty time);
// otherwise its defaults apply, as on a real network. ngIRCd 26's default
// flood control handles at most three commands of a client per pass (and
// about 256 bytes a second), then stops reading that client's socket for a
// penalty second: a burst is delivered at about three short lines, or two
// to three 440-byte lines, a second, and the excess waits in the socket. It
// never disconnects a client for flooding (measured with 1,000 lines sent
// at once).
func Start(tb testing.TB, relaxed bool) *Server {
	tb.Helper()
	bin := Path(tb)
	dir := tb.TempDir()
	os.Chmod(dir, 0o755) // ngircd may drop privileges and must still read its config
	port := FreePort(tb)
	conf := Config(port, relaxed)
	path := filepath.Join(dir, "ngircd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), tb: tb, bin: bin, conf: path}
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// Start starts the server again after Stop, on the same port, and waits
// until it accepts connections.
func (s *Server) Start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out != nil {
		s.log += s.out.String()
	}
	s.out = &syncBuffer{}
	s.cmd = exec.Command(s.bin, "-n", "-f", s.conf)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("starting ngircd: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(deadline) {
			s.stopLocked()
			s.tb.Fatalf("ngircd did not start: %v\n%s", err, s.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server; every client connection drops.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Config is the ngIRCd configuration of a test server on 127.0.0.1:port;
// relaxed turns flood control off (MaxPenaltyTime = 0, user mode F).
// Without relaxed every flood setting is ngIRCd's default; the settings
// that differ from its defaults are unrelated to flooding: any number of
// connections from 127.0.0.1, nicks up to 30 characters, and slower PING
// timeouts (300 s and 60 s instead of 120 s and 20 s).
func Config(port int, relaxed bool) string {
	limits, modes := "", ""
	if relaxed {
		limits, modes = "MaxPenaltyTime = 0\n", "DefaultUserModes = F\n"
	}
	return fmt.Sprintf(`[Global]
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
PingTimeout = 300
PongTimeout = 60
%s[Options]
DNS = no
Ident = no
PAM = no
%s`, port, limits, modes)
}
