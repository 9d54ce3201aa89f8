//go:build linux

package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// profiler records one benchmark phase of a process with Linux perf: a
// sampled call-graph profile (`perf record -e cpu-clock -g`) and exact
// counts of system calls and context switches (`perf stat`). It runs only
// when OTRBNC_BENCH_PERF names a directory; the profile stays there for
// `perf report -i`. Sampling at 4,999 Hz costs the process a few percent,
// so CPU figures taken with a profiler attached are not the benchmark's
// figures.
type profiler struct {
	tb         testing.TB
	name       string
	data, stat string
	rec, cnt   *exec.Cmd
	errb       bytes.Buffer
}

// startProfile starts recording pid, or returns nil when profiling is off.
func startProfile(tb testing.TB, pid int, name string) *profiler {
	tb.Helper()
	dir := os.Getenv(envPerf)
	if dir == "" {
		return nil
	}
	if _, err := exec.LookPath("perf"); err != nil {
		tb.Fatalf("%s is set but perf is not installed (apt-get install linux-perf)", envPerf)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	base := filepath.Join(dir, strings.NewReplacer("/", "_", "=", "-").Replace(name))
	p := &profiler{tb: tb, name: name, data: base + ".perf.data", stat: base + ".stat"}
	p.rec = exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-g", "-p", strconv.Itoa(pid), "-o", p.data)
	p.cnt = exec.Command("perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,context-switches,cpu-migrations", "-p", strconv.Itoa(pid), "-o", p.stat)
	p.rec.Stderr, p.cnt.Stderr = &p.errb, &p.errb
	if err := p.rec.Start(); err != nil {
		tb.Fatalf("perf record: %v", err)
	}
	if err := p.cnt.Start(); err != nil {
		tb.Fatalf("perf stat: %v", err)
	}
	time.Sleep(time.Second) // let perf attach
	return p
}

// profileSummary is what a recorded phase shows.
type profileSummary struct {
	samples     int
	kernel      float64 // share of samples in the kernel
	categories  []share // see classifyStack
	inclusive   []share // share of samples with the function on the stack
	topSelf     []share // leaf functions
	syscalls    int64   // every system call (raw_syscalls:sys_enter)
	ctxSwitches int64
}

type share struct {
	name string
	pct  float64
}

// stop ends the recording and summarises it (nil profiler: nil summary).
func (p *profiler) stop() *profileSummary {
	if p == nil {
		return nil
	}
	p.tb.Helper()
	for _, c := range []*exec.Cmd{p.rec, p.cnt} {
		c.Process.Signal(syscall.SIGINT)
		c.Wait()
	}
	s := &profileSummary{}
	if data, err := os.ReadFile(p.stat); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Split(line, ",")
			if len(f) < 3 {
				continue
			}
			n, _ := strconv.ParseInt(f[0], 10, 64)
			switch f[2] {
			case "raw_syscalls:sys_enter":
				s.syscalls = n
			case "context-switches":
				s.ctxSwitches = n
			}
		}
	}
	out, err := exec.Command("perf", "script", "-i", p.data, "-F", "comm,ip,sym").Output()
	if err != nil {
		p.tb.Logf("perf script %s: %v %s", p.data, err, p.errb.String())
		return s
	}
	s.analyse(out)
	p.tb.Logf("profile of %s: %s", p.name, p.data)
	return s
}

// frameClasses assigns a function (by name prefix or substring) to a cost
// category. Order matters: the first matching class wins for a frame.
var frameClasses = []struct {
	class string
	match []string
	// fallback classes (generic helpers, otrbnc's own code) count only
	// when no frame of a specific class is on the stack: a memmove under
	// formatMessage is formatting.
	fallback bool
}{
	{"GC (marking, sweeping, scavenging, write barriers)", []string{"runtime.gc", "runtime.markroot", "runtime.scanobject", "runtime.scanblock",
		"runtime.greyobject", "runtime.bgsweep", "runtime.sweepone", "runtime.(*mspan).sweep", "runtime.(*sweepLocked)", "runtime.bgscavenge",
		"runtime.(*scavengerState)", "runtime.wbBuf", "runtime.bulkBarrier", "runtime.(*gcWork)", "runtime.findObject", "runtime.scanstack",
		"runtime.scanframeworker", "runtime.(*gcControllerState)", "runtime.(*pageAlloc).scavenge", "runtime.tryDeferToSpanScan", "runtime.scanSpan"}, false},
	{"allocation (mallocgc and heap)", []string{"runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice", "runtime.rawstring",
		"runtime.rawbyteslice", "runtime.makemap", "runtime.(*mcache)", "runtime.(*mcentral)", "runtime.(*mheap)", "runtime.memclrNoHeapPointers",
		"runtime.nextFreeFast", "runtime.heapSetType", "runtime.(*mspan)", "runtime.newarray", "runtime.makechan", "runtime.deductAssistCredit"}, false},
	{"socket read/write system calls (incl. kernel TCP)", []string{"syscall.read", "syscall.write", "internal/poll.(*FD).Read", "internal/poll.(*FD).Write",
		"internal/poll.ignoringEINTRIO"}, false},
	{"timers, deadlines, clock", []string{"internal/poll.(*FD).SetWriteDeadline", "internal/poll.(*FD).SetReadDeadline", "internal/poll.setDeadlineImpl",
		"runtime.poll_runtime_pollSetDeadline", "runtime.modtimer", "runtime.(*timer)", "runtime.(*timers)", "time.Now", "time.now", "runtime.nanotime",
		"time.NewTimer", "time.(*Timer)", "runtime.resettimer", "runtime.addtimer", "runtime.deltimer", "runtime.newTimer", "runtime.stopTimer",
		"runtime.resetTimer", "runtime.walltime", "__vdso_clock_gettime", "time.Since", "time.Until"}, false},
	{"rate limiter (x/time/rate)", []string{"golang.org/x/time/rate"}, false},
	{"scheduler: goroutine hand-offs, thread park/wake, sysmon, netpoll", []string{"runtime.schedule", "runtime.findRunnable", "runtime.park_m",
		"runtime.gopark", "runtime.goready", "runtime.ready", "runtime.notewakeup", "runtime.notesleep", "runtime.notetsleep", "runtime.futex",
		"runtime.startm", "runtime.stopm", "runtime.wakep", "runtime.sysmon", "runtime.netpoll", "runtime.mcall", "runtime.retake", "runtime.usleep",
		"runtime.osyield", "runtime.entersyscall", "runtime.exitsyscall", "runtime.reentersyscall", "runtime.casgstatus", "runtime.runq",
		"runtime.stealWork", "runtime.checkTimers", "runtime.goschedImpl", "runtime.handoffp", "runtime.acquirep", "runtime.releasep",
		"runtime.resetspinning", "runtime.mPark", "runtime.setBlockOnExitSyscall", "runtime.goexit0", "runtime.gdestroy", "runtime.newproc",
		"runtime.execute", "runtime.gogo", "runtime.mstart", "runtime.injectglist", "runtime.netpollready", "runtime.netpollblock",
		"runtime.netpollunblock", "runtime.gcstopm", "runtime.templateThread", "runtime.lock2", "runtime.unlock2", "runtime.procyield",
		"runtime.(*randomEnum)", "runtime.pidle", "runtime.mput", "runtime.mget", "runtime.globrunq", "runtime.nobarrierWakeTime",
		"runtime.(*pollDesc)", "runtime.pollWork", "runtime.poll_runtime_pollWait", "internal/poll.runtime_pollWait", "internal/poll.(*pollDesc)",
		"runtime.morestack", "runtime.newstack", "runtime.(*lfstack)", "runtime.preemptone", "runtime.signalM", "runtime.tgkill"}, false},
	{"channels and select", []string{"runtime.chansend", "runtime.chanrecv", "runtime.selectgo", "runtime.send", "runtime.recv", "runtime.selparkcommit",
		"runtime.sellock", "runtime.selunlock", "runtime.closechan", "runtime.fastrand", "runtime.cheaprand"}, false},
	{"IRC line reading and parsing", []string{"irc%2ev4.ParseMessage", "irc.v4.ParseMessage", "irc%2ev4.ParsePrefix", "irc.v4.ParsePrefix",
		"irc%2ev4.ParseTags", "irc.v4.ParseTags", "proxy.parseLine", "proxy.(*lineReader)", "bufio.(*Reader)", "proxy.validCommand"}, false},
	{"IRC formatting", []string{"irc%2ev4.(*Message)", "irc.v4.(*Message)", "irc%2ev4.(*Prefix)", "irc.v4.(*Prefix)", "irc%2ev4.Tags", "irc.v4.Tags",
		"proxy.formatMessage", "proxy.forClient", "proxy.stripBytes", "strings.(*Builder)", "bytes.(*Buffer)"}, false},
	{"OTR engine (otrcore)", []string{"otrbnc/otrcore."}, false},
	{"logging (log/slog)", []string{"log/slog"}, false},
	{"strings, maps, copies", []string{"strings.", "runtime.memmove", "runtime.concatstring", "runtime.slicebytetostring", "runtime.memequal",
		"runtime.cmpstring", "indexbyte", "runtime.mapaccess", "runtime.mapassign", "runtime.mapdelete", "internal/runtime/maps", "runtime.mapiter",
		"unicode/utf8", "internal/bytealg", "runtime.makeBucketArray", "runtime.(*hmap)", "runtime.efaceeq", "runtime.ifaceeq", "runtime.typehash",
		"runtime.strhash", "runtime.memhash", "aeshash"}, true},
	{"proxy logic (otrbnc/proxy, other)", []string{"otrbnc/proxy."}, true},
}

// classifyFrame returns the cost category of a function (the first class
// with a pattern contained in its name) and whether it is a fallback
// class, or "".
func classifyFrame(fn string) (class string, fallback bool) {
	for _, c := range frameClasses {
		for _, m := range c.match {
			if strings.Contains(fn, m) {
				return c.class, c.fallback
			}
		}
	}
	return "", false
}

// classifyStack returns the category of a sample: its leaf-most frame of
// a specific class, else its leaf-most frame of a fallback class.
func classifyStack(frames [][2]string) string {
	fb := ""
	for _, f := range frames {
		class, fallback := classifyFrame(f[1])
		switch {
		case class == "":
		case !fallback:
			return class
		case fb == "":
			fb = class
		}
	}
	return fb
}

// inclusiveFuncs are functions whose inclusive share (samples with them
// anywhere on the stack) the summary reports; the labels name otrbnc's
// goroutines and the usual suspects. A renamed function just shows 0 %.
var inclusiveFuncs = []struct{ label, match string }{
	{"socket reader goroutines (ircConn.readLoop)", "proxy.(*ircConn).readLoop"},
	{"socket writer goroutines (ircConn.writeLoop)", "proxy.(*ircConn).writeLoop"},
	{"network owner goroutine (network.run)", "proxy.(*network).run"},
	{"client goroutine (Server.handleClient)", "proxy.(*Server).handleClient"},
	{"upstream forwarder (network.connectLoop)", "proxy.(*network).connectLoop"},
	{"runtime.schedule (idle → next goroutine)", "runtime.schedule"},
	{"runtime.sysmon", "runtime.sysmon"},
	{"GC workers (gcBgMarkWorker)", "runtime.gcBgMarkWorker"},
	{"runtime.mallocgc", "runtime.mallocgc"},
	{"syscall.read", "syscall.read"},
	{"syscall.write", "syscall.write"},
	{"runtime.netpoll (epoll)", "runtime.netpoll"},
	{"futex (thread park/wake)", "runtime.futex"},
	{"proxy.parseLine", "proxy.parseLine"},
	{"proxy.formatMessage", "proxy.formatMessage"},
	{"SetReadDeadline/SetWriteDeadline", "SetWriteDeadline"},
	{"rate limiter", "golang.org/x/time/rate"},
	{"otrcore", "otrbnc/otrcore."},
	{"log/slog", "log/slog"},
}

// analyse reads `perf script -F comm,ip,sym` output: one header line per
// sample, then its frames from the leaf up, one per indented line.
func (s *profileSummary) analyse(out []byte) {
	cats := map[string]int{}
	incl := map[string]int{}
	self := map[string]int{}
	kernel := 0
	var frames [][2]string // ip, function
	flush := func() {
		if len(frames) == 0 {
			return
		}
		s.samples++
		leafKernel := isKernelIP(frames[0][0])
		if leafKernel {
			kernel++
		}
		self[frames[0][1]]++
		class := classifyStack(frames)
		if class == "" {
			if leafKernel && !slices.ContainsFunc(frames, func(f [2]string) bool { return !isKernelIP(f[0]) }) {
				class = "kernel only (interrupts, no user stack)"
			} else {
				class = "other"
			}
		}
		cats[class]++
		for _, in := range inclusiveFuncs {
			for _, f := range frames {
				if strings.Contains(f[1], in.match) {
					incl[in.label]++
					break
				}
			}
		}
		frames = frames[:0]
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			flush()
			continue
		}
		ip, fn, _ := strings.Cut(strings.TrimSpace(line), " ")
		frames = append(frames, [2]string{ip, fn})
	}
	flush()
	if s.samples == 0 {
		return
	}
	pct := func(n int) float64 { return 100 * float64(n) / float64(s.samples) }
	s.kernel = pct(kernel)
	for k, n := range cats {
		s.categories = append(s.categories, share{k, pct(n)})
	}
	for _, in := range inclusiveFuncs {
		s.inclusive = append(s.inclusive, share{in.label, pct(incl[in.label])})
	}
	for k, n := range self {
		s.topSelf = append(s.topSelf, share{k, pct(n)})
	}
	byPct := func(a, b share) int {
		if a.pct != b.pct {
			if a.pct > b.pct {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	}
	slices.SortFunc(s.categories, byPct)
	slices.SortFunc(s.topSelf, byPct)
	if len(s.topSelf) > 15 {
		s.topSelf = s.topSelf[:15]
	}
}

// isKernelIP reports whether a hex instruction pointer is in the kernel.
func isKernelIP(ip string) bool {
	v, err := strconv.ParseUint(ip, 16, 64)
	return err == nil && v >= 0xffff800000000000
}

// report formats the summary, per message where msgs > 0.
func (s *profileSummary) report(msgs int) string {
	if s == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d samples, %.1f %% in the kernel", s.samples, s.kernel)
	if msgs > 0 {
		fmt.Fprintf(&b, "; %.2f system calls and %.2f context switches per message (perf stat)", float64(s.syscalls)/float64(msgs), float64(s.ctxSwitches)/float64(msgs))
	}
	b.WriteString("\n  by category (see classifyStack):")
	for _, c := range s.categories {
		fmt.Fprintf(&b, "\n    %5.1f %%  %s", c.pct, c.name)
	}
	b.WriteString("\n  inclusive (function anywhere on the stack):")
	for _, c := range s.inclusive {
		if c.pct > 0 {
			fmt.Fprintf(&b, "\n    %5.1f %%  %s", c.pct, c.name)
		}
	}
	b.WriteString("\n  leaf functions:")
	for _, c := range s.topSelf {
		fmt.Fprintf(&b, "\n    %5.1f %%  %s", c.pct, c.name)
	}
	return b.String()
}
