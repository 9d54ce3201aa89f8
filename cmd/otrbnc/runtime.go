package main

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// schedulerThreads returns how many threads should run Go code at once
// (GOMAXPROCS) for a bouncer with networks networks, given the runtime's
// default (the CPUs available to the process): one per network, at most
// the default.
//
// Each network's IRC and OTR work runs on one goroutine (proxy's owner
// model), so that is all the parallelism otrbnc's work has; the socket
// readers beside it only parse lines. A spare thread does not make a
// network faster but costs a thread wake-up, spin and sleep each time a
// reader hands a line to its owner: on the plain-message benchmark that
// was about a third of otrbnc's CPU per message in closed loop, and the
// 1,000-conversation load and round-trip benchmarks were no slower with
// one thread (docs/performance.md).
func schedulerThreads(networks, available int) int {
	return max(1, min(networks, available))
}

// tuneRuntime applies schedulerThreads unless GOMAXPROCS is set in the
// environment, and the garbage collector's headroom (gcPercent) unless
// GOGC is: the environment always wins.
func tuneRuntime(networks int, logger *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		startGCTuner()
		logger.Debug("garbage collector headroom tuned", "min-heap-goal-bytes", gcMinGoal, "min-gogc", gcMinPercent)
	}
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	n := schedulerThreads(networks, runtime.GOMAXPROCS(0))
	if n != runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(n)
	}
	logger.Debug("scheduler threads", "gomaxprocs", n, "networks", networks)
}

// The garbage collector's headroom. With the runtime's default (GOGC=100)
// the heap grows to twice the live heap before a collection, and the
// resident memory follows the heap's high point: about 2.2 bytes of RSS
// for each byte a conversation keeps. otrbnc's live heap is small until
// it holds many conversations, and there the default's headroom is what
// makes each session cost twice its size. The tuner keeps the default
// while the heap is small, where it also keeps the plain-message path's
// collections as rare as before (the runtime's 4 MiB minimum heap goal),
// and lets the heap grow by half the live heap, not all of it, once the
// live heap is larger (docs/performance.md, "RSS per established OTR
// session"):
//
//	heap goal = max(gcMinGoal, live × (1 + gcMinPercent/100))
//
// which makes collections more frequent than the default only once the
// live heap passes 2 MiB.
const (
	gcMinGoal    = 4 << 20
	gcMinPercent = 50
)

// gcPercent returns the GOGC value that gives the heap goal above for a
// live heap of live bytes.
func gcPercent(live uint64) int {
	if live == 0 || live*2 <= gcMinGoal {
		return 100 // the runtime's own minimum goal applies
	}
	p := int((gcMinGoal - min(live, gcMinGoal)) * 100 / live)
	return max(gcMinPercent, min(100, p))
}

// gcTuner sets GOGC after each garbage collection from the live heap it
// left.
type gcTuner struct {
	live func() uint64   // the live heap marked by the last collection
	set  func(p int) int // debug.SetGCPercent
	mu   sync.Mutex
	cur  int
}

// adjust sets GOGC for the live heap, when it changes.
func (t *gcTuner) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := gcPercent(t.live()); p != t.cur {
		t.set(p)
		t.cur = p
	}
}

// gcSentinel is allocated for the sole purpose of being collected: its
// cleanup runs after each garbage collection. It holds a pointer so that
// it is never one of the tiny objects the runtime packs together (which
// could keep it alive).
type gcSentinel struct{ _ *int }

// armGCHook runs f after the next garbage collection, and again after
// every one that follows.
func armGCHook(f func()) {
	runtime.AddCleanup(new(gcSentinel), func(struct{}) {
		f()
		armGCHook(f)
	}, struct{}{})
}

// startGCTuner tunes GOGC for the rest of the process's life; calls after
// the first do nothing.
var startGCTuner = sync.OnceFunc(func() {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := &gcTuner{
		live: func() uint64 {
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return 0
			}
			return sample[0].Value.Uint64()
		},
		set: debug.SetGCPercent,
		cur: 100,
	}
	armGCHook(t.adjust)
})
