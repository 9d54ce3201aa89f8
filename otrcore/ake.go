package otrcore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// authState is the AKE state of one conversation instance
// (Protocol-v3.html, "Authentication state"). OTRv1's V1_SETUP does not
// exist here: version 1 is never spoken.
type authState int

const (
	authNone authState = iota
	authAwaitingDHKey
	authAwaitingRevealSig
	authAwaitingSig
)

// String names the state for logs and errors.
func (s authState) String() string {
	switch s {
	case authNone:
		return "NONE"
	case authAwaitingDHKey:
		return "AWAITING_DHKEY"
	case authAwaitingRevealSig:
		return "AWAITING_REVEALSIG"
	case authAwaitingSig:
		return "AWAITING_SIG"
	}
	return fmt.Sprintf("authState(%d)", int(s))
}

// akeKeyID is the key id we give the DH key used in the AKE; the data
// phase then starts with our_keyid = 2, as libotr does.
const akeKeyID = 1

// akeKeys are the values derived from the AKE shared secret
// (Protocol-v3.html, "Computing AES keys, MAC keys, and the secure session
// id").
type akeKeys struct {
	ssid          [8]byte
	c, cPrime     [16]byte
	m1, m2        [32]byte
	m1Prime, m2Pr [32]byte
}

// deriveAKEKeys computes ssid, c, c', m1, m2, m1', m2' from secbytes.
func deriveAKEKeys(secbytes []byte) *akeKeys {
	h2 := func(b byte) [32]byte {
		h := sha256.New()
		h.Write([]byte{b})
		h.Write(secbytes)
		var out [32]byte
		h.Sum(out[:0])
		return out
	}
	k := &akeKeys{}
	s := h2(0x00)
	copy(k.ssid[:], s[:8])
	c := h2(0x01)
	copy(k.c[:], c[:16])
	copy(k.cPrime[:], c[16:])
	k.m1, k.m2, k.m1Prime, k.m2Pr = h2(0x02), h2(0x03), h2(0x04), h2(0x05)
	wipe(c[:])
	return k
}

// wipe forgets the derived keys.
func (k *akeKeys) wipe() {
	if k == nil {
		return
	}
	wipe(k.c[:])
	wipe(k.cPrime[:])
	wipe(k.m1[:])
	wipe(k.m2[:])
	wipe(k.m1Prime[:])
	wipe(k.m2Pr[:])
}

// akeResult is what a completed AKE hands to the data phase.
type akeResult struct {
	version         uint16
	ourKey          *dhKeyPair // keyid akeKeyID
	theirKeyID      uint32
	theirY          *big.Int
	theirPub        *publicKey
	ssid            [8]byte
	weSentRevealSig bool
}

// ake runs the authenticated key exchange with one peer instance
// (Protocol-v3.html, "Authenticated Key Exchange" and the "Receiving a
// D-H Commit/Key/Reveal Signature/Signature Message" rules). It holds the
// state of whichever role we play and the last message we sent in each
// state, for retransmission.
type ake struct {
	state   authState
	version uint16
	started time.Time

	our    *dhKeyPair // x (initiator) or y (responder)
	ourMPI []byte     // MPI(g^our)

	// Initiator side.
	r          [16]byte
	commit     *dhCommitMsg
	ourHashGx  [32]byte
	theirGy    *big.Int
	revealSig  *revealSigMsg
	keys       *akeKeys
	theirGyMPI []byte

	// Responder side.
	encGx  []byte
	hashGx []byte
	dhKey  *dhKeyMsg
}

// akeEnv is what AKE steps need from their conversation.
type akeEnv struct {
	gr   *group
	rand io.Reader
	key  *PrivateKey
	pool *DHKeyPool // may be nil
}

// reset forgets every AKE secret and returns to NONE. A nil *ake is
// already NONE.
func (a *ake) reset() {
	if a == nil {
		return
	}
	a.our.wipe()
	a.keys.wipe()
	*a = ake{}
}

// active reports whether an AKE is in progress.
func (a *ake) active() bool { return a != nil && a.state != authNone }

// startCommit begins an AKE as initiator and returns the D-H Commit
// message; the caller fills in the instance tags.
func (a *ake) startCommit(env akeEnv, version uint16, now time.Time) (*dhCommitMsg, error) {
	a.reset()
	x, err := env.newDHKey()
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(env.rand, a.r[:]); err != nil {
		x.wipe()
		return nil, fmt.Errorf("otrcore: reading randomness for the AKE: %w", err)
	}
	a.our = x
	a.ourMPI = mpiBytes(x.public(env.gr))
	enc := make([]byte, len(a.ourMPI))
	aesCTRZero(a.r[:], enc, a.ourMPI)
	a.ourHashGx = sha256.Sum256(a.ourMPI)
	a.commit = &dhCommitMsg{msgHeader: msgHeader{version: version, msgType: msgDHCommit}, encGx: enc, hashGx: append([]byte(nil), a.ourHashGx[:]...)}
	a.state = authAwaitingDHKey
	a.version = version
	a.started = now
	return a.commit, nil
}

// aesCTRZero encrypts src into dst with AES-128-CTR under key and an
// all-zero initial counter, as the AKE does.
func aesCTRZero(key, dst, src []byte) {
	block, err := aes.NewCipher(key)
	if err != nil {
		// key is always 16 bytes here; r's length is checked on receipt.
		panic("otrcore: AKE AES key: " + err.Error())
	}
	var iv [aes.BlockSize]byte
	cipher.NewCTR(block, iv[:]).XORKeyStream(dst, src)
}

// replyDHKey moves to AWAITING_REVEALSIG with a fresh y and returns the
// D-H Key message.
func (a *ake) replyDHKey(env akeEnv, m *dhCommitMsg, now time.Time) (*dhKeyMsg, error) {
	a.reset()
	y, err := env.newDHKey()
	if err != nil {
		return nil, err
	}
	a.our = y
	a.ourMPI = mpiBytes(y.public(env.gr))
	a.encGx = m.encGx
	a.hashGx = m.hashGx
	a.dhKey = &dhKeyMsg{msgHeader: msgHeader{version: m.version, msgType: msgDHKey}, gy: y.public(env.gr)}
	a.state = authAwaitingRevealSig
	a.version = m.version
	a.started = now
	return a.dhKey, nil
}

// handleCommit applies "Receiving a D-H Commit Message". It returns the
// message to send (a D-H Key, or our own D-H Commit again), if any.
func (a *ake) handleCommit(env akeEnv, m *dhCommitMsg, now time.Time) (akeMessage, error) {
	switch a.state {
	case authAwaitingDHKey:
		if a.version == m.version && bytes.Compare(a.ourHashGx[:], m.hashGx) > 0 {
			// Ours wins the collision: ignore theirs and resend our commit.
			return a.commit, nil
		}
	case authAwaitingRevealSig:
		if a.version == m.version {
			// Retransmit the same D-H Key, but remember the new commit.
			a.encGx = m.encGx
			a.hashGx = m.hashGx
			return a.dhKey, nil
		}
	}
	// NONE, AWAITING_SIG, or a commit of another version.
	k, err := a.replyDHKey(env, m, now)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return k, nil
}

// errReflected reports our own DH public key coming back to us.
var errReflected = errors.New("otrcore: the peer sent back our own DH key (reflection)")

// handleDHKey applies "Receiving a D-H Key Message". It returns the Reveal
// Signature message to send, or nil when the message is ignored.
func (a *ake) handleDHKey(env akeEnv, m *dhKeyMsg) (*revealSigMsg, error) {
	switch a.state {
	case authAwaitingDHKey:
		if m.version != a.version {
			return nil, nil
		}
		if err := env.gr.checkElement(m.gy); err != nil {
			return nil, fmt.Errorf("%w: g^y of a D-H Key", err)
		}
		if m.gy.Cmp(a.our.public(env.gr)) == 0 {
			return nil, errReflected
		}
		secbytes := a.our.sharedSecret(env.gr, m.gy)
		a.keys = deriveAKEKeys(secbytes)
		wipe(secbytes)
		a.theirGy = m.gy
		a.theirGyMPI = mpiBytes(m.gy)
		encSig, mac, err := a.signedPart(env, a.keys.m1[:], a.keys.m2[:], a.keys.c[:], a.ourMPI, a.theirGyMPI)
		if err != nil {
			return nil, err
		}
		a.revealSig = &revealSigMsg{msgHeader: msgHeader{version: a.version, msgType: msgRevealSig}, r: append([]byte(nil), a.r[:]...), encSig: encSig, mac: mac}
		a.state = authAwaitingSig
		return a.revealSig, nil
	case authAwaitingSig:
		if m.version == a.version && a.theirGy != nil && m.gy.Cmp(a.theirGy) == 0 {
			return a.revealSig, nil
		}
	}
	return nil, nil
}

// signedPart builds the encrypted X = pub, keyid, sig(M) and its MAC for
// a Reveal Signature (keys m1, m2, c; first MPI ours) or Signature message
// (m1', m2', c').
func (a *ake) signedPart(env akeEnv, macKey, mac2Key, encKey, firstMPI, secondMPI []byte) ([]byte, [20]byte, error) {
	var mac [20]byte
	pub := env.key.publicKey().encoded()
	m := hmac.New(sha256.New, macKey)
	m.Write(firstMPI)
	m.Write(secondMPI)
	m.Write(pub)
	m.Write([]byte{0, 0, 0, akeKeyID})
	digest := m.Sum(nil)
	sig, err := env.key.sign(env.rand, digest)
	if err != nil {
		return nil, mac, fmt.Errorf("%w (signing the AKE)", err)
	}
	x := make([]byte, 0, len(pub)+4+len(sig))
	x = append(x, pub...)
	x = append(x, 0, 0, 0, akeKeyID)
	x = append(x, sig...)
	enc := make([]byte, len(x))
	aesCTRZero(encKey, enc, x)
	copy(mac[:], macOfData(mac2Key, enc))
	return enc, mac, nil
}

// macOfData is the first 160 bits of HMAC-SHA256 over DATA(enc), i.e. the
// encrypted signature with its four-byte length.
func macOfData(key, enc []byte) []byte {
	m := hmac.New(sha256.New, key)
	n := len(enc)
	m.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	m.Write(enc)
	return m.Sum(nil)[:20]
}

// verifySignedPart checks the MAC over the encrypted X, decrypts it and
// verifies the signature over M computed from firstMPI‖secondMPI‖pub‖keyid.
func verifySignedPart(macKey, mac2Key, encKey, encSig []byte, mac [20]byte, firstMPI, secondMPI []byte) (*publicKey, uint32, error) {
	want := macOfData(mac2Key, encSig)
	if subtle.ConstantTimeCompare(want, mac[:]) != 1 {
		return nil, 0, errors.New("otrcore: AKE signature MAC does not verify")
	}
	x := make([]byte, len(encSig))
	aesCTRZero(encKey, x, encSig)
	s := cryptobyte.String(x)
	var pub publicKey
	var keyID uint32
	if !readPubKey(&s, &pub) || !s.ReadUint32(&keyID) {
		return nil, 0, errors.New("otrcore: malformed AKE signature block")
	}
	if keyID == 0 {
		return nil, 0, errors.New("otrcore: AKE key id 0")
	}
	sig := []byte(s)
	m := hmac.New(sha256.New, macKey)
	m.Write(firstMPI)
	m.Write(secondMPI)
	m.Write(pub.raw)
	m.Write([]byte{byte(keyID >> 24), byte(keyID >> 16), byte(keyID >> 8), byte(keyID)})
	if !pub.verify(m.Sum(nil), sig) {
		return nil, 0, errors.New("otrcore: AKE signature does not verify")
	}
	return &pub, keyID, nil
}

// handleRevealSig applies "Receiving a Reveal Signature Message". On
// success it returns the Signature message to send and the AKE result.
func (a *ake) handleRevealSig(env akeEnv, m *revealSigMsg) (*signatureMsg, *akeResult, error) {
	if a.state != authAwaitingRevealSig || m.version != a.version {
		return nil, nil, nil
	}
	if len(m.r) != 16 {
		return nil, nil, errors.New("otrcore: Reveal Signature: r is not 16 bytes")
	}
	gxMPI := make([]byte, len(a.encGx))
	aesCTRZero(m.r, gxMPI, a.encGx)
	h := sha256.Sum256(gxMPI)
	if subtle.ConstantTimeCompare(h[:], a.hashGx) != 1 {
		return nil, nil, errors.New("otrcore: Reveal Signature: g^x does not match the committed hash")
	}
	s := cryptobyte.String(gxMPI)
	var gx *big.Int
	if !readMPI(&s, &gx) || !s.Empty() {
		return nil, nil, errors.New("otrcore: Reveal Signature: malformed g^x")
	}
	if err := env.gr.checkElement(gx); err != nil {
		return nil, nil, fmt.Errorf("%w: g^x of a Reveal Signature", err)
	}
	if gx.Cmp(a.our.public(env.gr)) == 0 {
		return nil, nil, errReflected
	}
	secbytes := a.our.sharedSecret(env.gr, gx)
	keys := deriveAKEKeys(secbytes)
	wipe(secbytes)
	defer keys.wipe()
	pub, keyID, err := verifySignedPart(keys.m1[:], keys.m2[:], keys.c[:], m.encSig, m.mac, gxMPI, a.ourMPI)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (Reveal Signature)", err)
	}
	encSig, mac, err := a.signedPart(env, keys.m1Prime[:], keys.m2Pr[:], keys.cPrime[:], a.ourMPI, gxMPI)
	if err != nil {
		return nil, nil, err
	}
	sig := &signatureMsg{msgHeader: msgHeader{version: a.version, msgType: msgSignature}, encSig: encSig, mac: mac}
	res := &akeResult{version: a.version, ourKey: a.our, theirKeyID: keyID, theirY: gx, theirPub: pub, ssid: keys.ssid}
	a.our = nil // handed over to the data phase
	a.reset()
	return sig, res, nil
}

// handleSig applies "Receiving a Signature Message"; it returns the AKE
// result on success.
func (a *ake) handleSig(env akeEnv, m *signatureMsg) (*akeResult, error) {
	if a.state != authAwaitingSig || m.version != a.version {
		return nil, nil
	}
	pub, keyID, err := verifySignedPart(a.keys.m1Prime[:], a.keys.m2Pr[:], a.keys.cPrime[:], m.encSig, m.mac, a.theirGyMPI, a.ourMPI)
	if err != nil {
		return nil, fmt.Errorf("%w (Signature)", err)
	}
	res := &akeResult{version: a.version, ourKey: a.our, theirKeyID: keyID, theirY: a.theirGy, theirPub: pub, ssid: a.keys.ssid, weSentRevealSig: true}
	a.our = nil
	a.reset()
	return res, nil
}

// clone copies an AKE in progress, with its own copy of the DH secret, so
// that two instances answering one commit do not share (and wipe) the
// same key material.
func (a *ake) clone() ake {
	b := *a
	if a.our != nil {
		b.our = &dhKeyPair{priv: append([]byte(nil), a.our.priv...), pub: a.our.pub}
	}
	if a.keys != nil {
		k := *a.keys
		b.keys = &k
	}
	return b
}
