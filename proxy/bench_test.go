package proxy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"otrbnc/otrcore"
)

// loadPeers is the number of concurrent encrypted conversations.
const loadPeers = 1000

// benchPeer is one OTR user on its own IRC connection, answering every
// message it receives with an acknowledgement.
type benchPeer struct {
	nick string
	nc   net.Conn
	wmu  sync.Mutex
	conv map[string]*otrcore.Conversation
	acct *otrcore.Account
	// next round expected from each sender; order errors counted.
	next       map[string]int
	latencies  []time.Duration
	errs       atomic.Int64
	epoch      time.Time
	registered *atomic.Int64
}

func (p *benchPeer) write(to string, lines []string) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("PRIVMSG " + to + " :" + l + "\r\n")
	}
	p.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	p.nc.Write([]byte(b.String()))
}

func (p *benchPeer) flat(res otrcore.Result) []string {
	var out []string
	for _, b := range res.Send {
		out = append(out, b.Lines...)
	}
	return out
}

func (p *benchPeer) run(done func()) {
	defer done()
	lr := newLineReader(p.nc, maxLineLen)
	for {
		line, err := lr.readLine()
		if err != nil {
			return
		}
		m, err := parseLine(line)
		if err != nil {
			continue
		}
		switch m.Command {
		case "PING":
			p.wmu.Lock()
			p.nc.Write([]byte("PONG :" + m.Param(0) + "\r\n"))
			p.wmu.Unlock()
			continue
		case "001":
			p.registered.Add(1)
			continue
		case "PRIVMSG":
		default:
			continue
		}
		from := m.Prefix.Name
		c := p.conv[from]
		if c == nil {
			c = otrcore.NewConversation(p.acct, from, otrcore.Options{Policy: otrcore.PolicyManual, MaxMessageSize: 400})
			p.conv[from] = c
		}
		now := time.Now()
		res, _ := c.Receive(now, m.Trailing())
		p.write(from, p.flat(res))
		if !res.HasText {
			continue
		}
		var r int
		var ts int64
		if _, err := fmt.Sscanf(res.Text, "r=%d t=%d", &r, &ts); err != nil {
			p.errs.Add(1)
			continue
		}
		if r != p.next[from] {
			p.errs.Add(1)
		}
		p.next[from] = r + 1
		p.latencies = append(p.latencies, now.Sub(p.epoch.Add(time.Duration(ts))))
		ack, _ := c.Send(now, "ack r="+strconv.Itoa(r))
		p.write(from, p.flat(ack))
	}
}

// startOtrbncProcess builds and runs cmd/otrbnc with a config for
// upstream; it returns the listen address and the process.
func startOtrbncProcess(b *testing.B, upstream string) (string, *exec.Cmd) {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "otrbnc")
	build := exec.Command("go", "build", "-o", bin, "otrbnc/cmd/otrbnc")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building otrbnc: %v\n%s", err, out)
	}
	port := freePort(b)
	conf := fmt.Sprintf(`state_dir = %q
log_level = "warn"
password_hash = %q
[[listen]]
address = "127.0.0.1:%d"
[[network]]
name = "bench"
address = "irc+insecure://%s"
nick = "alice"
policy = "manual"
rate_burst = 1000000
rate_interval = "1us"
`, filepath.Join(dir, "state"), testPasswordHash(), port, upstream)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", path)
	cmd.Stderr = os.Stderr
	// As in the process-level harness: OTRBNC_BENCH_ENV adds variables to
	// otrbnc's environment only.
	cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("OTRBNC_BENCH_ENV"))...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, cmd
		}
		if time.Now().After(deadline) {
			b.Fatal("otrbnc did not start listening")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rssKiB reads VmRSS and VmHWM of a process.
func rssKiB(pid int) (rss, hwm int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v int
		if n, _ := fmt.Sscanf(sc.Text(), "VmRSS: %d kB", &v); n == 1 {
			rss = v
		}
		if n, _ := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &v); n == 1 {
			hwm = v
		}
	}
	return rss, hwm
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// runRounds sends one message to every peer per round from c (as nick
// "from") and waits for every acknowledgement before the next round.
func runRounds(b *testing.B, c *testConn, peers []*benchPeer, rounds, first int, epoch time.Time) {
	b.Helper()
	for r := first; r < first+rounds; r++ {
		var sb strings.Builder
		for _, p := range peers {
			fmt.Fprintf(&sb, "PRIVMSG %s :r=%d t=%d\r\n", p.nick, r, time.Since(epoch).Nanoseconds())
		}
		c.nc.SetWriteDeadline(time.Now().Add(60 * time.Second))
		if _, err := c.nc.Write([]byte(sb.String())); err != nil {
			b.Fatal(err)
		}
		acked := map[string]bool{}
		timer := time.NewTimer(120 * time.Second)
		for len(acked) < len(peers) {
			select {
			case m, ok := <-c.in:
				if !ok {
					b.Fatal("connection closed")
				}
				if m.Command != "PRIVMSG" || !strings.HasPrefix(m.Trailing(), "ack r=") {
					continue
				}
				got, _ := strconv.Atoi(strings.TrimPrefix(m.Trailing(), "ack r="))
				if got != r || acked[m.Prefix.Name] {
					b.Fatalf("from %s: ack %d in round %d (lost or reordered)", m.Prefix.Name, got, r)
				}
				acked[m.Prefix.Name] = true
			case <-timer.C:
				b.Fatalf("round %d: only %d of %d acknowledged", r, len(acked), len(peers))
			}
		}
		timer.Stop()
	}
}

// BenchmarkLoad1000Conversations pushes b.N rounds of one message to each
// of 1,000 encrypted conversations (and one encrypted acknowledgement
// back) through one otrbnc process, over ngIRCd on loopback. Peers are
// in-process otrcore instances, each on its own IRC connection. The same
// rounds run first without otrbnc and without OTR, as the baseline for
// the added latency.
func BenchmarkLoad1000Conversations(b *testing.B) {
	ircd := startNgircd(b, true)
	epoch := time.Now()
	key := testKey(b, 1)
	peers := make([]*benchPeer, loadPeers)
	var wg sync.WaitGroup
	var registered atomic.Int64
	for i := range peers {
		nc, err := net.Dial("tcp", ircd.Addr)
		if err != nil {
			b.Fatal(err)
		}
		p := &benchPeer{nick: fmt.Sprintf("q%04d", i), nc: nc, conv: map[string]*otrcore.Conversation{}, next: map[string]int{},
			epoch: epoch, registered: &registered, acct: &otrcore.Account{Key: key, InstanceTag: 0x2000 + uint32(i)}}
		peers[i] = p
		fmt.Fprintf(nc, "NICK %s\r\nUSER %s 0 * :%s\r\n", p.nick, p.nick, p.nick)
		wg.Add(1)
		go p.run(wg.Done)
	}
	b.Cleanup(func() {
		for _, p := range peers {
			p.nc.Close()
		}
		wg.Wait()
	})
	for deadline := time.Now().Add(time.Minute); registered.Load() < loadPeers; {
		if time.Now().After(deadline) {
			b.Fatalf("only %d peers registered", registered.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Baseline: plaintext straight through ngIRCd.
	base := registerIRC(b, ircd.Addr, "base")
	runRounds(b, base, peers, 3, 0, epoch)
	var baseLat []time.Duration
	for _, p := range peers {
		baseLat = append(baseLat, p.latencies...)
		p.latencies = nil
	}

	addr, cmd := startOtrbncProcess(b, ircd.Addr)
	c := registerClient(b, addr, "alice")
	c.expect("connected", serviceSays("connected to bench"))
	var sb strings.Builder
	for _, p := range peers {
		sb.WriteString("PRIVMSG *otr :start " + p.nick + "\r\n")
	}
	akeStart := time.Now()
	c.nc.Write([]byte(sb.String()))
	secure := 0
	timer := time.NewTimer(5 * time.Minute)
	for secure < len(peers) {
		select {
		case m := <-c.in:
			if serviceSays("private conversation with q")(m) {
				secure++
			}
		case <-timer.C:
			b.Fatalf("only %d sessions up", secure)
		}
	}
	akeTime := time.Since(akeStart)
	rssUp, _ := rssKiB(cmd.Process.Pid)

	b.ResetTimer()
	start := time.Now()
	runRounds(b, c, peers, b.N, 0, epoch)
	elapsed := time.Since(start)
	b.StopTimer()

	rssEnd, hwm := rssKiB(cmd.Process.Pid)
	var lat []time.Duration
	for _, p := range peers {
		if n := p.errs.Load(); n > 0 {
			b.Fatalf("peer %s saw %d lost, reordered or unreadable messages", p.nick, n)
		}
		lat = append(lat, p.latencies...)
	}
	if len(lat) != b.N*len(peers) {
		b.Fatalf("peers decrypted %d messages, want %d", len(lat), b.N*len(peers))
	}
	msgs := float64(2 * b.N * len(peers)) // each round: one message and one ack per peer
	b.ReportMetric(msgs/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64((percentile(lat, 0.50)-percentile(baseLat, 0.50)).Microseconds())/1000, "added-p50-ms")
	b.ReportMetric(float64((percentile(lat, 0.99)-percentile(baseLat, 0.99)).Microseconds())/1000, "added-p99-ms")
	b.ReportMetric(float64(rssEnd)/1024, "rss-MiB")
	b.Logf("%d sessions up in %v (RSS %.1f MiB); %d rounds in %v; baseline p50 %v p99 %v; through otrbnc p50 %v p99 %v; RSS end %.1f MiB, peak %.1f MiB",
		len(peers), akeTime.Round(time.Millisecond), float64(rssUp)/1024, b.N, elapsed.Round(time.Millisecond),
		percentile(baseLat, 0.5), percentile(baseLat, 0.99), percentile(lat, 0.5), percentile(lat, 0.99),
		float64(rssEnd)/1024, float64(hwm)/1024)
}
