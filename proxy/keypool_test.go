package proxy

import (
	"testing"
	"time"

	"otrbnc/otrcore"
)

// TestDHKeyPoolFilledAndWiped: the network's tick tops up its DH key pool
// a few pairs at a time up to its size, and shutdown wipes it.
func TestDHKeyPoolFilledAndWiped(t *testing.T) {
	env := startProxy(t, testConfig("127.0.0.1:1"), Options{TickInterval: 5 * time.Millisecond})
	pool := env.network().otr.acct.DHKeys
	if pool == nil {
		t.Fatal("the network's account has no DH key pool")
	}
	deadline := time.Now().Add(testTimeout)
	for n := 0; n < dhKeyPoolSize; {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d key pairs after %v, want %d", n, testTimeout, dhKeyPoolSize)
		}
		time.Sleep(5 * time.Millisecond)
		env.inNetwork(func(*network) { n = pool.Len() })
	}
	env.stop()
	if n := pool.Len(); n != 0 {
		t.Fatalf("%d key pairs left in the pool after shutdown", n)
	}
}

// TestKeysPreparedAfterMessages: once otrbnc has delivered a peer's
// encrypted message, or sent the user's, the session keys the next
// message each way uses are already derived (PrepareKeys finds nothing
// left), and the AKE and rotations took key pairs from the pool.
func TestKeysPreparedAfterMessages(t *testing.T) {
	f := newStateFuzz(t)
	pool := f.n.otr.acct.DHKeys
	f.n.otrTick()
	if pool.Len() != dhKeysPerTick {
		t.Fatalf("one tick filled %d key pairs, want %d", pool.Len(), dhKeysPerTick)
	}
	for range dhKeyPoolSize {
		f.n.otrTick()
	}
	if pool.Len() != dhKeyPoolSize {
		t.Fatalf("pool holds %d key pairs, want %d", pool.Len(), dhKeyPoolSize)
	}
	deliver := func() {
		for i := 0; i < 20 && len(f.bobInbox) > 0; i++ {
			l := f.bobInbox[0]
			f.bobInbox = f.bobInbox[1:]
			f.server(l)
			f.drain()
		}
	}
	res, err := f.bob.Start(f.clock)
	if err != nil {
		t.Fatal(err)
	}
	f.bobSends(res)
	deliver()
	p := f.n.otr.peers[f.fold("bob")]
	if p == nil || p.conv.Status().State != otrcore.StateEncrypted || f.bob.Status().State != otrcore.StateEncrypted {
		t.Fatal("no session with bob")
	}
	if pool.Len() >= dhKeyPoolSize {
		t.Fatal("the AKE took no key pair from the pool")
	}
	// The user writes first, then they alternate.
	for i := range 3 {
		f.client("PRIVMSG bob :hello bob")
		f.drain()
		if n, err := p.conv.PrepareKeys(); n != 0 || err != nil {
			t.Fatalf("round %d: after sending to bob PrepareKeys still derived %d pairs (%v)", i, n, err)
		}
		deliver() // bob's heartbeat, if any
		res, err := f.bob.Send(f.clock, "hello alice")
		if err != nil {
			t.Fatal(err)
		}
		f.bobSends(res)
		deliver()
		if n, err := p.conv.PrepareKeys(); n != 0 || err != nil {
			t.Fatalf("round %d: after delivering bob's message PrepareKeys still derived %d pairs (%v)", i, n, err)
		}
	}
}
