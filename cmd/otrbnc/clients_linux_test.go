//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore/otrtest/libotrpeer"
)

// This file runs real IRC clients through a real otrbnc process and a real
// IRC server (ngIRCd), and looks at what the user sees: the per-window log
// files the client writes. The client runs in a pseudo-terminal, as it would
// for a user, with its configuration in a temporary directory, and talks to
// nothing but loopback.

// requireClient returns the path of an IRC client executable. A missing
// client skips the test, except under CI=true, where it fails it.
func requireClient(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	return ""
}

// openPTY returns a new pseudo-terminal pair, the terminal sized to
// rows×cols.
func openPTY(rows, cols uint16) (ptm, pts *os.File, err error) {
	ptm, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	ioctl := func(f *os.File, req uintptr, arg unsafe.Pointer) error {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(arg)); e != 0 {
			return e
		}
		return nil
	}
	var unlock int32
	var n uint32
	if err := ioctl(ptm, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("unlocking the pty: %w", err)
	}
	if err := ioctl(ptm, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("opening the pty: %w", err)
	}
	ws := struct{ rows, cols, x, y uint16 }{rows, cols, 0, 0}
	if err := ioctl(pts, syscall.TIOCSWINSZ, unsafe.Pointer(&ws)); err != nil {
		ptm.Close()
		pts.Close()
		return nil, nil, fmt.Errorf("sizing the pty: %w", err)
	}
	return ptm, pts, nil
}

// irssiClient is irssi, text mode, without its OTR module, in a
// pseudo-terminal. A small Perl script (irssi's own scripting, part of
// Debian's irssi package) writes every line irssi prints with the name of
// the window it goes to: that is what the user sees, window by window.
// irssi's autolog is on too; it files lines by target (a notice from *otr
// shown in the status window still goes to *otr's log), so it only serves
// the time stamps it writes.
type irssiClient struct {
	t      *testing.T
	home   string
	logDir string
	cmd    *exec.Cmd
	ptm    *os.File
	screen syncBuffer // raw terminal output, for failure reports
	exited chan error
}

// irssiTag is the chat network name in irssi's configuration, and so the
// directory of its autolog files.
const irssiTag = "otrbnc"

// irssiWindowLog is the Perl script that logs printed lines by window:
// window name (the active item's, or "status" for window 1 without one),
// message level and the text without formatting, tab-separated.
const irssiWindowLog = `use strict;
use Irssi;
my $file = $ENV{OTRBNC_TEST_WINDOW_LOG};
Irssi::signal_add('print text', sub {
	my ($dest, $text, $stripped) = @_;
	my $w = $dest->{window} or return;
	my $name = $w->{active} ? $w->{active}->{name} : ($w->{refnum} == 1 ? 'status' : 'window' . $w->{refnum});
	$stripped =~ s/[\t\n]/ /g;
	open(my $fh, '>>', $file) or return;
	print $fh join("\t", $name, Irssi::bits2level($dest->{level}), $stripped), "\n";
	close($fh);
});
`

// startIrssi runs irssi as nick alice, connected to addr (with password pw
// if not empty).
func startIrssi(t *testing.T, addr, pw string) *irssiClient {
	t.Helper()
	bin := requireClient(t, "irssi", "irssi")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	c := &irssiClient{t: t, home: home, logDir: filepath.Join(home, "logs"), exited: make(chan error, 1)}
	// autoload_modules without "otr": irssi 1.4 loads its OTR module by
	// default when installed (Debian's irssi-plugin-otr), and otrbnc users
	// must not run it (README). The Perl module is loaded for the window
	// log.
	conf := fmt.Sprintf(`servers = (
  { address = %q; chatnet = %q; port = %q; password = %q; use_tls = "no"; autoconnect = "yes"; }
);
chatnets = { %s = { type = "IRC"; }; };
settings = {
  core = { autoload_modules = "perl"; real_name = "Alice"; user_name = "t"; nick = "alice"; settings_autosave = "no"; };
  "fe-common/core" = { autolog = "yes"; autolog_path = %q; autolog_level = "all"; };
};
`, host, irssiTag, port, pw, irssiTag, filepath.Join(c.logDir, "$tag", "$0.log"))
	files := map[string]string{
		"config": conf,
		// startup runs before autoconnect: turn paste detection off so
		// that typed lines are never held as a paste, and send commands
		// without irssi's flood delay (2.2 s a line after a burst), which
		// only slows the test down.
		"startup":                      "/set paste_detect_time 0\n/set cmd_queue_speed 10msec\n",
		"scripts/autorun/windowlog.pl": irssiWindowLog,
	}
	for name, text := range files {
		path := filepath.Join(home, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(c.logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ptm, pts, err := openPTY(50, 200)
	if err != nil {
		t.Fatal(err)
	}
	c.ptm = ptm
	c.cmd = exec.Command(bin, "--home="+home)
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = pts, pts, pts
	c.cmd.Env = []string{"HOME=" + home, "TERM=xterm", "LANG=C.UTF-8", "PATH=" + os.Getenv("PATH"),
		"OTRBNC_TEST_WINDOW_LOG=" + c.windowLog()}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := c.cmd.Start(); err != nil {
		ptm.Close()
		pts.Close()
		t.Fatalf("starting irssi: %v", err)
	}
	pts.Close()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := ptm.Read(buf)
			c.screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(c.stop)
	return c
}

func (c *irssiClient) windowLog() string { return filepath.Join(c.logDir, "windows.log") }

// stop quits irssi, killing it if it does not exit promptly, and reports
// what it showed if the test failed.
func (c *irssiClient) stop() {
	c.typeLine("/quit")
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
	c.ptm.Close()
	if c.t.Failed() {
		b, _ := os.ReadFile(c.windowLog())
		c.t.Logf("irssi printed (window, level, text):\n%s", b)
	}
}

// typeLine types s and Enter into irssi's input line.
func (c *irssiClient) typeLine(s string) {
	c.ptm.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.ptm.Write([]byte(s + "\r")); err != nil {
		c.t.Logf("typing %q: %v", s, err)
	}
}

// query types s into the query window with nick, as a user does.
func (c *irssiClient) query(nick, s string) {
	c.typeLine("/query " + nick)
	c.typeLine(s)
}

// printed is one line irssi printed.
type printed struct {
	window, level, text string
}

// printedLines returns every line irssi printed so far, in order.
func (c *irssiClient) printedLines() []printed {
	b, err := os.ReadFile(c.windowLog())
	if err != nil {
		return nil
	}
	var ps []printed
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(l, "\t", 3); len(f) == 3 {
			ps = append(ps, printed{window: strings.ToLower(f[0]), level: f[1], text: f[2]})
		}
	}
	return ps
}

// window returns the text of the lines irssi showed in window name (a
// nick's query window, or "status").
func (c *irssiClient) window(name string) []string {
	var lines []string
	for _, p := range c.printedLines() {
		if p.window == strings.ToLower(name) {
			lines = append(lines, p.text)
		}
	}
	return lines
}

// waitWindow waits until a line of window name contains sub, and returns
// its index.
func (c *irssiClient) waitWindow(name, sub string) int {
	c.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		for i, l := range c.window(name) {
			if strings.Contains(l, sub) {
				return i
			}
		}
		select {
		case err := <-c.exited:
			c.exited <- err
			c.t.Fatalf("irssi exited (%v) while waiting for %q in window %s; terminal:\n%q", err, sub, name, tail(c.screen.String(), 2000))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %q in irssi window %s; it shows:\n%s", sub, name, strings.Join(c.window(name), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// otrbncProcess builds cmd/otrbnc from this tree and runs it on upstream,
// as user alice with the manual policy. It returns the listen address and
// the client password. When the tests run with -race, so does otrbnc (the
// packages are then already compiled that way), and a race it reports
// fails the test.
func otrbncProcess(t *testing.T, upstream string) (addr, pw string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "otrbnc")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building otrbnc: %v\n%s", err, out)
	}
	pw = "client-password" // irssi sends PASS without a trailing-parameter colon
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := fmt.Sprintf(`state_dir = %q
log_level = "debug"
password_hash = %q
[[listen]]
address = %q
[[network]]
name = "t"
address = "irc+insecure://%s"
nick = "alice"
policy = "manual"
pacing = "off"
`, filepath.Join(dir, "state"), cheapHash(t, pw), addr, upstream)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command(bin, "run", "-config", path)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if strings.Contains(logs.String(), "WARNING: DATA RACE") {
			t.Errorf("otrbnc reported a data race")
		}
		if t.Failed() {
			t.Logf("otrbnc log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(testTimeout)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr, pw
		}
		select {
		case err := <-exited:
			t.Fatalf("otrbnc exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("otrbnc is not listening on %s:\n%s", addr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// otrPeer is an OTR user (libotr 4.1.1, manual policy) connected straight
// to the IRC server, like an irssi-otr user.
type otrPeer struct {
	t    *testing.T
	nick string
	c    *ircClient
	p    *libotrpeer.Peer
	// texts receives what the peer's user sees: decrypted or plain text.
	texts  chan string
	online chan string // RPL_ISON replies

	mu sync.Mutex
	// received holds every PRIVMSG text that reached the peer, as sent on
	// the network, in order.
	received []string
}

func newOTRPeer(t *testing.T, ircAddr, nick string) *otrPeer {
	t.Helper()
	libotrpeer.Require(t)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := libotrpeer.Start(ctx, libotrpeer.Options{Account: nick, Dir: t.TempDir(), Policy: libotrpeer.PolicyManual, MaxMessageSize: 400})
	if err != nil {
		cancel()
		t.Fatalf("starting the libotr peer: %v", err)
	}
	t.Cleanup(func() { p.Close(); cancel() })
	o := &otrPeer{t: t, nick: nick, c: login(t, ircAddr, "", nick, nick), p: p,
		texts: make(chan string, 1000), online: make(chan string, 100)}
	go o.pump()
	return o
}

func (o *otrPeer) pump() {
	ctx := context.Background()
	for line := range o.c.lines {
		m, err := irc.ParseMessage(line)
		if err != nil {
			continue
		}
		switch {
		case m.Command == "303":
			o.online <- m.Trailing()
		case m.Command == "PRIVMSG" && strings.EqualFold(m.Param(0), o.nick) && m.Prefix != nil:
			o.mu.Lock()
			o.received = append(o.received, m.Trailing())
			o.mu.Unlock()
			r, err := o.p.Recv(ctx, m.Prefix.Name, m.Trailing())
			if err != nil {
				o.t.Logf("peer %s: recv: %v", o.nick, err)
			}
			o.write(m.Prefix.Name, r.Out)
			if r.Delivered {
				o.texts <- r.Text
			}
		}
	}
}

func (o *otrPeer) write(to string, lines []string) {
	for _, l := range lines {
		o.c.send("PRIVMSG " + to + " :" + l)
	}
}

// waitOnline waits until nick is on the IRC server.
func (o *otrPeer) waitOnline(nick string) {
	o.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		o.c.send("ISON " + nick)
		select {
		case r := <-o.online:
			if strings.EqualFold(strings.TrimSpace(r), nick) {
				return
			}
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("%s never came online", nick)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// say sends text to `to` through libotr: encrypted in a session, in clear
// otherwise.
func (o *otrPeer) say(to, text string) {
	o.t.Helper()
	r, err := o.p.Send(context.Background(), to, text)
	if err != nil {
		o.t.Fatalf("peer %s: send: %v", o.nick, err)
	}
	o.write(to, r.Out)
}

// end ends the OTR conversation with `to` (libotr sends the disconnect
// message).
func (o *otrPeer) end(to string) {
	o.t.Helper()
	r, err := o.p.End(context.Background(), to)
	if err != nil {
		o.t.Fatalf("peer %s: end: %v", o.nick, err)
	}
	o.write(to, r.Out)
}

// waitState waits until libotr's conversation with `to` is in state
// ("plaintext", "encrypted" or "finished").
func (o *otrPeer) waitState(to, state string) {
	o.t.Helper()
	waitFor(o.t, fmt.Sprintf("%s's conversation with %s to be %s", o.nick, to, state), func() bool {
		st, err := o.p.Status(context.Background(), to)
		return err == nil && st.MsgState == state
	})
}

// expectText waits for the peer's user to see text.
func (o *otrPeer) expectText(text string) {
	o.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case got := <-o.texts:
			if got == text {
				return
			}
			o.t.Logf("peer %s: skipping %q", o.nick, got)
		case <-timer.C:
			o.t.Fatalf("peer %s never saw %q", o.nick, text)
		}
	}
}

// receivedSince returns the PRIVMSG texts that reached the peer after the
// first n.
func (o *otrPeer) receivedSince(n int) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.received[n:]...)
}

func (o *otrPeer) receivedCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.received)
}
