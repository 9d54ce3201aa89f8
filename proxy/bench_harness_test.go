//go:build linux

package proxy_test

// Shared harness of the process-level benchmarks (bench_*_test.go): otrbnc
// and ZNC run as separate processes built or installed on this machine,
// everything talks over loopback sockets, and the measurements come from
// /proc and the kernel's per-process CPU clock. Nothing here reaches into
// the proxy package's internals, so the benchmarks survive a restructuring
// of proxy/ as long as cmd/otrbnc and its configuration file keep working.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/irc.v4"

	"otrbnc/proxy/ircdtest"
)

const (
	// benchPassword is the client password of both bouncers.
	benchPassword = "bench password"
	// benchWait bounds every wait for a line in the harness.
	benchWait = 60 * time.Second
	// envPerf names a directory: when set, measured phases of otrbnc (and
	// ZNC) are recorded with perf into it (see profiler).
	envPerf = "OTRBNC_BENCH_PERF"
	// envOtrbncEnv lists VAR=value pairs (space-separated) added to the
	// environment of the otrbnc processes only.
	envOtrbncEnv = "OTRBNC_BENCH_ENV"
)

// ---------------------------------------------------------------------
// Processes

// bouncer is an otrbnc or ZNC process under measurement.
type bouncer struct {
	name string
	pid  int
	addr string // where clients connect
	nick string // its nick on the IRC server
	log  *procLog
}

// cpu returns the process's CPU time so far (user + system, all threads).
func (b *bouncer) cpu(tb testing.TB) time.Duration {
	tb.Helper()
	d, err := procCPUTime(b.pid)
	if err != nil {
		tb.Fatalf("%s: %v", b.name, err)
	}
	return d
}

// mem returns the process's resident set and its peak (VmHWM), in KiB.
func (b *bouncer) mem(tb testing.TB) (rss, hwm int) {
	tb.Helper()
	rss, hwm, err := procMemKiB(b.pid)
	if err != nil {
		tb.Fatalf("%s: %v", b.name, err)
	}
	return rss, hwm
}

// buildOtrbnc builds cmd/otrbnc into a temporary directory (the go build
// cache makes every build after the first one cheap).
func buildOtrbnc(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "otrbnc")
	out, err := exec.Command("go", "build", "-o", bin, "otrbnc/cmd/otrbnc").CombinedOutput()
	if err != nil {
		tb.Fatalf("building otrbnc: %v\n%s", err, out)
	}
	return bin
}

// otrbncConfig is what differs between the benchmarks' otrbnc
// configurations.
type otrbncConfig struct {
	upstream string // host:port of the IRC server
	nick     string
	policy   string // default "manual"
	// rateBurst and rateInterval pace the upstream writer; zero values
	// leave rate_burst and rate_interval out of the file, so otrbnc's
	// defaults apply (5 and "2s" today) whatever they become.
	rateBurst    int
	rateInterval string
	// env is added to the process environment (e.g. GODEBUG=gctrace=1).
	env []string
}

// pacingOff is the pacing of the throughput benchmarks: otrbnc's upstream
// rate limiter never makes a line wait.
const (
	pacingOffBurst    = 1000000
	pacingOffInterval = "1us"
)

// configText renders the TOML configuration file.
func (c otrbncConfig) configText(stateDir string, port int, hash string) string {
	policy := c.policy
	if policy == "" {
		policy = "manual"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir = %q\nlog_level = \"warn\"\npassword_hash = %q\n", stateDir, hash)
	fmt.Fprintf(&b, "[[listen]]\naddress = \"127.0.0.1:%d\"\n", port)
	fmt.Fprintf(&b, "[[network]]\nname = \"bench\"\naddress = \"irc+insecure://%s\"\nnick = %q\npolicy = %q\n", c.upstream, c.nick, policy)
	if c.rateBurst > 0 {
		fmt.Fprintf(&b, "rate_burst = %d\n", c.rateBurst)
	}
	if c.rateInterval != "" {
		fmt.Fprintf(&b, "rate_interval = %q\n", c.rateInterval)
	}
	return b.String()
}

// benchPasswordHash is a cheap bcrypt hash of benchPassword.
func benchPasswordHash(tb testing.TB) string {
	tb.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(benchPassword), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	return string(h)
}

// startOtrbnc runs the otrbnc binary bin with cfg (a fresh state
// directory, so a fresh key) and waits until it accepts clients. It is
// stopped with SIGINT when tb ends.
func startOtrbnc(tb testing.TB, bin string, cfg otrbncConfig) *bouncer {
	tb.Helper()
	dir := tb.TempDir()
	port := ircdtest.FreePort(tb)
	path := filepath.Join(dir, "config.toml")
	text := cfg.configText(filepath.Join(dir, "state"), port, benchPasswordHash(tb))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", path)
	cmd.Env = append(os.Environ(), cfg.env...)
	// OTRBNC_BENCH_ENV adds variables to otrbnc's environment only (e.g.
	// "GOMAXPROCS=1 GOGC=50"), to compare runtime settings.
	cmd.Env = append(cmd.Env, strings.Fields(os.Getenv(envOtrbncEnv))...)
	log := newProcLog()
	cmd.Stderr = log
	cmd.Stdout = log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting otrbnc: %v", err)
	}
	tb.Cleanup(func() { stopProcess(cmd, syscall.SIGINT) })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(tb, "otrbnc", addr, log)
	return &bouncer{name: "otrbnc", pid: cmd.Process.Pid, addr: addr, nick: cfg.nick, log: log}
}

// zncPath returns the znc executable, or skips (fails under CI=true).
func zncPath(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("znc"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("znc is required under CI=true (apt-get install znc)")
	}
	tb.Skip("znc not installed (apt-get install znc)")
	return ""
}

// zncConfigText is the whole ZNC configuration: one listener on
// loopback, one user with one network, no modules, no flood protection
// towards the server (FloodRate = -1 turns ZNC's send queue throttle
// off), no connect delay.
func zncConfigText(port int, upstream, nick string) string {
	return zncConfig(port, upstream, nick, false)
}

// zncConfig is zncConfigText; with defaultFlood the network has no
// FloodRate and FloodBurst lines, so ZNC's own defaults pace what it sends
// to the server.
func zncConfig(port int, upstream, nick string, defaultFlood bool) string {
	host, uport, _ := net.SplitHostPort(upstream)
	flood := "\t\tFloodRate = -1.00\n\t\tFloodBurst = 4\n"
	if defaultFlood {
		flood = ""
	}
	return fmt.Sprintf(`Version = 1.8.2
ConnectDelay = 0
ServerThrottle = 0
<Listener bench>
	Host = 127.0.0.1
	Port = %d
	IPv4 = true
	IPv6 = false
	SSL = false
	AllowIRC = true
	AllowWeb = false
</Listener>
<User bench>
	Pass = plain#%s
	Admin = true
	Nick = %s
	AltNick = %s_
	Ident = %s
	RealName = %s
	<Network bench>
		Server = %s %s
%s	</Network>
</User>
`, port, benchPassword, nick, nick, nick, nick, host, uport, flood)
}

// startZNC runs ZNC 1.8 as a plain bouncer for nick on upstream. As root it
// runs as nobody (ZNC refuses to start as root without a 30-second
// warning pause).
func startZNC(tb testing.TB, upstream, nick string) *bouncer {
	tb.Helper()
	return startZNCFlood(tb, upstream, nick, false)
}

// startZNCFlood is startZNC; with defaultFlood ZNC paces the lines it
// sends to the server with its default flood protection (see zncConfig).
func startZNCFlood(tb testing.TB, upstream, nick string, defaultFlood bool) *bouncer {
	tb.Helper()
	bin := zncPath(tb)
	dir, err := os.MkdirTemp("", "otrbnc-bench-znc-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	port := ircdtest.FreePort(tb)
	if err := os.MkdirAll(filepath.Join(dir, "configs"), 0o755); err != nil {
		tb.Fatal(err)
	}
	conf := zncConfig(port, upstream, nick, defaultFlood)
	if err := os.WriteFile(filepath.Join(dir, "configs", "znc.conf"), []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	args := []string{bin, "--datadir", dir, "--foreground"}
	if os.Geteuid() == 0 {
		for _, p := range []string{dir, filepath.Join(dir, "configs"), filepath.Join(dir, "configs", "znc.conf")} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				tb.Fatal(err)
			}
		}
		os.Chmod(dir, 0o755)
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			tb.Skip("running as root and setpriv is missing: cannot start ZNC as nobody")
		}
		args = append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	log := newProcLog()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting znc: %v", err)
	}
	tb.Cleanup(func() { stopProcess(cmd, syscall.SIGTERM) })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(tb, "znc", addr, log)
	return &bouncer{name: "znc", pid: cmd.Process.Pid, addr: addr, nick: nick, log: log}
}

func waitListening(tb testing.TB, name, addr string, log *procLog) {
	tb.Helper()
	for deadline := time.Now().Add(benchWait); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not start listening on %s:\n%s", name, addr, log.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopProcess signals cmd and kills it if it has not exited within 15 s.
func stopProcess(cmd *exec.Cmd, sig os.Signal) {
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// procLog collects a process's output: the last lines for error messages,
// and the Go runtime's GC trace lines (GODEBUG=gctrace=1).
type procLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string // last maxLogLines
	total   int      // lines other than GC traces, in all
	gcs     []gcTrace
}

// gcTrace is one "gc N @..." line of the Go runtime: heap sizes in MB at
// the start of the cycle, at its end, and live after marking.
type gcTrace struct {
	at                       time.Time // when the harness read it
	heapStart, heapEnd, live int       // MB
	goal                     int       // MB
}

const maxLogLines = 200

var gcLine = regexp.MustCompile(`^gc \d+ @.* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)

func newProcLog() *procLog { return &procLog{} }

func (l *procLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		if m := gcLine.FindStringSubmatch(line); m != nil {
			g := gcTrace{at: time.Now()}
			g.heapStart, _ = strconv.Atoi(m[1])
			g.heapEnd, _ = strconv.Atoi(m[2])
			g.live, _ = strconv.Atoi(m[3])
			g.goal, _ = strconv.Atoi(m[4])
			l.gcs = append(l.gcs, g)
			continue
		}
		l.total++
		l.lines = append(l.lines, line)
		if len(l.lines) > maxLogLines {
			l.lines = l.lines[len(l.lines)-maxLogLines:]
		}
	}
	return len(p), nil
}

func (l *procLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// lineCount returns how many lines the process wrote, GC traces
// excluded.
func (l *procLog) lineCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// gcCount returns how many GC cycles were traced so far and the last one.
func (l *procLog) gcCount() (int, gcTrace) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.gcs) == 0 {
		return 0, gcTrace{}
	}
	return len(l.gcs), l.gcs[len(l.gcs)-1]
}

// maxLive returns the largest live heap (MB) of the GC cycles traced so
// far, and how many there were.
func (l *procLog) maxLive() (mb, cycles int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, g := range l.gcs {
		mb = max(mb, g.live)
	}
	return mb, len(l.gcs)
}

// ---------------------------------------------------------------------
// /proc and the kernel's CPU clocks

// procCPUTime reads the CPU time consumed so far by all threads of process
// pid, with nanosecond resolution: clock_gettime on the process's CPU-time
// clock (the clock id clock_getcpuclockid(3) returns, CPUCLOCK_SCHED).
// It is the same quantity as utime+stime of /proc/PID/stat, which counts in
// 10 ms ticks.
func procCPUTime(pid int) (time.Duration, error) {
	clock := int32(^uint32(pid)<<3 | 2) // MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(int64(clock)), uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0, fmt.Errorf("clock_gettime(cpu clock of %d): %w", pid, errno)
	}
	return time.Duration(ts.Nano()), nil
}

// procStatCPU reads utime+stime of /proc/PID/stat (10 ms ticks on Linux,
// USER_HZ = 100).
func procStatCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(0) ppid(1) ... utime is field 14 of the
	// line, index 11 here; stime index 12.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// procMemKiB reads VmRSS and VmHWM of a process.
func procMemKiB(pid int) (rss, hwm int, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, nil
}

// procIO returns the read- and write-family system calls a process has
// made so far (syscr and syscw of /proc/PID/io; recvmsg(2) and sendmsg(2)
// are not among them).
func procIO(pid int) (reads, writes int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes, nil
}

// procCtxSwitches sums the voluntary and involuntary context switches of
// every live thread of a process: how often its threads went to sleep
// (parked waiting for work) or were preempted.
func procCtxSwitches(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var total int64
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, _ := strings.Cut(line, ":")
			if k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches" {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
	}
	return total
}

// procCounters is a snapshot of a process's CPU time, system calls and
// context switches.
type procCounters struct {
	cpu           time.Duration
	reads, writes int64
	ctxsw         int64
}

func readCounters(tb testing.TB, pid int) procCounters {
	tb.Helper()
	cpu, err := procCPUTime(pid)
	if err != nil {
		tb.Fatal(err)
	}
	r, w, _ := procIO(pid)
	return procCounters{cpu: cpu, reads: r, writes: w, ctxsw: procCtxSwitches(pid)}
}

func (c procCounters) add(d procCounters) procCounters {
	return procCounters{cpu: c.cpu + d.cpu, reads: c.reads + d.reads, writes: c.writes + d.writes, ctxsw: c.ctxsw + d.ctxsw}
}

func (c procCounters) sub(d procCounters) procCounters {
	return procCounters{cpu: c.cpu - d.cpu, reads: c.reads - d.reads, writes: c.writes - d.writes, ctxsw: c.ctxsw - d.ctxsw}
}

// ---------------------------------------------------------------------
// A raw IRC connection

// inMsg is a message read from a connection, with the time it was read.
type inMsg struct {
	m  *irc.Message
	at time.Time
}

// ircConn is a raw IRC connection (client of a bouncer, or user of the IRC
// server) with TCP_NODELAY, one reader goroutine and automatic PONG.
type ircConn struct {
	tb  testing.TB
	nc  *net.TCPConn
	in  chan inMsg
	wmu sync.Mutex
}

func dialIRC(tb testing.TB, addr string) *ircConn {
	tb.Helper()
	c, err := dialIRCErr(tb, addr)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// dialIRCErr is dialIRC for goroutines other than the benchmark's own,
// which must not call tb.Fatal.
func dialIRCErr(tb testing.TB, addr string) (*ircConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	tc := nc.(*net.TCPConn)
	tc.SetNoDelay(true)
	c := &ircConn{tb: tb, nc: tc, in: make(chan inMsg, 4096)}
	go c.read()
	tb.Cleanup(func() { nc.Close() })
	return c, nil
}

func (c *ircConn) read() {
	defer close(c.in)
	br := bufio.NewReaderSize(c.nc, 16<<10)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		at := time.Now()
		m := parseIRC(strings.TrimRight(line, "\r\n"))
		if m == nil {
			continue
		}
		if m.Command == "PING" {
			c.send("PONG :" + m.Trailing())
			continue
		}
		c.in <- inMsg{m: m, at: at}
	}
}

// parseIRC parses a line, nil if it cannot.
func parseIRC(line string) (m *irc.Message) {
	defer func() {
		if recover() != nil {
			m = nil
		}
	}()
	m, err := irc.ParseMessage(line)
	if err != nil {
		return nil
	}
	if m.Prefix == nil {
		m.Prefix = &irc.Prefix{}
	}
	return m
}

// send writes lines (CRLF added) in one write.
func (c *ircConn) send(lines ...string) {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(benchWait))
	c.nc.Write([]byte(b.String()))
}

// expect waits up to d for a message matching pred, discarding others.
func (c *ircConn) expect(what string, d time.Duration, pred func(*irc.Message) bool) inMsg {
	c.tb.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case im, ok := <-c.in:
			if !ok {
				c.tb.Fatalf("connection closed while waiting for %s", what)
			}
			if pred(im.m) {
				return im
			}
		case <-timer.C:
			c.tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// waitWelcome waits up to d for 001 without failing the benchmark.
func (c *ircConn) waitWelcome(d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case im, ok := <-c.in:
			if !ok {
				return errors.New("connection closed before 001")
			}
			if im.m.Command == "001" {
				return nil
			}
		case <-timer.C:
			return fmt.Errorf("no 001 within %v", d)
		}
	}
}

// register logs in (with PASS when pass is not empty) and waits for 001.
func (c *ircConn) register(nick, pass string) {
	c.tb.Helper()
	if pass != "" {
		c.send("PASS :" + pass)
	}
	c.send("NICK "+nick, "USER "+nick+" 0 * :"+nick)
	c.expect("welcome (001)", benchWait, func(m *irc.Message) bool { return m.Command == "001" })
}

// registerIRCUser connects nick straight to the IRC server.
func registerIRCUser(tb testing.TB, addr, nick string) *ircConn {
	tb.Helper()
	c := dialIRC(tb, addr)
	c.register(nick, "")
	return c
}

// attachClient connects a client to a bouncer and logs in.
func attachClient(tb testing.TB, b *bouncer) *ircConn {
	tb.Helper()
	c := dialIRC(tb, b.addr)
	pass := benchPassword
	if b.name == "znc" {
		pass = "bench:" + benchPassword
	}
	c.register(b.nick, pass)
	return c
}

// isPrivmsgFrom matches a PRIVMSG from nick whose text has prefix p.
func isPrivmsgFrom(nick, p string) func(*irc.Message) bool {
	return func(m *irc.Message) bool {
		return m.Command == "PRIVMSG" && m.Prefix.Name == nick && strings.HasPrefix(m.Trailing(), p)
	}
}

// fromService matches a line from otrbnc's *otr service containing sub.
func fromService(sub string) func(*irc.Message) bool {
	return func(m *irc.Message) bool {
		return (m.Command == "PRIVMSG" || m.Command == "NOTICE") && m.Prefix.Name == "*otr" && strings.Contains(m.Trailing(), sub)
	}
}

// waitRoute sends probes from c to target until the receiver sees one:
// the bouncer is connected upstream and routes messages.
func waitRoute(tb testing.TB, c *ircConn, target string, recv *ircConn, from string) {
	tb.Helper()
	deadline := time.Now().Add(benchWait)
	for i := 0; ; i++ {
		probe := fmt.Sprintf("probe %d", i)
		c.send("PRIVMSG " + target + " :" + probe)
		timer := time.NewTimer(300 * time.Millisecond)
	wait:
		for {
			select {
			case im := <-recv.in:
				if im.m.Command == "PRIVMSG" && im.m.Prefix.Name == from && im.m.Trailing() == probe {
					timer.Stop()
					return
				}
			case <-timer.C:
				break wait
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no route from %s to %s", from, target)
		}
	}
}

// drain discards what has arrived on c so far.
func (c *ircConn) drain() {
	for {
		select {
		case <-c.in:
		default:
			return
		}
	}
}

// nudgeGC makes otrbnc allocate (PING round trips through its client
// connection, which never reach the IRC server) until its GC trace shows
// a new cycle; otrbnc must run with GODEBUG=gctrace=1. It returns the
// trace of that cycle, or false (and the last cycle seen) when none came
// within maxPings PINGs of 200 bytes.
func nudgeGC(tb testing.TB, b *bouncer, c *ircConn, maxPings int) (gcTrace, bool) {
	tb.Helper()
	n0, last := b.log.gcCount()
	for round := 0; round*1000 < maxPings; round++ {
		var lines []string
		for i := range 1000 {
			lines = append(lines, fmt.Sprintf("PING :nudge-%d-%d-%s", round, i, strings.Repeat("x", 200)))
		}
		c.send(lines...)
		end := fmt.Sprintf("nudge-%d-999-", round)
		c.expect("PONG", benchWait, func(m *irc.Message) bool {
			return m.Command == "PONG" && strings.HasPrefix(m.Trailing(), end)
		})
		if n, g := b.log.gcCount(); n > n0 {
			return g, true
		}
	}
	return last, false
}

// ---------------------------------------------------------------------
// Statistics

// percentile returns the p-quantile (0..1) of d, nearest rank.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p+0.5)]
}

// µs and ms convert a duration for ReportMetric.
func µs(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// loadAvg returns the first field of /proc/loadavg, for the logs.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
