package otrcore

import (
	"crypto/rand"
	"io"
	"sync"
)

// MaxDHKeyPool is the largest number of key pairs a DHKeyPool holds.
const MaxDHKeyPool = 64

// DHKeyPool holds Diffie-Hellman key pairs computed ahead of need, so that
// the modular exponentiation of a new key pair (about 125 µs) is not paid
// on the critical path: when a reply follows a received message (the key
// rotation every change of direction brings) and when an AKE starts or
// answers. Set it as Account.DHKeys and call Fill when idle; without it,
// or when it is empty, key pairs are computed on demand as before.
//
// Every pair is handed out once and then belongs to the session that took
// it, which wipes it like any other key; pairs still in the pool are
// secrets too and are wiped by Wipe. The engine starts no goroutine: only
// Fill computes, in the caller's goroutine. A DHKeyPool is safe for
// concurrent use.
type DHKeyPool struct {
	mu   sync.Mutex
	size int
	rand io.Reader
	gr   *group
	keys []*dhKeyPair
}

// NewDHKeyPool returns an empty pool that Fill tops up to size key pairs
// (at most MaxDHKeyPool), drawing private keys from rand (nil means
// crypto/rand.Reader; another reader must be safe for concurrent use if
// Fill is called concurrently).
func NewDHKeyPool(size int, rand io.Reader) *DHKeyPool {
	size = min(max(size, 0), MaxDHKeyPool)
	return &DHKeyPool{size: size, rand: rand, gr: otrGroup(), keys: make([]*dhKeyPair, 0, size)}
}

// Fill computes up to n key pairs, fewer if the pool reaches its size,
// and returns how many it added. Each costs one fixed-base modular
// exponentiation, so a caller bounds its work per idle moment with n (a
// bouncer would call it from its periodic tick). The lock is not held
// while computing.
func (p *DHKeyPool) Fill(n int) (int, error) {
	if p == nil {
		return 0, nil
	}
	added := 0
	for ; added < n && p.Len() < p.size; added++ {
		r := p.rand
		if r == nil {
			r = rand.Reader
		}
		k, err := newDHKeyPair(r)
		if err != nil {
			return added, err
		}
		k.publicBytes(p.gr)
		p.mu.Lock()
		full := len(p.keys) >= p.size
		if !full {
			p.keys = append(p.keys, k)
		}
		p.mu.Unlock()
		if full { // filled concurrently meanwhile
			k.wipe()
			break
		}
	}
	return added, nil
}

// Len returns the number of key pairs ready in the pool.
func (p *DHKeyPool) Len() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys)
}

// Wipe forgets every key pair in the pool (for example at shutdown). The
// pool stays usable and Fill can top it up again.
func (p *DHKeyPool) Wipe() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, k := range p.keys {
		k.wipe()
		p.keys[i] = nil
	}
	p.keys = p.keys[:0]
}

// take removes and returns a key pair, or nil when the pool is empty.
func (p *DHKeyPool) take() *dhKeyPair {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.keys)
	if n == 0 {
		return nil
	}
	k := p.keys[n-1]
	p.keys[n-1] = nil
	p.keys = p.keys[:n-1]
	return k
}

// dhKeySource hands out new DH key pairs: from the account's pool when it
// has one ready, else freshly drawn (their public part computed on first
// use).
type dhKeySource struct {
	rand io.Reader
	pool *DHKeyPool
}

// next returns a key pair no one else holds.
func (s dhKeySource) next() (*dhKeyPair, error) {
	if k := s.pool.take(); k != nil {
		return k, nil
	}
	return newDHKeyPair(s.rand)
}

// PrepareKeys does ahead of need the key agreement the next messages of
// this conversation's encrypted sessions require, so that the next Send
// and Receive skip it: the session keys our next message uses and those
// of the peer's expected answer to our newest key (each a modular
// exponentiation, about 200 µs). After a change of direction that is all
// the public-key work a message costs, so calling PrepareKeys when idle
// (after handling a received message or sending one) takes it off the
// time the user waits. Calling it again finds nothing left to do. It
// returns how many sets of session keys it derived.
func (c *Conversation) PrepareKeys() (int, error) {
	n := 0
	for _, in := range c.all() {
		if in.state != StateEncrypted || in.keys == nil {
			continue
		}
		k, err := in.keys.prepare()
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// keySource is where the conversation's sessions get their key pairs.
func (c *Conversation) keySource() dhKeySource {
	return dhKeySource{rand: c.rand, pool: c.acct.DHKeys}
}

// newDHKey returns a key pair for an AKE.
func (e akeEnv) newDHKey() (*dhKeyPair, error) {
	return dhKeySource{rand: e.rand, pool: e.pool}.next()
}
