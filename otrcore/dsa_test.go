package otrcore

import (
	"bytes"
	"crypto/dsa" //nolint:staticcheck // OTR uses DSA
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"

	"filippo.io/bigmod"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/otr" //nolint:staticcheck // deprecated, used only as an interop peer
)

// libotrKAT is a key wireGeneratedKey by libotr 4.1.1 (otrl_privkey_generate)
// with signatures made by otrl_privkey_sign over 32-byte values, and the
// fingerprint otrl_privkey_fingerprint printed. pubkey is libotr's
// pubkey_data: PUBKEY without the type field.
var libotrKAT = struct {
	pubkey, x, fingerprint string
	sigs                   [][2]string // digest, signature
}{
	pubkey: "000000808edfc80da863a44bbd09390e4123f9df644eca0750c9764920522452" +
		"8f38c334ca2df41e62d06604986c717d2be25ca8653417b302bfaf2ef3c78c21" +
		"a5097b3a7ff75b3af9d3a197f5f4b74cb0bbc969c0a0fc882923ffffd47e1b34" +
		"b78c46ba80f3db1c9c97a1430fe8b7e23acb1bf1f349334b4edbfb91129363b2" +
		"85704c4700000014f941e2b15f3c3acc967f08c8b64edf1beeca5cf700000080" +
		"7f6b324ff8ef90e49851dba7513d31239ee52dfb81a8740a117aca43b123d1b7" +
		"3caf2dc9564b751aef4e2c85de16ba070839217a62185e4b9242720d7cb3aea5" +
		"a8c91ec69b408ee2eab573893c90f9cc077e171394849f97466d16b31e743a1e" +
		"1791962b6f99ced356448ac178422c1ed35f98bde01605c00b73f1a2d4c753b5" +
		"000000807fc1edc6c17996bb9394fb3f1b8097498a89e6310da4485a1750a2f7" +
		"741096098413a083ea9285870412494d5cbb10776d14a51bc48a0041e7da912f" +
		"50b9fcd48f205cf1c5e90c85fee3220de743b19e7a7486b09702665dc666556a" +
		"b4e2f4d1d7b05ab8056d2caaa5989f26f878c2d812623c9c55e0434df3835b01" +
		"aec668c3",
	x:           "af3f47da6added8bd15a1cfc21bd93bb15f7271b",
	fingerprint: "C4E479B3 4E3C6F1B 900BB7B7 33A0367A E3100431",
	sigs: [][2]string{
		{"fff8f1eae3dcd5cec7c0b9b2aba49d968f88817a736c655e575049423b342d26",
			"b525d5bf7c644b82a61e4b5775be4cc19b0b6b635e713004509bf15ab0414398f26094366a03046d"},
		{"fef7f0e9e2dbd4cdc6bfb8b1aaa39c958e878079726b645d564f48413a332c25",
			"9627f84b1ed81f158b4c3f691c0bc811e965c58d6effad2fc7e8a3425285500317c02cd0d34772d5"},
		{"fdf6efe8e1dad3ccc5beb7b0a9a29b948d867f78716a635c554e474039322b24",
			"38f0f9eef9d487199802c69ed2f6ff5f26c7c29e063ae90ed361909a4ae069945d0b7fad3b264d7d"},
	},
}

// fixedNonceKAT is a signature with the libotrKAT key and a fixed nonce,
// computed independently (Python integers: r = (g^k mod p) mod q,
// s = k^(q-2)·(H mod q + x·r) mod q with H the 32-byte digest as an
// integer) and accepted by libotr's otrl_privkey_verify. sigTruncated
// uses the FIPS 186 truncation of H to 160 bits instead; libotr rejects it.
var fixedNonceKAT = struct {
	k, digest, sig, sigTruncated string
}{
	k:            "0123456789abcdef0123456789abcdef01234567",
	digest:       "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
	sig:          "6ee474ba709db89c9cf1a4312021d1384bf76665ad26598486c862875ef9d66f62498473e926a074",
	sigTruncated: "6ee474ba709db89c9cf1a4312021d1384bf76665cae2a4abddf912876b04d1d453734ccb48914707",
}

// katKey returns the libotr known-answer key as a PrivateKey and as a
// decoded publicKey.
func katKey(t testing.TB) (*PrivateKey, *publicKey) {
	t.Helper()
	raw := append([]byte{0, 0}, wireHex(t, libotrKAT.pubkey)...)
	s := cryptobyte.String(raw)
	var pk publicKey
	if !readPubKey(&s, &pk) || !s.Empty() {
		t.Fatal("readPubKey refused libotr's public key")
	}
	priv, err := NewPrivateKey(&dsa.PrivateKey{
		PublicKey: dsa.PublicKey{Parameters: dsa.Parameters{P: pk.p, Q: pk.q, G: pk.g}, Y: pk.y},
		X:         new(big.Int).SetBytes(wireHex(t, libotrKAT.x)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return priv, &pk
}

func TestLibotrKeyKAT(t *testing.T) {
	priv, pk := katKey(t)
	raw := append([]byte{0, 0}, wireHex(t, libotrKAT.pubkey)...)
	if !bytes.Equal(pk.raw, raw) || !bytes.Equal(priv.publicKey().raw, raw) || !bytes.Equal(encodePubKey(pk), raw) {
		t.Error("PUBKEY bytes differ from libotr's")
	}
	want, err := ParseFingerprint(libotrKAT.fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if pk.fingerprint() != want || priv.Fingerprint() != want || priv.Fingerprint().String() != libotrKAT.fingerprint {
		t.Errorf("fingerprint %s, libotr %s", priv.Fingerprint(), libotrKAT.fingerprint)
	}
	for i, c := range libotrKAT.sigs {
		digest, sig := wireHex(t, c[0]), wireHex(t, c[1])
		if !pk.verify(digest, sig) || !priv.publicKey().verify(digest, sig) {
			t.Errorf("libotr signature %d does not verify", i)
		}
		// crypto/dsa.Verify agrees with libotr on the 32-byte input.
		r, s := new(big.Int).SetBytes(sig[:20]), new(big.Int).SetBytes(sig[20:])
		if !dsa.Verify(&priv.DSA().PublicKey, digest, r, s) {
			t.Errorf("crypto/dsa rejects libotr signature %d", i)
		}
		for j := range sig {
			bad := bytes.Clone(sig)
			bad[j] ^= 0x10
			if pk.verify(digest, bad) {
				t.Fatalf("signature %d with byte %d flipped verifies", i, j)
			}
		}
		bad := bytes.Clone(digest)
		bad[31] ^= 1
		if pk.verify(bad, sig) {
			t.Errorf("signature %d verifies another digest", i)
		}
		for _, l := range []int{0, 39, 41} {
			if pk.verify(digest, append(bytes.Clone(sig), make([]byte, 1)...)[:l]) {
				t.Errorf("%d-byte signature accepted", l)
			}
		}
	}
}

// TestFixedNonceKAT pins the signing arithmetic: the 32-byte value is
// reduced mod q, not truncated, and crypto/dsa.Verify (which does not
// truncate) agrees.
func TestFixedNonceKAT(t *testing.T) {
	priv, pk := katKey(t)
	nonce, err := bigmod.NewNat().SetBytes(wireHex(t, fixedNonceKAT.k), priv.qMod)
	if err != nil {
		t.Fatal(err)
	}
	digest := wireHex(t, fixedNonceKAT.digest)
	if new(big.Int).SetBytes(digest).Cmp(priv.q) <= 0 {
		t.Fatal("the digest must exceed q for this test")
	}
	sig, ok, err := priv.signWithNonce(nonce, digest)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if hex.EncodeToString(sig) != fixedNonceKAT.sig {
		t.Errorf("signature %x\nwant      %s", sig, fixedNonceKAT.sig)
	}
	if !pk.verify(digest, sig) {
		t.Error("our verify rejects the reduced signature")
	}
	trunc := wireHex(t, fixedNonceKAT.sigTruncated)
	if pk.verify(digest, trunc) {
		t.Error("our verify accepts the truncated-hash signature")
	}
	pub := &priv.DSA().PublicKey
	r, s := new(big.Int).SetBytes(trunc[:20]), new(big.Int).SetBytes(trunc[20:])
	if dsa.Verify(pub, digest, r, s) {
		t.Error("crypto/dsa.Verify truncates the hash")
	}
	if !dsa.Verify(pub, digest[:20], r, s) {
		t.Error("truncated signature does not verify over the truncated hash")
	}
	// Reduction: a digest and the same value mod q are the same message.
	reduced := new(big.Int).Mod(new(big.Int).SetBytes(digest), priv.q).Bytes()
	if !pk.verify(reduced, sig) {
		t.Error("signature does not verify over H mod q")
	}
}

func TestSignVerify(t *testing.T) {
	priv, pk := katKey(t)
	pub := &priv.DSA().PublicKey
	for i := 0; i < 50; i++ {
		digest := make([]byte, 32)
		crand.Read(digest)
		if i == 0 {
			for j := range digest {
				digest[j] = 0xff
			}
		}
		sig, err := priv.sign(crand.Reader, digest)
		if err != nil {
			t.Fatal(err)
		}
		if len(sig) != 40 {
			t.Fatalf("signature of %d bytes", len(sig))
		}
		if !pk.verify(digest, sig) {
			t.Fatal("own signature does not verify")
		}
		if !dsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:20]), new(big.Int).SetBytes(sig[20:])) {
			t.Fatal("crypto/dsa rejects our signature")
		}
	}
	// A broken (constant) randomness source must still give distinct nonces
	// for distinct digests, thanks to the hedged nonce.
	zero := bytes.NewReader(make([]byte, 1<<10))
	s1, err1 := priv.sign(zero, []byte("digest one, 32 bytes long......."))
	s2, err2 := priv.sign(zero, []byte("digest two, 32 bytes long......."))
	if err1 != nil || err2 != nil || bytes.Equal(s1[:20], s2[:20]) {
		t.Errorf("zero randomness: %v %v, r equal: %v", err1, err2, bytes.Equal(s1[:20], s2[:20]))
	}
	// Failing randomness is reported.
	if _, err := priv.sign(bytes.NewReader(nil), make([]byte, 32)); err == nil {
		t.Error("sign with an empty reader succeeded")
	}
	if _, err := priv.sign(crand.Reader, make([]byte, maxSignedDigest+1)); err == nil {
		t.Error("sign accepted an overlong value")
	}
}

// TestXCryptoOTRKeys cross-checks PUBKEY encoding, fingerprints and
// signatures with golang.org/x/crypto/otr.
func TestXCryptoOTRKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a DSA key")
	}
	var theirs otr.PrivateKey
	theirs.Generate(crand.Reader)
	enc := theirs.PublicKey.Serialize(nil)
	s := cryptobyte.String(enc)
	var pk publicKey
	if !readPubKey(&s, &pk) || !s.Empty() {
		t.Fatal("readPubKey refused x/crypto/otr's key")
	}
	if fp := pk.fingerprint(); !bytes.Equal(fp[:], theirs.PublicKey.Fingerprint()) {
		t.Error("fingerprint differs from x/crypto/otr's")
	}
	digest := bytes.Repeat([]byte{0xee}, 32)
	if !pk.verify(digest, theirs.Sign(crand.Reader, digest)) {
		t.Error("x/crypto/otr signature does not verify")
	}
	ours, err := NewPrivateKey(&theirs.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if fp := ours.Fingerprint(); !bytes.Equal(ours.publicKey().raw, enc) || !bytes.Equal(fp[:], theirs.PublicKey.Fingerprint()) {
		t.Error("imported key encodes differently")
	}
	sig, err := ours.sign(crand.Reader, digest)
	if err != nil {
		t.Fatal(err)
	}
	if rest, ok := theirs.PublicKey.Verify(digest, sig); !ok || len(rest) != 0 {
		t.Error("x/crypto/otr rejects our signature")
	}
}

var wireGeneratedKey = sync.OnceValues(func() (*PrivateKey, error) { return GeneratePrivateKey(crand.Reader) })

func TestGeneratePrivateKey(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a DSA key")
	}
	k, err := wireGeneratedKey()
	if err != nil {
		t.Fatal(err)
	}
	if k.p.BitLen() != 1024 || k.q.BitLen() != 160 {
		t.Errorf("sizes %d/%d", k.p.BitLen(), k.q.BitLen())
	}
	d := k.DSA()
	if d.X.Cmp(k.x) != 0 || d.Y.Cmp(k.y) != 0 {
		t.Error("DSA() differs")
	}
	d.X.SetInt64(1) // a copy: the key is unaffected
	if k.x.Cmp(big.NewInt(1)) == 0 {
		t.Error("DSA() aliases the key")
	}
	again, err := NewPrivateKey(k.DSA())
	if err != nil || again.Fingerprint() != k.Fingerprint() {
		t.Errorf("re-import: %v", err)
	}
	sig, err := k.sign(crand.Reader, make([]byte, 32))
	if err != nil || !k.publicKey().verify(make([]byte, 32), sig) {
		t.Errorf("wireGeneratedKey key cannot sign: %v", err)
	}
}

func TestNewPrivateKeyValidation(t *testing.T) {
	priv, _ := katKey(t)
	base := priv.DSA()
	mutate := map[string]func(k *dsa.PrivateKey){
		"nil x":      func(k *dsa.PrivateKey) { k.X = nil },
		"nil p":      func(k *dsa.PrivateKey) { k.P = nil },
		"x zero":     func(k *dsa.PrivateKey) { k.X.SetInt64(0) },
		"x = q":      func(k *dsa.PrivateKey) { k.X.Set(k.Q) },
		"x mismatch": func(k *dsa.PrivateKey) { k.X.Add(k.X, big.NewInt(1)) },
		"y mismatch": func(k *dsa.PrivateKey) { k.Y.Add(k.Y, big.NewInt(1)) },
		"g = 1":      func(k *dsa.PrivateKey) { k.G.SetInt64(1) },
		"g = p":      func(k *dsa.PrivateKey) { k.G.Set(k.P) },
		"g wrong order": func(k *dsa.PrivateKey) {
			k.G.SetInt64(2)
			k.Y.Exp(k.G, k.X, k.P)
		},
		"q 161 bits": func(k *dsa.PrivateKey) { k.Q.Lsh(k.Q, 1) },
		"q composite": func(k *dsa.PrivateKey) {
			// 2^159+1 is divisible by 3; keep q | p−1 false anyway.
			k.Q.SetBit(new(big.Int), 159, 1).Add(k.Q, big.NewInt(1))
		},
		"p 1025 bits": func(k *dsa.PrivateKey) { k.P.Lsh(k.P, 1).Add(k.P, big.NewInt(1)) },
		"p 2048 bits": func(k *dsa.PrivateKey) { k.P.Lsh(k.P, 1024).Add(k.P, big.NewInt(1)) },
	}
	for name, f := range mutate {
		k := priv.DSA()
		f(k)
		if _, err := NewPrivateKey(k); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewPrivateKey(nil); err == nil {
		t.Error("nil key accepted")
	}
	if _, err := NewPrivateKey(base); err != nil {
		t.Errorf("valid key refused: %v", err)
	}
}

func TestFingerprintFormats(t *testing.T) {
	var f Fingerprint
	for i := range f {
		f[i] = byte(0xa0 + i)
	}
	if f.String() != "A0A1A2A3 A4A5A6A7 A8A9AAAB ACADAEAF B0B1B2B3" {
		t.Errorf("String() = %q", f.String())
	}
	if f.Hex() != "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3" {
		t.Errorf("Hex() = %q", f.Hex())
	}
	for _, s := range []string{f.String(), f.Hex(), strings.ToUpper(f.Hex()), strings.ToLower(f.String()), " a0a1 a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3 "} {
		got, err := ParseFingerprint(s)
		if err != nil || got != f {
			t.Errorf("ParseFingerprint(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", f.Hex()[:39], f.Hex() + "0", strings.Replace(f.Hex(), "a", "g", 1), f.Hex()[:38] + ":b"} {
		if _, err := ParseFingerprint(s); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", s)
		}
	}
}

func TestReadPubKeyRejects(t *testing.T) {
	_, pk := katKey(t)
	enc := func(typ uint16, p, q, g, y *big.Int) []byte {
		b := cryptobyte.NewBuilder(nil)
		b.AddUint16(typ)
		for _, v := range []*big.Int{p, q, g, y} {
			addMPI(b, v)
		}
		return b.BytesOrPanic()
	}
	one := big.NewInt(1)
	bigP := new(big.Int).Lsh(one, 4096) // 4097 bits
	bigP.Add(bigP, one)
	cases := map[string][]byte{
		"type 1":     enc(1, pk.p, pk.q, pk.g, pk.y),
		"p too big":  enc(0, bigP, pk.q, pk.g, pk.y),
		"p small":    enc(0, new(big.Int).Rsh(pk.p, 600), pk.q, pk.g, pk.y),
		"p even":     enc(0, new(big.Int).Add(pk.p, one), pk.q, pk.g, pk.y),
		"q small":    enc(0, pk.p, new(big.Int).Rsh(pk.q, 1), pk.g, pk.y),
		"q even":     enc(0, pk.p, new(big.Int).Sub(pk.q, one), pk.g, pk.y),
		"q ∤ p−1":    enc(0, pk.p, new(big.Int).Add(pk.q, big.NewInt(2)), pk.g, pk.y),
		"g = 1":      enc(0, pk.p, pk.q, one, pk.y),
		"g = p":      enc(0, pk.p, pk.q, pk.p, pk.y),
		"y = 0":      enc(0, pk.p, pk.q, pk.g, big.NewInt(0)),
		"y = p":      enc(0, pk.p, pk.q, pk.g, pk.p),
		"truncated":  enc(0, pk.p, pk.q, pk.g, pk.y)[:300],
		"no y":       enc(0, pk.p, pk.q, pk.g, pk.y)[:len(pk.raw)-len(mpiBytes(pk.y))],
		"empty":      {},
		"type only":  {0, 0},
		"nonminimal": append([]byte{0, 0, 0, 0, 0, 0x81, 0}, pk.raw[6:]...),
	}
	for name, b := range cases {
		s := cryptobyte.String(b)
		var got publicKey
		if readPubKey(&s, &got) {
			t.Errorf("%s: accepted", name)
		}
		if len(s) != len(b) {
			t.Errorf("%s: input consumed on failure", name)
		}
	}
	// Trailing data is left for the caller (the key id follows in X_B).
	b := append(bytes.Clone(pk.raw), 0, 0, 0, 1)
	s := cryptobyte.String(b)
	var got publicKey
	var keyID uint32
	if !readPubKey(&s, &got) || !s.ReadUint32(&keyID) || keyID != 1 || !bytes.Equal(got.raw, pk.raw) {
		t.Error("PUBKEY followed by a key id")
	}
}

// TestSignConcurrent signs from several goroutines with one key; run with
// -race to check that PrivateKey is safe for concurrent use.
func TestSignConcurrent(t *testing.T) {
	priv, pk := katKey(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			digest := bytes.Repeat([]byte{byte(i)}, 32)
			sig, err := priv.sign(crand.Reader, digest)
			if err == nil && !pk.verify(digest, sig) {
				err = errors.New("signature does not verify")
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
