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
// Sub-benchmarks are loop/target/direction/bouncer; each operation is one
// message:
//   - closed: send one message, wait until the receiving side has it;
//   - open: messages in bursts of 500, each burst waited for as a whole;
//   - private: to a nick (through otrbnc's OTR engine, which leaves it in
//     clear: no session, policy manual); channel: to a channel;
//   - out: client → bouncer → ngIRCd → peer; in: peer → ngIRCd → bouncer
//     → client.
//
// Metrics: cpu-µs/msg is the bouncer's CPU time (utime+stime of all its
// threads, read with ns resolution from the kernel's process CPU clock)
// between the first and the last message, divided by the messages;
// read-calls/msg and write-calls/msg its read- and write-family system
// calls (/proc/PID/io), ctxsw/msg the context switches of its threads
// (/proc/PID/task/*/status: a thread going to sleep for want of work, or
// preempted); ns/op is the wall time per message. Lost or reordered
// messages fail the benchmark.
//
// Run (about 1 minute; needs ngircd and znc):
//
//	go test ./proxy -run '^$' -bench PlainMessageCPU -benchtime 2000x -count 5
//
// With OTRBNC_BENCH_PERF=DIR every measured phase is also recorded with
// perf (see profiler) and a summary of where the bouncer's CPU went is
// logged; the CPU figures of such a run include perf's overhead.
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

	results := map[string]float64{}
	runs := 0
	for _, loop := range []string{"closed", "open"} {
		for _, to := range []string{"private", "channel"} {
			for _, dir := range []string{"out", "in"} {
				for _, bnc := range bouncers {
					name := loop + "/" + to + "/" + dir + "/" + bnc.name
					r := routes[to+"/"+dir+"/"+bnc.name]
					b.Run(name, func(b *testing.B) {
						runs++
						run := strconv.Itoa(runs)
						burst := 1
						if loop == "open" {
							burst = plainBurst
						}
						// Warm-up: conversation state, buffers, GC pacing.
						r.exchange(b, run+"w", 200, burst)
						c0 := readCounters(b, bnc.pid)
						tick0, _ := procStatCPU(bnc.pid)
						var prof *profiler
						if b.N > 1 {
							prof = startProfile(b, bnc.pid, "plain_"+name)
						}
						b.ResetTimer()
						r.exchange(b, run, b.N, burst)
						b.StopTimer()
						d := readCounters(b, bnc.pid).sub(c0)
						tick1, _ := procStatCPU(bnc.pid)
						if s := prof.stop(); s != nil {
							b.Logf("%s\n%s", name, s.report(b.N))
						}
						if ticks := tick1 - tick0; b.N >= 1000 && (ticks-d.cpu > d.cpu/5+20*time.Millisecond || d.cpu-ticks > d.cpu/5+20*time.Millisecond) {
							b.Logf("note: CPU clock %v but /proc/PID/stat utime+stime %v", d.cpu, ticks)
						}
						per := µs(d.cpu) / float64(b.N)
						b.ReportMetric(per, "cpu-µs/msg")
						b.ReportMetric(float64(d.reads)/float64(b.N), "read-calls/msg")
						b.ReportMetric(float64(d.writes)/float64(b.N), "write-calls/msg")
						b.ReportMetric(float64(d.ctxsw)/float64(b.N), "ctxsw/msg")
						results[name] = per
					})
				}
			}
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "bouncer CPU per plain message (µs), load average after: %s\n", loadAvg())
	fmt.Fprintf(&sb, "%-24s %10s %10s %8s\n", "workload", "otrbnc", "znc", "ratio")
	for _, loop := range []string{"closed", "open"} {
		for _, to := range []string{"private", "channel"} {
			for _, dir := range []string{"out", "in"} {
				k := loop + "/" + to + "/" + dir
				o, z := results[k+"/otrbnc"], results[k+"/znc"]
				if o > 0 && z > 0 {
					fmt.Fprintf(&sb, "%-24s %10.1f %10.1f %8.2f\n", k, o, z, o/z)
				}
			}
		}
	}
	b.Log(sb.String())
}

// exchange sends n messages along r, burst at a time, and waits until the
// receiver has each burst, in order, without loss.
func (r plainRoute) exchange(b *testing.B, run string, n, burst int) {
	b.Helper()
	prefix := "m " + run + " "
	for first := 0; first < n; first += burst {
		last := min(first+burst, n)
		lines := make([]string, 0, last-first)
		for i := first; i < last; i++ {
			lines = append(lines, "PRIVMSG "+r.target+" :"+plainText(run, i))
		}
		r.send.send(lines...)
		for want := first; want < last; {
			im := r.recv.expect(fmt.Sprintf("message %d of run %s", want, run), benchWait, func(m *irc.Message) bool {
				return m.Command == "PRIVMSG" && m.Prefix.Name == r.from && strings.HasPrefix(m.Trailing(), prefix)
			})
			seq, _ := strconv.Atoi(strings.Fields(strings.TrimPrefix(im.m.Trailing(), prefix))[0])
			if seq != want || im.m.Trailing() != plainText(run, want) {
				b.Fatalf("got %q, want message %d of run %s (lost, reordered or altered)", im.m.Trailing(), want, run)
			}
			want++
		}
	}
}
