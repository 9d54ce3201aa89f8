package keystore

import (
	"bytes"
	"container/heap"
	"maps"
	"slices"
	"time"

	"otrbnc/otrcore"
)

// lru orders an account's untrusted fingerprints by their last sighting,
// least recent first (ties by value), so that making room under a flood of
// new keys costs O(log n) instead of a scan of every record. It is a binary
// heap; pos holds each fingerprint's index in it.
type lru struct {
	entries []lruEntry
	pos     map[otrcore.Fingerprint]int
}

type lruEntry struct {
	fp   otrcore.Fingerprint
	last time.Time
}

func newLRU(n int) *lru {
	return &lru{entries: make([]lruEntry, 0, n), pos: make(map[otrcore.Fingerprint]int, n)}
}

func (l *lru) clone() *lru {
	return &lru{entries: slices.Clone(l.entries), pos: maps.Clone(l.pos)}
}

// set adds fp, last seen at last, or moves it to its new place.
func (l *lru) set(fp otrcore.Fingerprint, last time.Time) {
	if i, ok := l.pos[fp]; ok {
		l.entries[i].last = last
		heap.Fix(l, i)
		return
	}
	heap.Push(l, lruEntry{fp, last})
}

// remove removes fp if it is there.
func (l *lru) remove(fp otrcore.Fingerprint) {
	if i, ok := l.pos[fp]; ok {
		heap.Remove(l, i)
	}
}

// oldest returns the least recently seen fingerprint.
func (l *lru) oldest() (otrcore.Fingerprint, bool) {
	if len(l.entries) == 0 {
		return otrcore.Fingerprint{}, false
	}
	return l.entries[0].fp, true
}

// heap.Interface; use the methods above.

func (l *lru) Len() int { return len(l.entries) }

func (l *lru) Less(i, j int) bool {
	a, b := &l.entries[i], &l.entries[j]
	if c := a.last.Compare(b.last); c != 0 {
		return c < 0
	}
	return bytes.Compare(a.fp[:], b.fp[:]) < 0
}

func (l *lru) Swap(i, j int) {
	l.entries[i], l.entries[j] = l.entries[j], l.entries[i]
	l.pos[l.entries[i].fp] = i
	l.pos[l.entries[j].fp] = j
}

func (l *lru) Push(x any) {
	e := x.(lruEntry)
	l.pos[e.fp] = len(l.entries)
	l.entries = append(l.entries, e)
}

func (l *lru) Pop() any {
	e := l.entries[len(l.entries)-1]
	l.entries = l.entries[:len(l.entries)-1]
	delete(l.pos, e.fp)
	return e
}
