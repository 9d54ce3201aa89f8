package otrcore

import (
	"bytes"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDHKeyPoolFill(t *testing.T) {
	p := NewDHKeyPool(5, nil)
	if n, err := p.Fill(2); n != 2 || err != nil || p.Len() != 2 {
		t.Fatalf("Fill(2) = %d, %v; Len %d", n, err, p.Len())
	}
	if n, err := p.Fill(100); n != 3 || err != nil || p.Len() != 5 {
		t.Fatalf("Fill(100) = %d, %v; Len %d, want 3 added up to the size 5", n, err, p.Len())
	}
	if n, _ := p.Fill(1); n != 0 {
		t.Fatalf("a full pool computed %d more", n)
	}
	gr := otrGroup()
	seen := map[string]bool{}
	var taken []*dhKeyPair
	for k := p.take(); k != nil; k = p.take() {
		// Ready to use: public part computed and matching the private key.
		if k.pub == nil || !bytes.Equal(k.pub, gr.expG(k.priv).Bytes()) {
			t.Fatal("pooled key pair has no or a wrong public key")
		}
		if seen[string(k.priv)] {
			t.Fatal("a key pair was handed out twice")
		}
		seen[string(k.priv)] = true
		taken = append(taken, k)
	}
	if len(taken) != 5 || p.Len() != 0 {
		t.Fatalf("took %d pairs, %d left", len(taken), p.Len())
	}
	if NewDHKeyPool(MaxDHKeyPool+10, nil).size != MaxDHKeyPool || NewDHKeyPool(-1, nil).size != 0 {
		t.Fatal("pool size not clamped")
	}
}

func TestDHKeyPoolWipe(t *testing.T) {
	p := NewDHKeyPool(3, nil)
	if _, err := p.Fill(3); err != nil {
		t.Fatal(err)
	}
	privs := make([][]byte, 0, 3)
	for _, k := range p.keys {
		privs = append(privs, k.priv)
	}
	p.Wipe()
	if p.Len() != 0 || p.take() != nil {
		t.Fatal("Wipe left key pairs in the pool")
	}
	for _, priv := range privs {
		if !bytes.Equal(priv, make([]byte, len(priv))) {
			t.Fatal("Wipe did not clear a private key")
		}
	}
	if n, _ := p.Fill(1); n != 1 {
		t.Fatal("a wiped pool cannot be filled again")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestDHKeyPoolRandomnessFailure(t *testing.T) {
	p := NewDHKeyPool(3, failingReader{})
	if n, err := p.Fill(2); n != 0 || err == nil || p.Len() != 0 {
		t.Fatalf("Fill with failing randomness = %d, %v", n, err)
	}
	var nilPool *DHKeyPool
	if n, err := nilPool.Fill(3); n != 0 || err != nil || nilPool.Len() != 0 || nilPool.take() != nil {
		t.Fatal("nil pool misbehaves")
	}
	nilPool.Wipe()
}

// TestDHKeyPoolConcurrent fills and drains one pool from several
// goroutines (run with -race): no pair is handed out twice and the size
// is never exceeded.
func TestDHKeyPoolConcurrent(t *testing.T) {
	p := NewDHKeyPool(4, nil)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				if _, err := p.Fill(2); err != nil {
					t.Error(err)
				}
				if p.Len() > 4 {
					t.Error("pool above its size")
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if k := p.take(); k != nil {
					mu.Lock()
					if seen[string(k.priv)] {
						t.Error("a key pair was handed out twice")
					}
					seen[string(k.priv)] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}

// TestDHKeyPoolUsedByConversations: with a pool on both accounts, the AKE
// and every key rotation take their key pairs from it (it drains), the
// sessions work, and without a pool nothing changes.
func TestDHKeyPoolUsedByConversations(t *testing.T) {
	now := time.Unix(1e9, 0)
	poolA, poolB := NewDHKeyPool(16, nil), NewDHKeyPool(16, nil)
	poolA.Fill(16)
	poolB.Fill(16)
	a := NewConversation(&Account{Key: testKey(t, 0), InstanceTag: 0x100, DHKeys: poolA}, "bob", Options{Policy: PolicyManual})
	b := NewConversation(&Account{Key: testKey(t, 1), InstanceTag: 0x200, DHKeys: poolB}, "alice", Options{Policy: PolicyManual})
	pump(t, now, a, b, mustStart(a, now))
	if a.Status().State != StateEncrypted || b.Status().State != StateEncrypted {
		t.Fatal("AKE failed")
	}
	// Each side: one AKE key pair and the first next key.
	if poolA.Len() != 14 || poolB.Len() != 14 {
		t.Fatalf("after the AKE the pools hold %d and %d pairs, want 14 each", poolA.Len(), poolB.Len())
	}
	from, to := a, b
	for i := 0; i < 6; i++ {
		msg := strings.Repeat("x", i+1)
		res, err := from.Send(now, msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := pump(t, now, from, to, res); got != msg {
			t.Fatalf("message %d: got %q", i, got)
		}
		from, to = to, from
	}
	// Six messages alternating: every message but the first is an answer
	// to the receiver's newest key, so alice rotated three times and bob
	// twice.
	if poolA.Len() != 11 || poolB.Len() != 12 {
		t.Fatalf("after 6 alternating messages the pools hold %d and %d pairs, want 11 and 12", poolA.Len(), poolB.Len())
	}
	// Keys taken from the pool are the ones the session announces.
	in, err := a.sendTarget()
	if err != nil {
		t.Fatal(err)
	}
	next := in.keys.our[1]
	if next.pub == nil || new(big.Int).SetBytes(next.pub).Cmp(otrGroup().expG(next.priv)) != 0 {
		t.Fatal("next key pair is inconsistent")
	}
	// An empty pool falls back to computing keys on demand.
	poolA.Wipe()
	poolB.Wipe()
	for i := 0; i < 4; i++ {
		res, err := from.Send(now, "after the pools ran dry")
		if err != nil {
			t.Fatal(err)
		}
		if got := pump(t, now, from, to, res); got != "after the pools ran dry" {
			t.Fatalf("got %q", got)
		}
		from, to = to, from
	}
}

// TestPrepareKeys: PrepareKeys derives exactly the pairs the next message
// each way uses, so Send and Receive then derive nothing; the session
// works whenever it is called, and the derived pairs stay bounded.
func TestPrepareKeys(t *testing.T) {
	now := time.Unix(1e9, 0)
	a := NewConversation(&Account{Key: testKey(t, 0), InstanceTag: 0x100}, "bob", Options{Policy: PolicyManual})
	b := NewConversation(&Account{Key: testKey(t, 1), InstanceTag: 0x200}, "alice", Options{Policy: PolicyManual})
	if n, err := a.PrepareKeys(); n != 0 || err != nil {
		t.Fatalf("PrepareKeys without a session = %d, %v", n, err)
	}
	pump(t, now, a, b, mustStart(a, now))
	from, to := a, b
	for i := 0; i < 8; i++ {
		for _, c := range []*Conversation{from, to} {
			if _, err := c.PrepareKeys(); err != nil {
				t.Fatal(err)
			}
			if n, err := c.PrepareKeys(); n != 0 || err != nil {
				t.Fatalf("second PrepareKeys = %d, %v", n, err)
			}
		}
		sks, rks := testSessionKeys(t, from), testSessionKeys(t, to)
		sendPairs, recvPairs := len(sks.pairs), len(rks.pairs)
		msg := strings.Repeat("p", i+1)
		res, err := from.Send(now, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(sks.pairs) != sendPairs {
			t.Fatalf("message %d: Send derived keys although they were prepared", i)
		}
		r, err := to.Receive(now, res.Send[0].Lines[0])
		if err != nil || r.Text != msg {
			t.Fatalf("message %d: %v %q", i, err, r.Text)
		}
		if len(rks.pairs) > recvPairs {
			t.Fatalf("message %d: Receive derived keys although they were prepared", i)
		}
		for _, ks := range []*keyState{sks, rks} {
			if len(ks.pairs) > 4 {
				t.Fatalf("%d session key pairs held", len(ks.pairs))
			}
		}
		if i%3 != 2 { // now and then two messages in a row
			from, to = to, from
		}
	}
}

// testSessionKeys returns the key state of c's current encrypted session.
func testSessionKeys(t *testing.T, c *Conversation) *keyState {
	t.Helper()
	in, err := c.sendTarget()
	if err != nil || in == nil || in.keys == nil {
		t.Fatalf("no encrypted session: %v", err)
	}
	return in.keys
}
