//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests in this file pin down where real IRC clients show the lines
// otrbnc could use to tell the user something about a conversation: which
// window (the query with the peer, the status/server window, another
// query) and how the line reads. otrbnc's choice of representation for
// refused messages and OTR state changes rests on these facts; when a
// client release changes them, these tests say so.
//
// The client (alice) talks to a scripted server that can send any line.
// It opens a query with bob, then gets every case below.

// displayCase is one line sent to the client and where it must show.
type displayCase struct {
	id   string // unique text in the line, looked for in the client's logs
	line string // sent as is, $NICK replaced by the client's nick
	// irssiFind replaces id as the text to look for in irssi, which
	// prints its own text for some numerics.
	irssiFind string
	// irssi, weechat and hexchat name the window each client must show
	// the line in: a nick (its query window), or "status" (irssi's status
	// window, WeeChat's server buffer, HexChat's network tab). HexChat
	// shows much in whatever tab is in front: the tests keep a query with
	// zoe there, so "zoe" means the front tab.
	irssi, weechat, hexchat string
}

// displayCases are the representations the research compared.
var displayCases = []displayCase{
	{id: "C01", line: ":bob!u@h NOTICE $NICK :C01 notice from bob", irssi: "bob", weechat: "bob", hexchat: "bob"},
	{id: "C02", line: ":bob!otr@otrbnc NOTICE $NICK :C02 notice from bob with another user@host", irssi: "bob", weechat: "bob", hexchat: "bob"},
	{id: "C03", line: ":bob!u@h PRIVMSG $NICK :C03 message from bob", irssi: "bob", weechat: "bob", hexchat: "bob"},
	{id: "C04", line: "@time=2020-01-02T03:04:05.000Z :bob!u@h PRIVMSG $NICK :C04 message from bob with a time tag", irssi: "bob", weechat: "bob", hexchat: "bob"},
	{id: "C05", line: ":otrbnc FAIL PRIVMSG CANNOT_SEND bob :C05 standard reply FAIL", irssi: "status", weechat: "status", hexchat: "zoe"},
	{id: "C06", line: ":otrbnc 404 $NICK bob :C06 numeric 404", irssi: "bob", weechat: "status", hexchat: "bob"},
	{id: "C07", line: ":otrbnc 401 $NICK bob :C07 No such nick", irssiFind: "bob: No such nick/channel", irssi: "bob", weechat: "status", hexchat: "bob"},
	{id: "C08", line: ":otrbnc 400 $NICK bob :C08 numeric 400", irssi: "status", weechat: "status", hexchat: "bob"},
	{id: "C09", line: ":otrbnc 301 $NICK bob :C09 away message", irssi: "bob", weechat: "bob", hexchat: "zoe"},
	{id: "C10", line: ":bob!u@h PRIVMSG $NICK :\x01ACTION C10 action from bob\x01", irssi: "bob", weechat: "bob", hexchat: "bob"},
	{id: "C11", line: ":bob!u@h NOTICE $NICK :\x01OTR C11 CTCP reply from bob\x01", irssi: "bob", weechat: "status", hexchat: "bob"},
	{id: "C12", line: ":*otr!otr@otrbnc NOTICE $NICK :C12 notice from *otr", irssi: "status", weechat: "status", hexchat: "zoe"},
	{id: "C13", line: ":*otr!otr@otrbnc PRIVMSG $NICK :C13 message from *otr", irssi: "*otr", weechat: "*otr", hexchat: "*otr"},
	// Our own nick as the source, to a client without echo-message.
	{id: "C14", line: ":$NICK!alice@alice.host PRIVMSG carol :C14 own message to carol", irssi: "carol", weechat: "carol", hexchat: "alice"},
	{id: "C15", line: ":$NICK!alice@alice.host PRIVMSG bob :\x01ACTION C15 own action to bob\x01", irssi: "bob", weechat: "bob", hexchat: "alice"},
	// irssi names the server of a numeric when it is not the one that
	// welcomed the client (otrbnc relays the network's 001).
	{id: "C16", line: ":otrbnc.invalid 404 $NICK bob :C16 numeric 404 from another server name", irssi: "bob", weechat: "status", hexchat: "bob"},
	// irssi takes a message from a new nick with the user@host of an open
	// query for a nick change, and renames the query: otrbnc must never
	// send messages from two nicks with one made-up user@host.
	{id: "C17", line: ":bob!otr@otrbnc PRIVMSG $NICK :C17 message from bob with a made-up user@host", irssi: "bob", weechat: "bob", hexchat: "bob"},
	{id: "C18", line: ":dave!otr@otrbnc PRIVMSG $NICK :C18 message from dave with the same user@host", irssi: "dave", weechat: "dave", hexchat: "dave"},
	{id: "C19", irssiFind: "bob is now known as dave", irssi: "dave"},
}

// displayCaps is what the scripted server offers.
const displayCaps = "server-time echo-message znc.in/self-message standard-replies draft/standard-replies message-tags batch"

// scriptServer is an IRC server that registers one client and then sends
// it whatever the test says.
type scriptServer struct {
	t    *testing.T
	ln   net.Listener
	addr string
	// opened receives a line when the client sends "PING :query-open",
	// which the clients are made to send once their query with bob is open.
	opened chan struct{}

	mu   sync.Mutex
	conn net.Conn
	nick string
	req  []string // CAP REQ arguments, in order
}

func startScriptServer(t *testing.T) *scriptServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptServer{t: t, ln: ln, addr: ln.Addr().String(), opened: make(chan struct{}, 1)}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

// send writes raw lines to the client.
func (s *scriptServer) send(lines ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		s.t.Errorf("no client to send %q to", lines)
		return
	}
	for _, l := range lines {
		s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(s.conn, "%s\r\n", strings.ReplaceAll(l, "$NICK", s.nick))
	}
}

func (s *scriptServer) capReqs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.req, " ")
}

func (s *scriptServer) serve(c net.Conn) {
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	sc := bufio.NewScanner(c)
	var nick, user bool
	negotiating, welcomed := false, false
	for sc.Scan() {
		f := strings.Fields(strings.TrimRight(sc.Text(), "\r"))
		if len(f) == 0 {
			continue
		}
		arg := func(i int) string {
			if i < len(f) {
				return strings.TrimPrefix(f[i], ":")
			}
			return ""
		}
		switch strings.ToUpper(f[0]) {
		case "CAP":
			switch strings.ToUpper(arg(1)) {
			case "LS":
				negotiating = true
				s.send(":otrbnc CAP * LS :" + displayCaps)
			case "REQ":
				req := strings.TrimPrefix(strings.Join(f[2:], " "), ":")
				s.mu.Lock()
				s.req = append(s.req, req)
				s.mu.Unlock()
				s.send(":otrbnc CAP * ACK :" + req)
			case "END":
				negotiating = false
			}
		case "NICK":
			s.mu.Lock()
			s.nick = arg(1)
			s.mu.Unlock()
			nick = true
		case "USER":
			user = true
		case "PING":
			if arg(1) == "query-open" {
				s.opened <- struct{}{}
			}
			s.send(":otrbnc PONG otrbnc :" + arg(1))
		}
		if nick && user && !negotiating && !welcomed {
			welcomed = true
			s.send(":otrbnc 001 $NICK :Welcome $NICK",
				":otrbnc 002 $NICK :Your host is otrbnc",
				":otrbnc 003 $NICK :This server was created today",
				":otrbnc 004 $NICK otrbnc 1 iow ovb",
				":otrbnc 005 $NICK CHANTYPES=# PREFIX=(ov)@+ NETWORK=script CASEMAPPING=rfc1459 :are supported",
				":otrbnc 422 $NICK :No MOTD")
		}
	}
}

// runDisplayCases sends every case once the client's query with bob is
// open, then a last line from bob, and waits until windows (the client's
// logs, by window name) show it.
func runDisplayCases(t *testing.T, s *scriptServer, windows func() map[string][]string) map[string][]string {
	t.Helper()
	select {
	case <-s.opened:
	case <-time.After(testTimeout):
		t.Fatal("the client never opened its query with bob")
	}
	for _, c := range displayCases {
		if c.line != "" {
			s.send(c.line)
		}
	}
	s.send(":bob!u@h PRIVMSG $NICK :end of the cases")
	var w map[string][]string
	waitFor(t, "the last line in the query with bob", func() bool {
		w = windows()
		for _, l := range w["bob"] {
			if strings.Contains(l, "end of the cases") {
				return true
			}
		}
		return false
	})
	return w
}

// checkDisplay checks that each case shows in the window want(c) says, and
// logs how it reads. find(c), if not empty, is the text to look for
// instead of c.id.
func checkDisplay(t *testing.T, client string, windows map[string][]string, want, find func(displayCase) string) {
	t.Helper()
	var names []string
	for n := range windows {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, c := range displayCases {
		w := want(c)
		if w == "" {
			continue
		}
		text := find(c)
		if text == "" {
			text = c.id + " "
		}
		var found []string
		for _, n := range names {
			for _, l := range windows[n] {
				if strings.Contains(l, text) {
					found = append(found, n)
					t.Logf("%s %s: window %s: %q", client, c.id, n, l)
				}
			}
		}
		if len(found) != 1 || found[0] != w {
			t.Errorf("%s: %s (%q) shows in windows %q, want only %q", client, c.id, c.line, found, w)
		}
	}
}

// TestIrssiDisplay checks where irssi 1.4 shows each case.
func TestIrssiDisplay(t *testing.T) {
	if testing.Short() {
		t.Skip("runs irssi")
	}
	t.Parallel()
	s := startScriptServer(t)
	cl := startIrssi(t, s.addr, "")
	cl.waitWindow("status", "Welcome alice")
	cl.typeLine("/query bob")
	cl.typeLine("/quote PING :query-open")
	w := runDisplayCases(t, s, cl.windows)
	checkDisplay(t, "irssi", w, func(c displayCase) string { return c.irssi }, func(c displayCase) string { return c.irssiFind })

	if got, want := s.capReqs(), "znc.in/self-message server-time"; got != want {
		t.Errorf("irssi requested %q of %q, want %q", got, displayCaps, want)
	}
	// irssi negotiates server-time but, by default (show_server_time
	// off), shows and logs the time a line arrived: a replayed line looks
	// new.
	b, err := os.ReadFile(filepath.Join(cl.logDir, irssiTag, "bob.log"))
	if err != nil {
		t.Fatal(err)
	}
	if now := time.Now().Format("15:04"); now != "03:04" && strings.Contains(string(b), "\n03:04 <bob> C04 ") {
		t.Errorf("irssi logged the time of the time tag, not the arrival time:\n%s", b)
	}
	if !strings.Contains(string(b), "<bob> C04 ") {
		t.Errorf("irssi did not log C04 in bob.log:\n%s", b)
	}
}

// windows returns what irssi showed, by window, each line with its
// message level.
func (c *irssiClient) windows() map[string][]string {
	w := map[string][]string{}
	for _, p := range c.printedLines() {
		w[p.window] = append(w[p.window], p.level+" | "+p.text)
	}
	return w
}

// TestWeechatDisplay checks where WeeChat 3.8 (weechat-headless, Debian's
// build, whose core has no fifo plugin) shows each case. Its logger plugin
// writes one file per buffer.
func TestWeechatDisplay(t *testing.T) {
	if testing.Short() {
		t.Skip("runs weechat-headless")
	}
	t.Parallel()
	bin := requireClient(t, "weechat-headless", "weechat-headless")
	s := startScriptServer(t)
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(s.addr)
	// The server's "command" runs once registered: it opens the query and
	// tells the scripted server so. (A configuration file, because the
	// command line splits commands at every semicolon.)
	conf := map[string]string{
		"irc.conf": fmt.Sprintf(`[server]
script.addresses = "127.0.0.1/%s"
script.ssl = off
script.nicks = "alice"
script.username = "alice"
script.realname = "Alice"
script.autoconnect = on
script.command = "/query bob;/quote PING :query-open"
`, port),
		"logger.conf": "[file]\nflush_delay = 0\n",
	}
	for name, text := range conf {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out syncBuffer
	cmd := exec.Command(bin, "--dir", dir, "--no-script")
	cmd.Env = []string{"HOME=" + dir, "LANG=C.UTF-8", "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	logs := filepath.Join(dir, "logs")
	windows := func() map[string][]string {
		w := map[string][]string{}
		files, _ := filepath.Glob(filepath.Join(logs, "*.weechatlog"))
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".weechatlog")
			switch {
			case name == "irc.server.script":
				name = "status"
			case strings.HasPrefix(name, "irc.script."):
				name = strings.TrimPrefix(name, "irc.script.")
			}
			b, _ := os.ReadFile(f)
			for _, l := range strings.Split(string(b), "\n") {
				if l != "" {
					w[name] = append(w[name], strings.ReplaceAll(l, "\t", " | "))
				}
			}
		}
		return w
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			for n, ls := range windows() {
				t.Logf("weechat buffer %s:\n%s", n, strings.Join(ls, "\n"))
			}
			t.Logf("weechat output:\n%s", out.String())
		}
	})
	w := runDisplayCases(t, s, windows)
	checkDisplay(t, "weechat", w, func(c displayCase) string { return c.weechat }, func(displayCase) string { return "" })

	if got, want := s.capReqs(), "server-time message-tags"; got != want {
		t.Errorf("weechat requested %q of %q, want %q", got, displayCaps, want)
	}
	for _, l := range w["bob"] {
		if strings.Contains(l, "C04") && !strings.HasPrefix(l, "2020-01-02 03:04:05 ") {
			t.Errorf("weechat logged a line with a time tag at its arrival time: %q", l)
		}
	}
}

// hexchatEnv enables TestHexchatDisplay, which needs a graphical client and
// an X server (apt-get install hexchat xvfb xdotool); CI does not run it.
const hexchatEnv = "OTRBNC_TEST_HEXCHAT"

// TestHexchatDisplay checks where HexChat 2.16 shows each case, with the
// query with bob open but not in front (a query with zoe is). It runs
// under Xvfb and reads HexChat's per-tab log files.
func TestHexchatDisplay(t *testing.T) {
	if os.Getenv(hexchatEnv) != "1" {
		t.Skipf("set %s=1 to run HexChat under Xvfb (apt-get install hexchat xvfb xdotool)", hexchatEnv)
	}
	bin := requireClient(t, "hexchat", "hexchat")
	xvfb := requireClient(t, "Xvfb", "xvfb")
	s := startScriptServer(t)
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(s.addr)

	// Xvfb picks a free display and writes its number to fd 3.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	x := exec.Command(xvfb, "-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp")
	x.ExtraFiles = []*os.File{pw}
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() { x.Process.Kill(); x.Wait() })
	pr.SetReadDeadline(time.Now().Add(testTimeout))
	num, err := bufio.NewReader(pr).ReadString('\n')
	pr.Close()
	if err != nil {
		t.Fatalf("Xvfb gave no display number: %v", err)
	}
	display := ":" + strings.TrimSpace(num)

	files := map[string]string{
		"hexchat.conf": `version = 2.16.1
irc_nick1 = alice
irc_nick2 = alice_
irc_nick3 = alice__
irc_user_name = alice
irc_real_name = Alice
irc_logging = 1
irc_logmask = %n/%c.log
stamp_log = 1
gui_slist_skip = 1
gui_quit_dialog = 0
gui_tray = 0
net_throttle = 0
text_replay = 0
`,
		// Flags 10: use the global user information, connect at start.
		// The connect commands open the queries, zoe's last (in front),
		// then tell the scripted server.
		"servlist.conf": fmt.Sprintf("v=2.16.1\n\nN=script\nE=UTF-8 (Unicode)\nF=10\nD=0\nS=127.0.0.1/%s\nC=QUERY bob\nC=QUERY zoe\nC=QUOTE PING :query-open\n", port),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "--cfgdir", dir, "--no-plugins")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = []string{"HOME=" + dir, "DISPLAY=" + display, "LANG=C.UTF-8", "PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("hexchat output:\n%s", out.String())
		}
	})
	if os.Getuid() == 0 {
		// HexChat run as root waits for "Running IRC as root is stupid!"
		// to be dismissed.
		xdotool := requireClient(t, "xdotool", "xdotool")
		go func() {
			for i := 0; i < 20; i++ {
				time.Sleep(500 * time.Millisecond)
				select {
				case <-s.opened:
					s.opened <- struct{}{}
					return
				default:
				}
				c := exec.Command(xdotool, "key", "Return")
				c.Env = []string{"DISPLAY=" + display}
				c.Run()
			}
		}()
	}
	logs := filepath.Join(dir, "logs", "script")
	windows := func() map[string][]string {
		w := map[string][]string{}
		files, _ := filepath.Glob(filepath.Join(logs, "*.log"))
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".log")
			if name == "script" || name == "server" {
				name = "status"
			}
			b, _ := os.ReadFile(f)
			for _, l := range strings.Split(string(b), "\n") {
				if l != "" && !strings.HasPrefix(l, "**** ") {
					w[name] = append(w[name], strings.ReplaceAll(l, "\t", " | "))
				}
			}
		}
		return w
	}
	w := runDisplayCases(t, s, windows)
	checkDisplay(t, "hexchat", w, func(c displayCase) string { return c.hexchat }, func(displayCase) string { return "" })
	if got, want := s.capReqs(), "server-time"; got != want {
		t.Errorf("hexchat requested %q of %q, want %q", got, displayCaps, want)
	}
	for _, l := range w["bob"] {
		if strings.Contains(l, "C04") && !strings.HasPrefix(l, "Jan 02 03:04:05 ") {
			t.Errorf("hexchat logged a line with a time tag at its arrival time: %q", l)
		}
	}
}
