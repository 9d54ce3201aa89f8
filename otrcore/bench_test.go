package otrcore

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"otrbnc/otrcore/otrtest/libotrpeer"
)

// benchPair returns two parties with an established v3 session, without
// the test-only bookkeeping of link.
func benchPair(tb testing.TB, maxSize int) (*Conversation, *Conversation) {
	tb.Helper()
	a := NewConversation(&Account{Key: testKey(tb, 0), InstanceTag: 0x100}, "bob", Options{Policy: PolicyManual, MaxMessageSize: maxSize})
	c := NewConversation(&Account{Key: testKey(tb, 1), InstanceTag: 0x200}, "alice", Options{Policy: PolicyManual, MaxMessageSize: maxSize})
	now := time.Unix(1e9, 0)
	pump(tb, now, a, c, mustStart(a, now))
	if a.Status().State != StateEncrypted || c.Status().State != StateEncrypted {
		tb.Fatal("AKE failed")
	}
	return a, c
}

// pump delivers res from `from` to `to` and every reply back and forth
// until quiet; it returns the last received text.
func pump(tb testing.TB, now time.Time, from, to *Conversation, res Result) string {
	var text string
	for round := 0; len(res.Send) > 0; round++ {
		if round > 100 {
			tb.Fatal("protocol loop")
		}
		var next Result
		for _, m := range res.Send {
			for _, line := range m.Lines {
				r, err := to.Receive(now, line)
				if err != nil {
					tb.Fatal(err)
				}
				if r.HasText {
					text = r.Text
				}
				next.Send = append(next.Send, r.Send...)
			}
		}
		res = next
		from, to = to, from
	}
	return text
}

// BenchmarkAKE measures a full AKE, both sides, from query to both
// encrypted (keys are long-term and loaded once).
func BenchmarkAKE(b *testing.B) {
	ka, kb := testKey(b, 0), testKey(b, 1)
	now := time.Unix(1e9, 0)
	for b.Loop() {
		a := NewConversation(&Account{Key: ka, InstanceTag: 0x100}, "bob", Options{Policy: PolicyManual})
		c := NewConversation(&Account{Key: kb, InstanceTag: 0x200}, "alice", Options{Policy: PolicyManual})
		pump(b, now, a, c, mustStart(a, now))
		if a.Status().State != StateEncrypted {
			b.Fatal("AKE failed")
		}
	}
}

// BenchmarkAKEPooled compares the AKE with and without a DHKeyPool per
// account. Between AKEs, untimed as idle time would be, both variants do
// the same work: the pools are topped up with two key pairs each, which
// "pool" then takes (both AKE key pairs and both first next keys come
// ready) and "nopool" throws away.
func BenchmarkAKEPooled(b *testing.B) {
	for _, pooled := range []bool{false, true} {
		name := "nopool"
		if pooled {
			name = "pool"
		}
		b.Run(name, func(b *testing.B) {
			ka, kb := testKey(b, 0), testKey(b, 1)
			pa, pb := NewDHKeyPool(2, nil), NewDHKeyPool(2, nil)
			var use [2]*DHKeyPool
			if pooled {
				use = [2]*DHKeyPool{pa, pb}
			}
			now := time.Unix(1e9, 0)
			for b.Loop() {
				b.StopTimer()
				for _, p := range []*DHKeyPool{pa, pb} {
					p.Wipe()
					if _, err := p.Fill(2); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				a := NewConversation(&Account{Key: ka, InstanceTag: 0x100, DHKeys: use[0]}, "bob", Options{Policy: PolicyManual})
				c := NewConversation(&Account{Key: kb, InstanceTag: 0x200, DHKeys: use[1]}, "alice", Options{Policy: PolicyManual})
				pump(b, now, a, c, mustStart(a, now))
				if a.Status().State != StateEncrypted {
					b.Fatal("AKE failed")
				}
			}
		})
	}
}

// BenchmarkDataAlternating sends 100-byte messages alternating direction,
// so every message carries a new key and forces a rotation.
func BenchmarkDataAlternating(b *testing.B) {
	a, c := benchPair(b, 0)
	now := time.Unix(1e9, 0)
	msg := strings.Repeat("a", 100)
	sides := [2]*Conversation{a, c}
	i := 0
	for b.Loop() {
		from, to := sides[i%2], sides[(i+1)%2]
		i++
		res, err := from.Send(now, msg)
		if err != nil {
			b.Fatal(err)
		}
		if got := pump(b, now, from, to, res); got != msg {
			b.Fatalf("got %q", got)
		}
	}
}

// BenchmarkReplyLatency measures what a user waits for in a conversation
// that changes direction: one operation is "message, reply, message", each
// 100 bytes, encrypted by one side and decrypted by the other, every one
// an answer that makes the receiver rotate keys. Between messages, in idle
// time that is not timed, the "pool" variant tops up a DHKeyPool per
// account (as the proxy's tick would) and "prepare" also calls
// PrepareKeys on both sides; "nopool" does all the work on the critical
// path.
func BenchmarkReplyLatency(b *testing.B) {
	for _, v := range []struct {
		name             string
		pooled, prepared bool
	}{{"nopool", false, false}, {"pool", true, false}, {"pool+prepare", true, true}} {
		pooled := v.pooled
		b.Run(v.name, func(b *testing.B) {
			// Both variants top up two pools in idle time; only "pool"
			// and "pool+prepare" use them, "nopool" throws the pairs away,
			// so that the untimed work (and the garbage collection it
			// absorbs) is the same.
			var pools [2]*DHKeyPool
			accts := [2]*Account{{Key: testKey(b, 0), InstanceTag: 0x100}, {Key: testKey(b, 1), InstanceTag: 0x200}}
			for i := range pools {
				pools[i] = NewDHKeyPool(1, nil)
				pools[i].Fill(1)
				if pooled {
					accts[i].DHKeys = pools[i]
				}
			}
			now := time.Unix(1e9, 0)
			sides := [2]*Conversation{
				NewConversation(accts[0], "bob", Options{Policy: PolicyManual}),
				NewConversation(accts[1], "alice", Options{Policy: PolicyManual}),
			}
			pump(b, now, sides[0], sides[1], mustStart(sides[0], now))
			msg := strings.Repeat("r", 100)
			i := 0
			times := newOpTimes()
			for b.Loop() {
				var spent time.Duration
				for range 3 {
					from, to := sides[i%2], sides[(i+1)%2]
					i++
					t0 := time.Now()
					res, err := from.Send(now, msg)
					if err != nil {
						b.Fatal(err)
					}
					r, err := to.Receive(now, res.Send[0].Lines[0])
					spent += time.Since(t0)
					if err != nil || r.Text != msg || len(r.Send) != 0 {
						b.Fatalf("reply: %v %q", err, r.Text)
					}
					b.StopTimer() // idle time between messages
					for _, p := range pools {
						if !pooled {
							p.Wipe()
						}
						if _, err := p.Fill(1); err != nil {
							b.Fatal(err)
						}
					}
					if v.prepared {
						for _, c := range sides {
							if _, err := c.PrepareKeys(); err != nil {
								b.Fatal(err)
							}
						}
					}
					b.StartTimer()
				}
				times.add(spent)
			}
			times.report(b)
		})
	}
}

// opTimes collects the durations of single operations in 10 ns buckets,
// so a benchmark can report their median as libotrpeer does for libotr
// (the ns/op figure is the mean, which includes garbage collection and
// whatever else ran in between).
type opTimes struct {
	buckets []uint32
	n       int
}

const opTimesBucket = 10 * time.Nanosecond

func newOpTimes() *opTimes { return &opTimes{buckets: make([]uint32, 1000000)} } // up to 10 ms

func (o *opTimes) add(d time.Duration) {
	i := min(int(d/opTimesBucket), len(o.buckets)-1)
	o.buckets[i]++
	o.n++
}

// report adds the median as "median-ns/op".
func (o *opTimes) report(b *testing.B) {
	if o.n == 0 {
		return
	}
	seen := 0
	for i, c := range o.buckets {
		seen += int(c)
		if 2*seen >= o.n {
			b.ReportMetric(float64(time.Duration(i)*opTimesBucket+opTimesBucket/2), "median-ns/op")
			return
		}
	}
}

func benchBurst(b *testing.B, size int) {
	a, c := benchPair(b, 0)
	now := time.Unix(1e9, 0)
	msg := strings.Repeat("b", size)
	times := newOpTimes()
	for b.Loop() {
		t0 := time.Now()
		res, err := a.Send(now, msg)
		if err != nil {
			b.Fatal(err)
		}
		r, err := c.Receive(now, res.Send[0].Lines[0])
		times.add(time.Since(t0))
		if err != nil || r.Text != msg {
			b.Fatalf("burst: %v %q", err, r.Text)
		}
	}
	times.report(b)
}

// BenchmarkDataBurst100 sends 100-byte messages in one direction.
func BenchmarkDataBurst100(b *testing.B) { benchBurst(b, 100) }

// BenchmarkDataBurst400 sends 400-byte messages in one direction.
func BenchmarkDataBurst400(b *testing.B) { benchBurst(b, 400) }

// BenchmarkFragmented2000 sends a 2000-byte message split into fragments of
// at most 400 bytes and reassembles it.
func BenchmarkFragmented2000(b *testing.B) {
	a, c := benchPair(b, 400)
	now := time.Unix(1e9, 0)
	msg := strings.Repeat("f", 2000)
	times := newOpTimes()
	for b.Loop() {
		t0 := time.Now()
		res, err := a.Send(now, msg)
		if err != nil {
			b.Fatal(err)
		}
		var text string
		for _, line := range res.Send[0].Lines {
			r, err := c.Receive(now, line)
			if err != nil {
				b.Fatal(err)
			}
			if r.HasText {
				text = r.Text
			}
		}
		times.add(time.Since(t0))
		if text != msg {
			b.Fatal("not reassembled")
		}
	}
	times.report(b)
}

// BenchmarkSessionHeap reports the heap held per established session,
// after a few messages in each direction: per pair (both sides, as
// libotr's figure) and per side, and per side again once the sessions
// have been idle for idleCompact. The group's precomputed tables, shared
// by every session of the process, are built before measuring.
func BenchmarkSessionHeap(b *testing.B) {
	const pairs = 200
	ka, kb := testKey(b, 0), testKey(b, 1)
	now := time.Unix(1e9, 0)
	otrGroup() // the shared, process-wide group tables are not per session
	for b.Loop() {
		keep := make([]*Conversation, 0, 2*pairs)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; i < pairs; i++ {
			a := NewConversation(&Account{Key: ka, InstanceTag: 0x100}, "bob", Options{Policy: PolicyManual})
			c := NewConversation(&Account{Key: kb, InstanceTag: 0x200}, "alice", Options{Policy: PolicyManual})
			pump(b, now, a, c, mustStart(a, now))
			for j := 0; j < 4; j++ {
				res, _ := a.Send(now, "hello")
				pump(b, now, a, c, res)
				res, _ = c.Send(now, "hello back")
				pump(b, now, c, a, res)
			}
			keep = append(keep, a, c)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/pairs, "heapB/pair")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(2*pairs), "heapB/session")
		// The same sessions after idleCompact with the proxy's Tick: the
		// side that received last sends its heartbeat a minute later,
		// then both stay silent.
		hb := now.Add(heartbeatInterval)
		for i := 0; i < len(keep); i += 2 {
			for _, d := range [][2]*Conversation{{keep[i], keep[i+1]}, {keep[i+1], keep[i]}} {
				for _, m := range d[0].Tick(hb).Send {
					d[1].Receive(hb, m.Lines[0])
				}
			}
		}
		for _, c := range keep {
			c.Tick(hb.Add(idleCompact))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(2*pairs), "idle-heapB/session")
		runtime.KeepAlive(keep)
	}
}

// BenchmarkLibotrReference times libotr 4.1.1 on the same workloads as
// the benchmarks above, through the libotrpeer benchmark mode, so one run
// gives both sets of figures on the same machine. Each sub-benchmark
// reports libotr's median as "libotr-ns/op" (and heap per pair for
// "heap"); run it with -benchtime=1x.
func BenchmarkLibotrReference(b *testing.B) {
	libotrpeer.Require(b)
	for _, w := range []struct {
		name string
		n    int
	}{
		{libotrpeer.BenchAKE, 200},
		{libotrpeer.BenchAlternating, 400},
		{libotrpeer.BenchBurst100, 20000},
		{libotrpeer.BenchBurst400, 20000},
		{libotrpeer.BenchFrag2000, 5000},
		{libotrpeer.BenchSMP, 20},
		{libotrpeer.BenchHeap, 200},
	} {
		b.Run(w.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var r libotrpeer.BenchResult
			for b.Loop() {
				var err error
				if r, err = libotrpeer.RunBench(ctx, w.name, w.n); err != nil {
					b.Fatal(err)
				}
			}
			r.ReportMetrics(b)
		})
	}
}
