//go:build linux

package proxy_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/proxy/ircdtest"
)

// plainBurst is how many messages the open-loop mode puts in flight at once.
const plainBurst = 500

// plainText is the body of benchmark message seq of run run (about 100
// bytes on the wire, like a line of chat).
func plainText(run string, seq int) string {
	return fmt.Sprintf("m %s %07d lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod", run, seq)
}

// plainRoute is one direction of plain traffic through one bouncer.
type plainRoute struct {
	send, recv *ircConn
	target     string // what the sender addresses: a nick or the channel
	from       string // the sender's nick as the receiver sees it
}

// BenchmarkPlainMessageCPU measures the CPU time a bouncer process spends
// per plain (unencrypted) message, otrbnc next to ZNC 1.8.2, with the same
// client code and the same ngIRCd, in one run (issue 14, target 2: otrbnc's
// CPU per plain message at most ZNC's).
//
// Setup: one ngIRCd with relaxed flood control (ircdtest, relaxed: user
// mode F, MaxPenaltyTime 0); otrbnc built from cmd/otrbnc, policy manual,
// pacing off (rate_burst = 1000000, rate_interval = "1us"); ZNC with the
// configuration of zncConfigText (no modules, FloodRate = -1: no flood
// protection). Each bouncer has its own client (raw IRC on loopback, TCP
// nodelay), its own peer nick on ngIRCd and its own channel, so the idle
// bouncer sees none of the other's traffic.
//
// Sub-benchmarks are loop/target/direction; one operation is one message
// through each bouncer. The bouncers take turns in chunks (100 messages
// closed loop, 500 open loop; who goes first alternates), so that both see
// the same load on a shared machine and their ratio is meaningful:
//   - closed: send one message, wait until the receiving side has it;
//   - open: a burst of 500 messages at once, waited for as a whole;
//   - private: to a nick (through otrbnc's OTR engine, which leaves it in
//     clear: no session, policy manual); channel: to a channel;
//   - out: client → bouncer → ngIRCd → peer; in: peer → ngIRCd → bouncer
//     → client.
//
// Metrics, per bouncer (otrbnc-…, znc-…): cpu-µs/msg is the process's
// CPU time (user + system, all threads, from the kernel's per-process CPU
// clock with ns resolution; the same quantity as utime+stime in
// /proc/PID/stat) during its chunks, per message; rw-calls/msg its read-
// and write-family system calls (/proc/PID/io, which counts read(2) and
// write(2) but not recvmsg(2), what otrbnc reads plain TCP sockets with
// on Linux: there the figure is its writes only; OTRBNC_BENCH_PERF's
// perf stat counts every system call); ctxsw/msg the context
// switches of its threads (/proc/PID/task/*/status: a thread going to
// sleep for want of work, or preempted); wall-µs/msg the elapsed time per
// message. cpu-ratio is otrbnc's CPU over ZNC's (target ≤ 1). Lost or
// reordered messages fail the benchmark.
//
// Run (about 1 minute; needs ngircd and znc):
//
//	go test ./proxy -run '^$' -bench PlainMessageCPU -benchtime 2000x -count 5
//
// With OTRBNC_BENCH_PERF=DIR both bouncers are also recorded with perf
// (see profiler) and a summary of where their CPU went is logged; the CPU
// figures of such a run include perf's overhead.
func BenchmarkPlainMessageCPU(b *testing.B) {
	ircd := ircdtest.Start(b, true)
	bin := buildOtrbnc(b)
	bouncers := []*bouncer{
		startOtrbnc(b, bin, otrbncConfig{upstream: ircd.Addr, nick: "onick", rateBurst: pacingOffBurst, rateInterval: pacingOffInterval}),
		startZNC(b, ircd.Addr, "znick"),
	}
	routes := map[string]plainRoute{} // by "target/dir/bouncer"
	for _, bnc := range bouncers {
		peerNick, channel := bnc.nick+"peer", "#"+bnc.nick
		client := attachClient(b, bnc)
		peer := registerIRCUser(b, ircd.Addr, peerNick)
		waitRoute(b, client, peerNick, peer, bnc.nick)
		waitRoute(b, peer, bnc.nick, client, peerNick)
		peer.send("JOIN " + channel)
		peer.expect("own JOIN", benchWait, func(m *irc.Message) bool { return m.Command == "JOIN" && m.Prefix.Name == peerNick })
		client.send("JOIN " + channel)
		client.expect("own JOIN through the bouncer", benchWait, func(m *irc.Message) bool { return m.Command == "JOIN" && m.Prefix.Name == bnc.nick })
		peer.expect("bouncer's JOIN", benchWait, func(m *irc.Message) bool { return m.Command == "JOIN" && m.Prefix.Name == bnc.nick })
		waitRoute(b, client, channel, peer, bnc.nick)
		waitRoute(b, peer, channel, client, peerNick)
		client.drain()
		peer.drain()
		routes["private/out/"+bnc.name] = plainRoute{send: client, recv: peer, target: peerNick, from: bnc.nick}
		routes["private/in/"+bnc.name] = plainRoute{send: peer, recv: client, target: bnc.nick, from: peerNick}
		routes["channel/out/"+bnc.name] = plainRoute{send: client, recv: peer, target: channel, from: bnc.nick}
		routes["channel/in/"+bnc.name] = plainRoute{send: peer, recv: client, target: channel, from: peerNick}
	}
	b.Logf("load average before: %s", loadAvg())

	var summary strings.Builder
	runs := 0
	for _, loop := range []string{"closed", "open"} {
		for _, to := range []string{"private", "channel"} {
			for _, dir := range []string{"out", "in"} {
				name := loop + "/" + to + "/" + dir
				b.Run(name, func(b *testing.B) {
					runs++
					run := strconv.Itoa(runs)
					chunk, burst := 100, 1
					if loop == "open" {
						chunk, burst = plainBurst, plainBurst
					}
					var rs [2]plainRoute
					var start [2]procCounters
					var tick0 [2]time.Duration
					var profs [2]*profiler
					for i, bnc := range bouncers {
						rs[i] = routes[to+"/"+dir+"/"+bnc.name]
						rs[i].exchange(b, run+"w", 0, 200, burst) // warm-up
						start[i] = readCounters(b, bnc.pid)
						tick0[i], _ = procStatCPU(bnc.pid)
						if b.N > 1 {
							profs[i] = startProfile(b, bnc.pid, "plain_"+name+"_"+bnc.name)
						}
					}
					var tot [2]procCounters
					var wall [2]time.Duration
					b.ResetTimer()
					for first, k := 0, 0; first < b.N; first, k = first+chunk, k+1 {
						n := min(chunk, b.N-first)
						for j := range bouncers {
							i := (j + k) % len(bouncers)
							c0 := readCounters(b, bouncers[i].pid)
							t0 := time.Now()
							rs[i].exchange(b, run, first, n, burst)
							wall[i] += time.Since(t0)
							tot[i] = tot[i].add(readCounters(b, bouncers[i].pid).sub(c0))
						}
					}
					b.StopTimer()
					if b.N > 1 {
						fmt.Fprintf(&summary, "%-22s", name)
					}
					for i, bnc := range bouncers {
						whole := readCounters(b, bnc.pid).sub(start[i])
						tick1, _ := procStatCPU(bnc.pid)
						if t := tick1 - tick0[i]; b.N >= 1000 && (t-whole.cpu > whole.cpu/5+20*time.Millisecond || whole.cpu-t > whole.cpu/5+20*time.Millisecond) {
							b.Logf("note: %s: CPU clock %v but /proc/PID/stat utime+stime %v", bnc.name, whole.cpu, t)
						}
						if s := profs[i].stop(); s != nil {
							b.Logf("%s, %s:\n%s", name, bnc.name, s.report(b.N))
						}
						per := func(v float64) float64 { return v / float64(b.N) }
						b.ReportMetric(per(µs(tot[i].cpu)), bnc.name+"-cpu-µs/msg")
						b.ReportMetric(per(float64(tot[i].reads+tot[i].writes)), bnc.name+"-rw-calls/msg")
						b.ReportMetric(per(float64(tot[i].ctxsw)), bnc.name+"-ctxsw/msg")
						b.ReportMetric(per(µs(wall[i])), bnc.name+"-wall-µs/msg")
						if b.N > 1 {
							fmt.Fprintf(&summary, " %s %6.1f µs", bnc.name, per(µs(tot[i].cpu)))
						}
					}
					ratio := float64(tot[0].cpu) / float64(tot[1].cpu)
					b.ReportMetric(ratio, "cpu-ratio")
					if b.N > 1 {
						fmt.Fprintf(&summary, "  ratio %.2f (N=%d)\n", ratio, b.N)
					}
				})
			}
		}
	}
	b.Logf("bouncer CPU per plain message; load average after: %s\n%s", loadAvg(), summary.String())
}

// exchange sends messages first..first+n-1 of run along r, burst at a
// time, and waits until the receiver has each burst, in order, without
// loss.
func (r plainRoute) exchange(b *testing.B, run string, first, n, burst int) {
	b.Helper()
	prefix := "m " + run + " "
	for from := first; from < first+n; from += burst {
		to := min(from+burst, first+n)
		lines := make([]string, 0, to-from)
		for i := from; i < to; i++ {
			lines = append(lines, "PRIVMSG "+r.target+" :"+plainText(run, i))
		}
		r.send.send(lines...)
		for want := from; want < to; want++ {
			im := r.recv.expect(fmt.Sprintf("message %d of run %s", want, run), benchWait, func(m *irc.Message) bool {
				return m.Command == "PRIVMSG" && m.Prefix.Name == r.from && strings.HasPrefix(m.Trailing(), prefix)
			})
			if im.m.Trailing() != plainText(run, want) {
				b.Fatalf("got %q, want message %d of run %s (lost, reordered or altered)", im.m.Trailing(), want, run)
			}
		}
	}
}
