package proxy

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestPeersKeepNoLines: what otrbnc keeps about a nick (its key, nick and
// prefix) has memory of its own, not the line it was parsed from: 20,000
// strangers would otherwise keep 20,000 whole lines alive, outside the
// peer memory budget (seen in the memory-bound benchmark once nick
// folding stopped copying names that were already folded). The lines here
// carry an 8,000-byte tag, so a kept line shows in the heap. Not parallel:
// it measures the heap.
func TestPeersKeepNoLines(t *testing.T) {
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	tag := "@x=" + strings.Repeat("t", 8000) + " "
	send := func(from, to int) {
		for i := from; i < to; i++ {
			fn.s.send(fmt.Sprintf("%s:n%04d!u%04d@host.example PRIVMSG alice :hello", tag, i, i))
		}
		c.expect("the last line", privmsgFrom(fmt.Sprintf("n%04d", to-1), "hello"))
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	send(0, 20) // warm up
	before := heap()
	const nicks = 300
	send(20, 20+nicks)
	after := heap()
	env.inNetwork(func(n *network) {
		if len(n.otr.peers) < 20+nicks {
			t.Fatalf("%d conversations, want %d", len(n.otr.peers), 20+nicks)
		}
	})
	if per := int64(after-before) / nicks; per > 4096 {
		t.Errorf("each new nick keeps %d bytes of heap; a whole line is about 8,050", per)
	}
}

// TestFragmentTagsCounted: the tags of a first fragment, kept until the
// message is whole, count in the peer memory account (a hostile server
// can put 8 KB of tags on every line).
func TestFragmentTagsCounted(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	fn.s.send("@x=" + strings.Repeat("t", 8000) + " :erin!e@h PRIVMSG alice :?OTR|00001234|00000000,00001,00003,AAMD,")
	fn.sync(c)
	env.inNetwork(func(n *network) {
		p := n.lookupPeer("erin")
		if p == nil {
			t.Fatal("no conversation with erin")
		}
		if p.mem < 8000 {
			t.Errorf("erin's account is %d bytes with 8,000 bytes of tags kept", p.mem)
		}
	})
}
