//go:build linux

package proxy_test

import (
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"otrbnc/proxy/ircdtest"
)

// soakDuration is how long BenchmarkSoak runs: OTRBNC_SOAK_DURATION, else
// -benchtime when it is a duration other than the default 1s, else 30 s.
func soakDuration(tb testing.TB) time.Duration {
	tb.Helper()
	if os.Getenv("OTRBNC_SOAK_DURATION") != "" {
		return envDuration(tb, "OTRBNC_SOAK_DURATION", 0)
	}
	if f := flag.Lookup("test.benchtime"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d != time.Second {
			return d
		}
	}
	return 30 * time.Second
}

// hostileLines returns n lines of mixed hostile OTR traffic from one nick,
// cycling through: D-H Commits (from a pool of fresh engines), complete
// garbage fragments, first fragments of 65,535-piece messages, OTR query
// messages and OTR error messages.
func hostileLines(commits []string, seq *atomic.Int64, n int) []string {
	out := make([]string, 0, n)
	for range n {
		i := seq.Add(1)
		switch i % 10 {
		case 0, 1, 2:
			out = append(out, commits[int(i/10)%len(commits)])
		case 3, 4, 5:
			out = append(out, garbageFragments(1)...)
		case 6, 7:
			var t [3]byte
			rand.Read(t[:])
			tag := 0x100 + uint32(t[0])<<16 | uint32(t[1])<<8 | uint32(t[2])
			out = append(out, fmt.Sprintf("?OTR|%08x|%08x,%05d,%05d,%s,", tag, 0, 1, 65535, strings.Repeat("B", 400)))
		case 8:
			out = append(out, "?OTRv23? let us talk")
		case 9:
			out = append(out, "?OTR Error: go away")
		}
	}
	return out
}

// BenchmarkSoak runs otrbnc under mixed hostile and legitimate traffic for
// a bounded time and watches its memory (issue 11).
//
// Setup: ngIRCd (relaxed flood control); otrbnc as its own process with
// GODEBUG=gctrace=1, policy manual, pacing off (so that what is measured is
// memory and correctness, not the pacing queue, which
// BenchmarkFloodWhileChatting covers); one raw client of otrbnc with two
// encrypted conversations, with "bob" (libotr 4.1.1) and "carol" (otrcore
// in the benchmark process): one ~100-byte message every 500 ms,
// alternating between them, each answered with an encrypted
// acknowledgement. Four hostile workers each connect to ngIRCd under a new
// nick, send 100 lines at 25 lines/s (D-H Commits, garbage fragments,
// 65,535-piece first fragments, OTR queries, OTR errors: see
// hostileLines), quit, and start again under another nick, so about one
// new hostile nick per second and 100 hostile lines/s.
//
// Duration: OTRBNC_SOAK_DURATION, or -benchtime given as a duration (e.g.
// 30m), else 30 s; the scenario runs once whatever b.N. Afterwards up to
// 30 s are given to the legitimate messages still in flight; a message of
// the legitimate conversations that is lost, duplicated or reordered fails
// the benchmark. RSS and the Go heap (live after the last GC) are sampled
// every second. Metrics: rss-warm-MiB (at the end of the warm-up, the first
// fifth of the run, at least 5 s), rss-half-MiB (at half time),
// rss-end-MiB, rss-max-MiB, slope-warm-KiB/min and slope-half-KiB/min (the
// least-squares slope of RSS from the end of the warm-up, and over the
// second half, to the end), heap-warm-MB,
// heap-end-MB, legit-msgs, hostile-lines, hostile-nicks, replies-to-hostile
// (lines otrbnc sent the hostile nicks), otr-notices (lines from *otr the
// client got), otr-summaries (those of them that sum up notices held back
// in a minute).
//
// Run (30 s plus about 20 s of setup; needs ngircd and libotr5-dev):
//
//	go test ./proxy -run '^$' -bench Soak -benchtime 1x
//	go test ./proxy -run '^$' -bench Soak -benchtime 30m -timeout 40m
func BenchmarkSoak(b *testing.B) {
	dur := soakDuration(b)
	warm := max(dur/5, 5*time.Second)
	ircd := ircdtest.Start(b, true)
	bin := buildOtrbnc(b)
	o := startOtrbnc(b, bin, otrbncConfig{upstream: ircd.Addr, nick: "alice", rateBurst: pacingOffBurst, rateInterval: pacingOffInterval,
		env: []string{"GODEBUG=gctrace=1"}})
	client := attachClient(b, o)
	client.expect("upstream connected", benchWait, fromService("connected to bench"))
	chats := map[string]*chat{"bob": newChat("b"), "carol": newChat("c")}
	bob := startEchoPeer(b, ircd.Addr, "bob", newCOTR(b, "bob"))
	carol := startEchoPeer(b, ircd.Addr, "carol", newGoOTR(b, nil, 0x6000))
	for _, p := range []*echoPeer{bob, carol} {
		p.onText = chats[p.nick].peerGot
		go p.run()
		client.send("PRIVMSG *otr :start " + p.nick)
		client.expect("session with "+p.nick, benchWait, fromService("private conversation with "+p.nick+" started"))
	}
	attackKey := benchKey(b)
	commits := dhCommits(b, attackKey, 50, "alice", 0x20000)
	svc := &serviceLog{}
	go readClient(client, chats, svc)
	b.Logf("soak for %v (warm-up %v); load average before: %s", dur, warm, loadAvg())

	b.ResetTimer()
	start := time.Now()
	deadline := start.Add(dur)
	var (
		hostileSeq, hostileSent, replies atomic.Int64
		nickSeq, hostileErrs             atomic.Int64
		wg                               sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				nick := fmt.Sprintf("h%d_%05d", w, nickSeq.Add(1))
				h, err := dialIRCErr(b, ircd.Addr)
				if err == nil {
					h.send("NICK "+nick, "USER "+nick+" 0 * :"+nick)
					err = h.waitWelcome(benchWait)
				}
				if err != nil {
					b.Logf("hostile worker %d stops: %v", w, err)
					hostileErrs.Add(1)
					return
				}
				go func() {
					for im := range h.in {
						if im.m.Command == "PRIVMSG" && im.m.Prefix.Name == "alice" {
							replies.Add(1)
						}
					}
				}()
				for i := 0; i < 20 && time.Now().Before(deadline); i++ {
					var lines []string
					for _, l := range hostileLines(commits, &hostileSeq, 5) {
						lines = append(lines, "PRIVMSG alice :"+l)
					}
					h.send(lines...)
					hostileSent.Add(int64(len(lines)))
					time.Sleep(200 * time.Millisecond)
				}
				h.send("QUIT :next")
				time.Sleep(100 * time.Millisecond)
				h.nc.Close()
			}
		}()
	}

	type sample struct {
		at        time.Duration
		rss, heap int
	}
	var samples []sample
	seqs := map[string]int{}
	nextSample := start
	for i := 0; time.Now().Before(deadline); i++ {
		peer := "bob"
		if i%2 == 1 {
			peer = "carol"
		}
		chats[peer].say(client, peer, seqs[peer])
		seqs[peer]++
		if now := time.Now(); !now.Before(nextSample) {
			rss, _ := o.mem(b)
			_, g := o.log.gcCount()
			samples = append(samples, sample{at: now.Sub(start), rss: rss, heap: g.live})
			nextSample = nextSample.Add(time.Second)
		}
		time.Sleep(500 * time.Millisecond)
	}
	wg.Wait()
	if n := hostileErrs.Load(); n > 0 {
		b.Errorf("%d hostile workers could not connect to ngIRCd", n)
	}
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); {
		if chats["bob"].allAcked(0, seqs["bob"]-1) && chats["carol"].allAcked(0, seqs["carol"]-1) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.StopTimer()
	rssEnd, hwm := o.mem(b)
	_, gEnd := o.log.gcCount()

	legit := 0
	for peer, ch := range chats {
		_, _, missing := ch.latencies(0, seqs[peer]-1, time.Now())
		ch.mu.Lock()
		acked, orderErrs, notices := len(ch.ack), ch.orderErrs, ch.notices
		ch.mu.Unlock()
		legit += seqs[peer]
		if missing > 0 || acked != seqs[peer] || orderErrs > 0 {
			b.Errorf("conversation with %s: %d sent, %d not delivered, %d acknowledged, %d order errors", peer, seqs[peer], missing, acked, orderErrs)
		}
		if peer == "bob" {
			b.ReportMetric(float64(notices), "otr-notices")
		}
	}
	var warmS, halfS sample
	maxRSS := 0
	for _, s := range samples {
		if s.at <= warm {
			warmS = s
		}
		if s.at <= dur/2 {
			halfS = s
		}
		maxRSS = max(maxRSS, s.rss)
	}
	// The slopes of RSS after the warm-up and over the second half: a
	// conversation that holds nothing worth keeping is forgotten after 10
	// minutes without traffic (peerIdle in proxy/peermem.go), so the
	// number of hostile nicks otrbnc remembers grows for the first 10
	// minutes by design; the second half of a 30-minute run is past that.
	slopeAfter := func(from time.Duration) float64 {
		var pts []sample
		for _, s := range samples {
			if s.at >= from {
				pts = append(pts, s)
			}
		}
		return rssSlope(pts, func(s sample) (time.Duration, int) { return s.at, s.rss })
	}
	_, summaries, _, _ := svc.counts(start, time.Now(), "")
	b.ReportMetric(float64(summaries), "otr-summaries")
	b.ReportMetric(dur.Seconds(), "duration-s")
	b.ReportMetric(float64(warmS.rss)/1024, "rss-warm-MiB")
	b.ReportMetric(float64(halfS.rss)/1024, "rss-half-MiB")
	b.ReportMetric(slopeAfter(warm), "slope-warm-KiB/min")
	b.ReportMetric(slopeAfter(dur/2), "slope-half-KiB/min")
	b.ReportMetric(float64(rssEnd)/1024, "rss-end-MiB")
	b.ReportMetric(float64(max(maxRSS, hwm))/1024, "rss-max-MiB")
	b.ReportMetric(float64(warmS.heap), "heap-warm-MB")
	b.ReportMetric(float64(gEnd.live), "heap-end-MB")
	b.ReportMetric(float64(legit), "legit-msgs")
	b.ReportMetric(float64(hostileSent.Load()), "hostile-lines")
	b.ReportMetric(float64(nickSeq.Load()), "hostile-nicks")
	b.ReportMetric(float64(replies.Load()), "replies-to-hostile")
	var series strings.Builder
	step := max(1, len(samples)/60)
	for i := 0; i < len(samples); i += step {
		fmt.Fprintf(&series, " %ds:%.1f/%d", int(samples[i].at.Seconds()), float64(samples[i].rss)/1024, samples[i].heap)
	}
	b.Logf("RSS MiB / heap MB over time:%s; end %.1f/%d; load average after: %s", series.String(), float64(rssEnd)/1024, gEnd.live, loadAvg())
}

// rssSlope is the least-squares slope, in KiB per minute, of the values
// (KiB) that at returns for pts against time; 0 with fewer than two
// points.
func rssSlope[T any](pts []T, at func(T) (time.Duration, int)) float64 {
	if len(pts) < 2 {
		return 0
	}
	var sx, sy float64
	for _, p := range pts {
		t, v := at(p)
		sx += t.Minutes()
		sy += float64(v)
	}
	n := float64(len(pts))
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for _, p := range pts {
		t, v := at(p)
		dx := t.Minutes() - mx
		sxy += dx * (float64(v) - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return 0
	}
	return sxy / sxx
}
