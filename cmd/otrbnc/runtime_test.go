package main

import (
	"runtime"
	"testing"
	"time"
)

// TestGCPercent: the default (GOGC=100) while the live heap is at most
// 2 MiB, so that small heaps keep the runtime's 4 MiB minimum goal and
// collect as rarely as before; above, the goal is max(4 MiB, 1.5 × live).
func TestGCPercent(t *testing.T) {
	const MiB = 1 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100}, {MiB, 100}, {2 * MiB, 100}, {2*MiB + MiB/2, 60}, {3 * MiB, 50}, {6 * MiB, 50}, {100 * MiB, 50},
	} {
		got := gcPercent(c.live)
		if got != c.want {
			t.Errorf("gcPercent(%d) = %d, want %d", c.live, got, c.want)
		}
		if c.live > 2*MiB {
			goal := c.live * uint64(100+got) / 100
			if want := max(gcMinGoal, c.live*3/2); goal < want-c.live/100 || goal > want+c.live/100 {
				t.Errorf("live heap %d: goal %d, want about %d", c.live, goal, want)
			}
		}
	}
}

// TestGCTunerAdjusts: GOGC is set when the live heap calls for another
// value, and only then.
func TestGCTunerAdjusts(t *testing.T) {
	var live uint64
	var sets []int
	tu := &gcTuner{live: func() uint64 { return live }, set: func(p int) int { sets = append(sets, p); return 0 }, cur: 100}
	for _, l := range []uint64{1 << 20, 6 << 20, 7 << 20, 1 << 20, 1 << 20} {
		live = l
		tu.adjust()
	}
	if len(sets) != 2 || sets[0] != 50 || sets[1] != 100 {
		t.Errorf("GOGC set to %v, want [50 100]", sets)
	}
}

// TestGCHookRuns: the hook runs after a collection and again after the
// next one (it re-arms itself).
func TestGCHookRuns(t *testing.T) {
	ran := make(chan struct{}, 100)
	armGCHook(func() { ran <- struct{}{} })
	for i := range 2 {
		deadline := time.Now().Add(10 * time.Second)
	wait:
		for {
			runtime.GC()
			select {
			case <-ran:
				break wait
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("the hook did not run after collection %d", i+1)
			}
		}
	}
}
