package otrcore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// dhPrivateBytes is the size of our DH private exponents: 320 bits, the
// spec's minimum and libotr's choice.
const dhPrivateBytes = 40

// dhKeyPair is one of our DH key pairs. The public part is computed on
// first use, so a key pair generated during rotation costs nothing until a
// message carries it.
type dhKeyPair struct {
	priv []byte
	pub  []byte // g^priv mod p, minimal big-endian; nil until computed
}

// newDHKeyPair draws a fresh private exponent; the public value is
// computed lazily by publicBytes.
func newDHKeyPair(rand io.Reader) (*dhKeyPair, error) {
	priv := make([]byte, dhPrivateBytes)
	if _, err := io.ReadFull(rand, priv); err != nil {
		return nil, fmt.Errorf("otrcore: reading randomness for a DH key: %w", err)
	}
	return &dhKeyPair{priv: priv}, nil
}

// publicBytes returns g^priv mod p as a minimal big-endian magnitude (the
// body of its MPI), computing it on first use. The slice is never
// modified afterwards.
func (k *dhKeyPair) publicBytes(gr *group) []byte {
	if k.pub == nil {
		k.pub = gr.expGBytes(k.priv)
	}
	return k.pub
}

// public returns g^priv mod p as a new big.Int.
func (k *dhKeyPair) public(gr *group) *big.Int {
	return new(big.Int).SetBytes(k.publicBytes(gr))
}

// sharedSecret returns MPI(their^priv mod p), the "secbytes" of the spec.
func (k *dhKeyPair) sharedSecret(gr *group, their *big.Int) []byte {
	return k.sharedSecretBytes(gr, their.Bytes())
}

// sharedSecretBytes is sharedSecret for a public key given as a
// big-endian magnitude already checked to lie in the group.
func (k *dhKeyPair) sharedSecretBytes(gr *group, their []byte) []byte {
	s := gr.expBytesMag(their, k.priv)
	i := 0
	for i < len(s) && s[i] == 0 {
		i++
	}
	out := make([]byte, 4+len(s)-i)
	n := len(s) - i
	out[0], out[1], out[2], out[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	copy(out[4:], s[i:])
	wipe(s)
	return out
}

// wipe forgets the private exponent.
func (k *dhKeyPair) wipe() {
	if k != nil {
		wipe(k.priv)
		k.priv = nil
	}
}

// wipe overwrites b with zeros (best effort: Go may have copied it).
func wipe(b []byte) {
	clear(b)
}

// sessionKeys are the symmetric keys of one (our keyid, their keyid) pair
// (Protocol-v3.html, "Computing AES keys, MAC keys, and the secure session
// id"). The AES and HMAC state of each direction is built on first use:
// in a conversation that alternates, most pairs only ever send or only
// ever receive.
type sessionKeys struct {
	ourKeyID, theirKeyID uint32
	sendKey, recvKey     [16]byte
	recvMACKey           [20]byte
	extraKey             [32]byte
	sendCtr, recvCtr     uint64
	recvMACUsed          bool
	send, recv           *directionKeys
}

// directionKeys are the ready-to-use cipher and MAC of one direction.
type directionKeys struct {
	block cipher.Block
	mac   hmacSHA1
}

// newDirectionKeys expands a 16-byte AES key into its cipher and its
// HMAC-SHA1 keyed with SHA-1(AES key); h is the session's digest.
func newDirectionKeys(h sha1State, aesKey []byte) (*directionKeys, error) {
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, fmt.Errorf("otrcore: session key: %w", err)
	}
	d := &directionKeys{block: block}
	macKey := sha1.Sum(aesKey)
	err = d.mac.init(h, macKey[:])
	wipe(macKey[:])
	if err != nil {
		return nil, err
	}
	return d, nil
}

// sending returns the sending direction's cipher and MAC.
func (sk *sessionKeys) sending(h sha1State) (*directionKeys, error) {
	if sk.send == nil {
		d, err := newDirectionKeys(h, sk.sendKey[:])
		if err != nil {
			return nil, err
		}
		sk.send = d
	}
	return sk.send, nil
}

// receiving returns the receiving direction's cipher and MAC.
func (sk *sessionKeys) receiving(h sha1State) (*directionKeys, error) {
	if sk.recv == nil {
		d, err := newDirectionKeys(h, sk.recvKey[:])
		if err != nil {
			return nil, err
		}
		sk.recv = d
	}
	return sk.recv, nil
}

// wipe forgets the pair's key bytes and MAC states. The expanded AES
// schedules inside the cipher objects cannot be cleared through
// crypto/aes's API; dropping the references is the best Go allows.
func (sk *sessionKeys) wipe() {
	wipe(sk.sendKey[:])
	wipe(sk.recvKey[:])
	wipe(sk.recvMACKey[:])
	wipe(sk.extraKey[:])
	sk.dropExpanded()
}

// dropExpanded forgets the expanded cipher and MAC state of both
// directions; sending and receiving rebuild them from the key bytes.
func (sk *sessionKeys) dropExpanded() {
	for _, d := range []*directionKeys{sk.send, sk.recv} {
		if d != nil {
			d.mac.wipe()
		}
	}
	sk.send, sk.recv = nil, nil
}

// dataWork is the working memory of sealing and opening data messages,
// one per session and shared by all its keys (a session is used by one
// goroutine at a time): the SHA-1 digest the MACs run in, and buffers
// that would otherwise be allocated for every message because they are
// passed to interface methods.
type dataWork struct {
	sha      sha1State
	innerSum [sha1.Size]byte
	mac      [macLen]byte
	ctr      [aes.BlockSize]byte // AES-CTR counter block
	stream   [aes.BlockSize]byte // AES-CTR key stream block
	feed     [sha1.BlockSize]byte
}

// write feeds p to the digest through w.feed: p itself never reaches an
// interface method (which would make every buffer it points into escape
// to the heap).
func (w *dataWork) write(p []byte) {
	for len(p) > 0 {
		n := copy(w.feed[:], p)
		w.sha.Write(w.feed[:n])
		p = p[n:]
	}
}

// deriveSessionKeys computes the data-message keys from secbytes. high
// reports whether our public key is numerically greater than theirs.
func deriveSessionKeys(secbytes []byte, high bool) *sessionKeys {
	sendByte, recvByte := byte(0x02), byte(0x01)
	if high {
		sendByte, recvByte = 0x01, 0x02
	}
	sk := &sessionKeys{}
	h := sha1.New()
	var sum [20]byte
	h.Write([]byte{sendByte})
	h.Write(secbytes)
	copy(sk.sendKey[:], h.Sum(sum[:0])[:16])
	h.Reset()
	h.Write([]byte{recvByte})
	h.Write(secbytes)
	copy(sk.recvKey[:], h.Sum(sum[:0])[:16])
	sk.recvMACKey = sha1.Sum(sk.recvKey[:])
	h2 := sha256.New()
	h2.Write([]byte{0xff})
	h2.Write(secbytes)
	h2.Sum(sk.extraKey[:0])
	wipe(sum[:])
	return sk
}

// maxKeyID bounds key ids so that incrementing never wraps to 0.
const maxKeyID = 0xffffffff - 1

// keyState is the data-phase key management of one encrypted session
// (Protocol-v3.html, "Key Management"): our two most recent DH key pairs,
// the peer's two most recent public keys, the derived session keys of the
// pairs in use, and the receiving MAC keys waiting to be revealed.
type keyState struct {
	gr         *group
	ourKeyID   uint32
	our        [2]*dhKeyPair // our[0] is our_dh[our_keyid-1], our[1] our_dh[our_keyid]
	theirKeyID uint32
	// their[0] is their_y[their_keyid-1] (may be nil), their[1]
	// their_y[their_keyid], as minimal big-endian magnitudes. The slices
	// are owned by the keyState and never modified.
	their  [2][]byte
	pairs  []*sessionKeys
	src    dhKeySource // where our next key pairs come from
	work   *dataWork   // nil until a message is sealed or opened, and after compact
	reveal []byte      // concatenated 20-byte MAC keys for the next outgoing message
}

// newKeyState starts the data phase after an AKE: the AKE key pair gets
// keyid 1, a fresh pair keyid 2 (our_keyid = 2), and the peer's AKE key is
// their_y[theirKeyID].
func newKeyState(gr *group, src dhKeySource, akeKey *dhKeyPair, theirKeyID uint32, theirY *big.Int) (*keyState, error) {
	next, err := src.next()
	if err != nil {
		return nil, err
	}
	return &keyState{
		gr:         gr,
		src:        src,
		ourKeyID:   2,
		our:        [2]*dhKeyPair{akeKey, next},
		theirKeyID: theirKeyID,
		their:      [2][]byte{nil, theirY.Bytes()},
	}, nil
}

// errUnknownKeyID is returned for a data message whose key ids do not name
// a key we hold.
var errUnknownKeyID = errors.New("otrcore: data message names a key we do not hold")

// keys returns the session keys for (ourID, theirID), deriving them on
// first use. It fails if either id is not one we hold.
func (ks *keyState) keys(ourID, theirID uint32) (*sessionKeys, error) {
	for _, p := range ks.pairs {
		if p.ourKeyID == ourID && p.theirKeyID == theirID {
			return p, nil
		}
	}
	var ourKey *dhKeyPair
	switch {
	case ourID == 0:
	case ourID == ks.ourKeyID:
		ourKey = ks.our[1]
	case ourID == ks.ourKeyID-1:
		ourKey = ks.our[0]
	}
	var theirKey []byte
	switch {
	case theirID == 0:
	case theirID == ks.theirKeyID:
		theirKey = ks.their[1]
	case theirID == ks.theirKeyID-1:
		theirKey = ks.their[0]
	}
	if ourKey == nil || ourKey.priv == nil || theirKey == nil {
		return nil, errUnknownKeyID
	}
	secbytes := ourKey.sharedSecretBytes(ks.gr, theirKey)
	high := compareMag(ourKey.publicBytes(ks.gr), theirKey) > 0
	sk := deriveSessionKeys(secbytes, high)
	wipe(secbytes)
	sk.ourKeyID, sk.theirKeyID = ourID, theirID
	ks.pairs = append(ks.pairs, sk)
	return sk, nil
}

// prepare derives ahead of need the session keys of the two pairs the
// next messages are expected to use: our next message's
// (our_keyid-1, their_keyid), and the peer's answer to our newest key,
// (our_keyid, their_keyid), which also computes our newest public key.
// It returns how many pairs it derived (each one modular exponentiation).
func (ks *keyState) prepare() (int, error) {
	n := 0
	for _, ids := range [][2]uint32{{ks.ourKeyID - 1, ks.theirKeyID}, {ks.ourKeyID, ks.theirKeyID}} {
		if ks.derived(ids[0], ids[1]) {
			continue
		}
		if _, err := ks.keys(ids[0], ids[1]); errors.Is(err, errUnknownKeyID) {
			continue // not a pair we can derive (yet)
		} else if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// derived reports whether the session keys of (ourID, theirID) exist.
func (ks *keyState) derived(ourID, theirID uint32) bool {
	for _, p := range ks.pairs {
		if p.ourKeyID == ourID && p.theirKeyID == theirID {
			return true
		}
	}
	return false
}

// sendingKeys returns the keys and ids for an outgoing data message:
// our_dh[our_keyid-1] with their_y[their_keyid].
func (ks *keyState) sendingKeys() (*sessionKeys, error) {
	return ks.keys(ks.ourKeyID-1, ks.theirKeyID)
}

// nextPublic is the DH public key an outgoing message announces,
// our_dh[our_keyid], as a minimal big-endian magnitude.
func (ks *keyState) nextPublic() []byte {
	return ks.our[1].publicBytes(ks.gr)
}

// takeReveal returns the MAC keys to reveal in the next outgoing message
// and clears the list.
func (ks *keyState) takeReveal() []byte {
	r := ks.reveal
	ks.reveal = nil
	return r
}

// forgetPairs drops the session keys matching keep == false, queueing the
// receiving MAC keys that verified messages for revelation.
func (ks *keyState) forgetPairs(drop func(*sessionKeys) bool) {
	kept := ks.pairs[:0]
	for _, p := range ks.pairs {
		if drop(p) {
			if p.recvMACUsed {
				ks.reveal = append(ks.reveal, p.recvMACKey[:]...)
			}
			p.wipe()
			continue
		}
		kept = append(kept, p)
	}
	for i := len(kept); i < len(ks.pairs); i++ {
		ks.pairs[i] = nil
	}
	ks.pairs = kept
}

// rotate applies the key rotation rules after a data message with these
// key ids verified and decrypted. nextDH is the sender's announced next
// key, already range-checked, as a minimal big-endian magnitude; it is
// copied when adopted, so it may alias a message buffer.
func (ks *keyState) rotate(recipientKeyID, senderKeyID uint32, nextDH []byte) error {
	if recipientKeyID == ks.ourKeyID {
		if ks.ourKeyID >= maxKeyID {
			return errors.New("otrcore: our key id space is exhausted")
		}
		next, err := ks.src.next()
		if err != nil {
			return err
		}
		old := ks.ourKeyID - 1
		ks.forgetPairs(func(p *sessionKeys) bool { return p.ourKeyID == old })
		ks.our[0].wipe()
		ks.our[0], ks.our[1] = ks.our[1], next
		ks.ourKeyID++
	}
	if senderKeyID == ks.theirKeyID {
		if ks.theirKeyID >= maxKeyID {
			return errors.New("otrcore: peer key id space is exhausted")
		}
		old := ks.theirKeyID - 1
		ks.forgetPairs(func(p *sessionKeys) bool { return p.theirKeyID == old })
		ks.their[0], ks.their[1] = ks.their[1], bytes.Clone(nextDH)
		ks.theirKeyID++
	}
	return nil
}

// wipe forgets every secret of the session; MAC keys still waiting to be
// revealed are dropped with them.
func (ks *keyState) wipe() {
	if ks == nil {
		return
	}
	ks.our[0].wipe()
	ks.our[1].wipe()
	for _, p := range ks.pairs {
		p.wipe()
	}
	ks.pairs = nil
	ks.reveal = nil
	ks.work = nil
}

// workArea returns the session's work area, allocating it on first use.
func (ks *keyState) workArea() (*dataWork, error) {
	if ks.work == nil {
		h, err := newSHA1State()
		if err != nil {
			return nil, err
		}
		ks.work = &dataWork{sha: h}
	}
	return ks.work, nil
}

// compact drops what an idle session rebuilds on demand from its key
// bytes: the expanded AES and HMAC state of every pair of session keys
// (about 800 bytes per direction in use) and the work area. The next
// message expands them again, which costs a few microseconds.
func (ks *keyState) compact() {
	if ks == nil {
		return
	}
	for _, p := range ks.pairs {
		p.dropExpanded()
	}
	if ks.work != nil {
		*ks.work = dataWork{}
		ks.work = nil
	}
}

// ctrBytes encodes a counter as the 8-byte top half of the AES-CTR IV.
func ctrBytes(c uint64) [8]byte {
	return [8]byte{byte(c >> 56), byte(c >> 48), byte(c >> 40), byte(c >> 32), byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)}
}

// ctrStreamMin is the message length above which ctrXOR uses
// crypto/cipher's CTR mode, whose pipelined key stream is faster than
// block-by-block encryption for long messages despite its two
// allocations.
const ctrStreamMin = 256

// ctrXOR encrypts or decrypts src into dst (which may be the same slice)
// with AES-128-CTR whose initial counter block is ctr followed by eight
// zero bytes. dst and src never reach an interface method, so they may
// live on a caller's stack: up to ctrStreamMin bytes the key stream is
// produced block by block, beyond that crypto/cipher's CTR writes it into
// a heap buffer.
func ctrXOR(w *dataWork, block cipher.Block, ctr [8]byte, dst, src []byte) {
	if len(src) <= ctrStreamMin {
		ctrXORBlocks(w, block, ctr, dst, src)
		return
	}
	stream := make([]byte, len(src))
	ctrXORStream(w, block, ctr, stream, stream)
	subtle.XORBytes(dst, src, stream)
	wipe(stream)
}

// ctrXORStream is ctrXOR through cipher.NewCTR, which allocates and
// makes dst and src escape. The initial counter block is built in w.
func ctrXORStream(w *dataWork, block cipher.Block, ctr [8]byte, dst, src []byte) {
	copy(w.ctr[:8], ctr[:])
	clear(w.ctr[8:])
	cipher.NewCTR(block, w.ctr[:]).XORKeyStream(dst, src)
}

// ctrXORBlocks is ctrXOR one block at a time through w, without
// allocating.
func ctrXORBlocks(w *dataWork, block cipher.Block, ctr [8]byte, dst, src []byte) {
	copy(w.ctr[:8], ctr[:])
	var low uint64 // the low 64 bits of the counter block
	for off := 0; off < len(src); off += aes.BlockSize {
		binary.BigEndian.PutUint64(w.ctr[8:], low)
		block.Encrypt(w.stream[:], w.ctr[:])
		subtle.XORBytes(dst[off:], src[off:], w.stream[:])
		low++
	}
	clear(w.stream[:])
}
