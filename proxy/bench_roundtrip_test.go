//go:build linux

package proxy_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"gopkg.in/irc.v4"
)

// rtText is the text of round trip seq of run run (about 100 bytes).
func rtText(run string, seq int) string {
	return fmt.Sprintf("r %s %06d the quick brown fox jumps over the lazy dog, then back again to be sure", run, seq)
}

// BenchmarkRoundTripFastPeer measures encrypted round trips with a fast
// OTR peer, through otrbnc and, for comparison, without it (issue 14, item
// 5): otrbnc's own added latency is the difference.
//
// Setup: ngIRCd with relaxed flood control and TCP_NODELAY on its sockets
// (an LD_PRELOAD shim, see nodelayShim; every Go socket has it by
// default); otrbnc as its own process, policy manual, pacing off. Two fast
// peers sit on ngIRCd, each answering every message with an encrypted
// acknowledgement the moment it is decrypted: "otrcore" (this module's
// engine, in the benchmark process) and "libotr" (libotr 4.1.1 in its C
// peer process, driven over pipes). Two paths to each peer:
//
//   - via otrbnc: raw client → otrbnc (encrypts) → ngIRCd → peer (decrypts,
//     encrypts the ack) → ngIRCd → otrbnc (decrypts) → client;
//   - direct: an otrcore user on its own ngIRCd connection, in the
//     benchmark process, encrypts and decrypts itself; the peer is the same.
//
// One operation is one round trip on each path, back to back (which path
// goes first alternates), so both paths see the same machine load. A round
// trip is timed from the write of the message to the moment the user has
// the decrypted acknowledgement. Messages alternate direction, so every
// message carries a new D-H key (the expensive case, the same on both
// paths). Metrics: otrbnc-p50-µs, otrbnc-p99-µs, direct-p50-µs,
// direct-p99-µs; added-p50-µs and added-p99-µs (otrbnc minus direct);
// added-paired-p50-µs, the median of the per-operation differences (the
// least noisy estimate); otrbnc-cpu-µs/rt, otrbnc's CPU time per round
// trip (one encryption, one decryption, four IRC lines).
//
// Run (about 30 s; needs ngircd, libotr5-dev and a C compiler):
//
//	go test ./proxy -run '^$' -bench RoundTripFastPeer -benchtime 1000x -count 5
func BenchmarkRoundTripFastPeer(b *testing.B) {
	addr := startNgircdNoDelay(b, true)
	bin := buildOtrbnc(b)
	o := startOtrbnc(b, bin, otrbncConfig{upstream: addr, nick: "alice", rateBurst: pacingOffBurst, rateInterval: pacingOffInterval})
	client := attachClient(b, o)
	client.expect("upstream connected", benchWait, fromService("connected to bench"))

	peers := []*echoPeer{
		startEchoPeer(b, addr, "fastgo", newGoOTR(b, nil, 0x3000)),
		startEchoPeer(b, addr, "fastc", newCOTR(b, "fastc")),
	}
	peerName := map[string]string{"fastgo": "otrcore", "fastc": "libotr"}
	for _, p := range peers {
		go p.run()
	}
	direct := registerIRCUser(b, addr, "direct")
	deng := newGoOTR(b, nil, 0x4000)
	for _, p := range peers {
		client.send("PRIVMSG *otr :start " + p.nick)
		client.expect("session with "+p.nick, benchWait, fromService("private conversation with "+p.nick+" started"))
		directSend(direct, p.nick, deng.query(p.nick))
		for !deng.encrypted(p.nick) {
			im := direct.expect("AKE with "+p.nick, benchWait, isPrivmsgFrom(p.nick, ""))
			_, _, out := deng.recv(p.nick, im.m.Trailing())
			directSend(direct, p.nick, out)
		}
	}
	client.drain()
	b.Logf("load average before: %s", loadAvg())

	runs := 0
	for _, p := range peers {
		viaDirect := func(b *testing.B, run string, seq int) time.Duration {
			text := rtText(run, seq)
			start := time.Now()
			directSend(direct, p.nick, deng.send(p.nick, text))
			for {
				im := direct.expect("ack", benchWait, isPrivmsgFrom(p.nick, ""))
				got, delivered, out := deng.recv(p.nick, im.m.Trailing())
				directSend(direct, p.nick, out)
				if !delivered {
					continue
				}
				if got != "ack "+text {
					b.Fatalf("direct: got %q, want the ack of %q", got, text)
				}
				return time.Since(start)
			}
		}
		viaOtrbnc := func(b *testing.B, run string, seq int) time.Duration {
			text := rtText(run, seq)
			start := time.Now()
			client.send("PRIVMSG " + p.nick + " :" + text)
			im := client.expect("ack through otrbnc", benchWait, func(m *irc.Message) bool {
				return m.Command == "PRIVMSG" && m.Prefix.Name == p.nick
			})
			if im.m.Trailing() != "ack "+text {
				b.Fatalf("through otrbnc: got %q, want the ack of %q", im.m.Trailing(), text)
			}
			return time.Since(start)
		}
		b.Run("peer="+peerName[p.nick], func(b *testing.B) {
			runs++
			run := strconv.Itoa(runs)
			for i := range 20 { // warm-up
				viaDirect(b, run+"w", i)
				viaOtrbnc(b, run+"w", i)
			}
			viaO := make([]time.Duration, 0, b.N)
			viaD := make([]time.Duration, 0, b.N)
			diff := make([]time.Duration, 0, b.N)
			var cpu time.Duration
			b.ResetTimer()
			for i := range b.N {
				var d, o2 time.Duration
				if i%2 == 0 {
					d = viaDirect(b, run, i)
				}
				c0 := o.cpu(b)
				o2 = viaOtrbnc(b, run, i)
				cpu += o.cpu(b) - c0
				if i%2 == 1 {
					d = viaDirect(b, run, i)
				}
				viaO, viaD, diff = append(viaO, o2), append(viaD, d), append(diff, o2-d)
			}
			b.StopTimer()
			b.ReportMetric(µs(percentile(viaO, 0.50)), "otrbnc-p50-µs")
			b.ReportMetric(µs(percentile(viaO, 0.99)), "otrbnc-p99-µs")
			b.ReportMetric(µs(percentile(viaD, 0.50)), "direct-p50-µs")
			b.ReportMetric(µs(percentile(viaD, 0.99)), "direct-p99-µs")
			b.ReportMetric(µs(percentile(viaO, 0.50)-percentile(viaD, 0.50)), "added-p50-µs")
			b.ReportMetric(µs(percentile(viaO, 0.99)-percentile(viaD, 0.99)), "added-p99-µs")
			b.ReportMetric(µs(percentile(diff, 0.50)), "added-paired-p50-µs")
			b.ReportMetric(µs(cpu)/float64(b.N), "otrbnc-cpu-µs/rt")
		})
	}
	b.Logf("load average after: %s", loadAvg())
}

// directSend sends OTR lines from the direct user to nick.
func directSend(c *ircConn, nick string, lines []string) {
	if len(lines) == 0 {
		return
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = "PRIVMSG " + nick + " :" + l
	}
	c.send(out...)
}
