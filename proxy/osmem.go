package proxy

import (
	"runtime/debug"
	"sync"
	"time"
)

// Giving freed memory back to the system. The Go runtime keeps the heap
// pages it no longer uses and returns them only gradually, so after
// peers went away (their sessions ended and wiped, their conversations
// forgotten) otrbnc's RSS stayed where it was although its heap had
// fallen. When a network's peer memory account (peermem.go) falls by
// osFreeDrop below its highest point since the last time, its tick asks
// for the freed pages to go back at once (Options.FreeOSMemory, by
// default runtime/debug.FreeOSMemory: a full garbage collection, then
// every free page returned). That costs a collection, so the server does
// it at most once per osFreeInterval whatever the number of networks; a
// drop that comes sooner waits for a later tick.
const (
	osFreeDrop     = 1 << 20
	osFreeInterval = time.Minute
)

// osFreer rate-limits the requests of all networks to give memory back.
type osFreer struct {
	mu   sync.Mutex
	last time.Time // when memory was last given back; zero for never
	free func()
}

// freeOSMemoryAsync is the default Options.FreeOSMemory: the collection
// runs beside the network's owner goroutine rather than in it.
func freeOSMemoryAsync() { go debug.FreeOSMemory() }

// try gives memory back unless it was done less than osFreeInterval ago,
// and reports whether it did.
func (f *osFreer) try(now time.Time) bool {
	f.mu.Lock()
	if !f.last.IsZero() && now.Sub(f.last) < osFreeInterval {
		f.mu.Unlock()
		return false
	}
	f.last = now
	f.mu.Unlock()
	f.free()
	return true
}

// freeOSMemory gives memory back to the system when the peer memory
// account fell by osFreeDrop since its highest point (called from the
// tick, after idle conversations were forgotten).
func (n *network) freeOSMemory(now time.Time) {
	if n.mem.high-n.mem.total < osFreeDrop {
		return
	}
	if n.srv.osFree.try(now) {
		n.mem.high = n.mem.total
	}
}
