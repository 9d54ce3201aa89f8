package otrcore

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"

	"filippo.io/bigmod"
)

// Test fixtures: two fingerprints and an ssid.
var (
	smpFPA  = [20]byte{0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	smpFPB  = [20]byte{0xbb, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	smpSSID = [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
)

// smpSecretsFor returns the initiator's and responder's smpSecret values for
// the user secrets sa (Alice, initiator, fingerprint A) and sb (Bob,
// responder, fingerprint B), each computed the way its side must.
func smpSecretsFor(sa, sb string) (x, y []byte) {
	x = smpSecret(smpFPA, smpFPB, smpSSID, []byte(sa)) // initiator: (ours, theirs)
	y = smpSecret(smpFPA, smpFPB, smpSSID, []byte(sb)) // responder: (theirs, ours)
	return x, y
}

// smpDetReader is a deterministic byte stream (SHA-256 in counter mode), so
// that a test can replay exactly the randomness an smpState consumed.
type smpDetReader struct {
	seed string
	ctr  uint64
	buf  []byte
}

// Read fills p from the stream.
func (d *smpDetReader) Read(p []byte) (int, error) {
	for i := range p {
		if len(d.buf) == 0 {
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], d.ctr)
			d.ctr++
			h := sha256.Sum256(append([]byte(d.seed), c[:]...))
			d.buf = h[:]
		}
		p[i] = d.buf[0]
		d.buf = d.buf[1:]
	}
	return len(p), nil
}

// smpErrReader fails every read.
type smpErrReader struct{}

// Read always fails.
func (smpErrReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

// smpMustOne asserts that a reply holds exactly one TLV of type typ.
func smpMustOne(t *testing.T, reply []tlv, typ uint16) tlv {
	t.Helper()
	if len(reply) != 1 || reply[0].typ != typ {
		t.Fatalf("reply = %v, want one TLV %d", smpTLVTypes(reply), typ)
	}
	return reply[0]
}

// smpTLVTypes lists the types of a reply for error messages.
func smpTLVTypes(ts []tlv) []uint16 {
	var out []uint16
	for _, t := range ts {
		out = append(out, t.typ)
	}
	return out
}

// smpRun is the transcript of one protocol run between two states.
type smpRun struct {
	m1, m2, m3, m4 tlv
	req            smpEvent // Bob's event for message 1
	prog           smpEvent // Alice's event for message 2
	bob, alice     smpEvent // the final events
}

// smpRunBoth runs the whole protocol between alice (initiator) and bob.
func smpRunBoth(t *testing.T, alice, bob *smpState, ra, rb io.Reader, x, y []byte, question string, hasQ bool) smpRun {
	t.Helper()
	var r smpRun
	var err error
	if r.m1, err = alice.start(ra, x, question, hasQ); err != nil {
		t.Fatalf("start: %v", err)
	}
	var reply []tlv
	reply, r.req = bob.receive(rb, r.m1)
	if len(reply) != 0 || r.req.kind != smpRequest {
		t.Fatalf("message 1: reply %v, event %v (%v)", smpTLVTypes(reply), r.req.kind, r.req.err)
	}
	if !bob.awaitingSecret() || !bob.inProgress() {
		t.Fatal("bob not awaiting secret")
	}
	if r.m2, err = bob.respond(rb, y); err != nil {
		t.Fatalf("respond: %v", err)
	}
	if r.m2.typ != tlvSMP2 || bob.awaitingSecret() || !bob.inProgress() {
		t.Fatalf("after respond: typ %d, awaiting %v", r.m2.typ, bob.awaitingSecret())
	}
	reply, r.prog = alice.receive(ra, r.m2)
	if r.prog.kind != smpInProgress {
		t.Fatalf("message 2: event %v (%v)", r.prog.kind, r.prog.err)
	}
	r.m3 = smpMustOne(t, reply, tlvSMP3)
	reply, r.bob = bob.receive(rb, r.m3)
	r.m4 = smpMustOne(t, reply, tlvSMP4)
	reply, r.alice = alice.receive(ra, r.m4)
	if len(reply) != 0 {
		t.Fatalf("message 4: unexpected reply %v", smpTLVTypes(reply))
	}
	if alice.inProgress() || bob.inProgress() {
		t.Fatal("state not reset after the run")
	}
	return r
}

// TestSMPSecret checks smpSecret against the spec's concatenation.
func TestSMPSecret(t *testing.T) {
	got := smpSecret(smpFPA, smpFPB, smpSSID, []byte("hunter2"))
	var in []byte
	in = append(in, 1)
	in = append(in, smpFPA[:]...)
	in = append(in, smpFPB[:]...)
	in = append(in, smpSSID[:]...)
	in = append(in, "hunter2"...)
	want := sha256.Sum256(in)
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("smpSecret = %x, want %x", got, want)
	}
	if bytes.Equal(got, smpSecret(smpFPB, smpFPA, smpSSID, []byte("hunter2"))) {
		t.Fatal("fingerprint order must matter")
	}
}

// TestSMPFullRun runs the protocol in-process for matching and differing
// secrets, with and without a question, and checks events and trust flags.
func TestSMPFullRun(t *testing.T) {
	for _, tc := range []struct {
		name         string
		sa, sb       string
		question     string
		hasQ         bool
		equal        bool
		bobVerified  bool
		aliceVerifed bool
	}{
		{"match", "pw", "pw", "", false, true, true, true},
		{"mismatch", "pw", "pW", "", false, false, false, false},
		{"match-question", "blue", "blue", "Favourite colour?", true, true, false, true},
		{"mismatch-question", "blue", "red", "Favourite colour?", true, false, false, false},
		{"empty-question", "x", "x", "", true, true, false, true},
		{"empty-secret", "", "", "", false, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var alice, bob smpState
			x, y := smpSecretsFor(tc.sa, tc.sb)
			r := smpRunBoth(t, &alice, &bob, rand.Reader, rand.Reader, x, y, tc.question, tc.hasQ)
			if r.req.hasQuestion != tc.hasQ || r.req.question != tc.question || r.req.weInitiated {
				t.Errorf("request event = %+v", r.req)
			}
			wantTyp := tlvSMP1
			if tc.hasQ {
				wantTyp = tlvSMP1Q
			}
			if r.m1.typ != wantTyp {
				t.Errorf("message 1 type %d, want %d", r.m1.typ, wantTyp)
			}
			want := smpFailed
			if tc.equal {
				want = smpSucceeded
			}
			if r.alice.kind != want || r.bob.kind != want {
				t.Fatalf("alice %v (%v), bob %v (%v), want %v", r.alice.kind, r.alice.err, r.bob.kind, r.bob.err, want)
			}
			if !r.alice.weInitiated || r.bob.weInitiated || !r.prog.weInitiated {
				t.Errorf("weInitiated wrong: alice %v bob %v", r.alice.weInitiated, r.bob.weInitiated)
			}
			if r.alice.verified != tc.aliceVerifed || r.bob.verified != tc.bobVerified {
				t.Errorf("verified: alice %v bob %v, want %v %v", r.alice.verified, r.bob.verified, tc.aliceVerifed, tc.bobVerified)
			}
			if r.bob.hasQuestion != tc.hasQ || r.bob.question != tc.question {
				t.Errorf("bob's final event lost the question: %+v", r.bob)
			}
			if r.alice.err != nil || r.bob.err != nil {
				t.Errorf("errors: %v, %v", r.alice.err, r.bob.err)
			}
		})
	}
}

// TestSMPSwappedFingerprintsFail shows why the responder must swap the fingerprint order.
func TestSMPSwappedFingerprintsFail(t *testing.T) {
	// A responder that forgets to swap the fingerprints computes a
	// different secret, so the run fails even with the same answer.
	var alice, bob smpState
	x := smpSecret(smpFPA, smpFPB, smpSSID, []byte("pw"))
	y := smpSecret(smpFPB, smpFPA, smpSSID, []byte("pw"))
	r := smpRunBoth(t, &alice, &bob, rand.Reader, rand.Reader, x, y, "", false)
	if r.alice.kind != smpFailed || r.bob.kind != smpFailed {
		t.Fatalf("got %v / %v", r.alice.kind, r.bob.kind)
	}
}

// TestSMPRepeatedRuns reuses states across runs and roles.
func TestSMPRepeatedRuns(t *testing.T) {
	// The same pair of states can run again after success and failure,
	// with roles swapped.
	var a, b smpState
	x, y := smpSecretsFor("s", "s")
	smpRunBoth(t, &a, &b, rand.Reader, rand.Reader, x, y, "", false)
	r := smpRunBoth(t, &b, &a, rand.Reader, rand.Reader, x, y, "q", true)
	if r.alice.kind != smpSucceeded || r.bob.kind != smpSucceeded {
		t.Fatalf("second run: %v %v", r.alice.kind, r.bob.kind)
	}
	x2, y2 := smpSecretsFor("s", "t")
	r = smpRunBoth(t, &a, &b, rand.Reader, rand.Reader, x2, y2, "", false)
	if r.alice.kind != smpFailed {
		t.Fatalf("third run: %v", r.alice.kind)
	}
	r = smpRunBoth(t, &a, &b, rand.Reader, rand.Reader, x, y, "", false)
	if r.alice.kind != smpSucceeded {
		t.Fatalf("fourth run: %v", r.alice.kind)
	}
}

// --- independent reference of the spec with math/big ---

// smpRef implements the spec's formulas literally with math/big (explicit
// g2 and g3, unreduced 1536-bit random exponents as libotr uses), to
// cross-check the wire format and the arithmetic of smpState.
type smpRef struct {
	p, q, g *big.Int
}

// newSMPRef builds the reference from the spec's prime.
func newSMPRef() *smpRef {
	p, _ := new(big.Int).SetString(dhPrimeHex, 16)
	q := new(big.Int).Rsh(p, 1)
	return &smpRef{p: p, q: q, g: big.NewInt(2)}
}

// rand reads a 1536-bit exponent, unreduced, as libotr does.
func (r *smpRef) rand(rd io.Reader) *big.Int {
	b := make([]byte, 192)
	if _, err := io.ReadFull(rd, b); err != nil {
		panic(err)
	}
	return new(big.Int).SetBytes(b)
}

// exp returns b^e mod p.
func (r *smpRef) exp(b, e *big.Int) *big.Int { return new(big.Int).Exp(b, e, r.p) }

// mul returns a·b mod p.
func (r *smpRef) mul(a, b *big.Int) *big.Int {
	return new(big.Int).Mod(new(big.Int).Mul(a, b), r.p)
}

// div returns a/b mod p.
func (r *smpRef) div(a, b *big.Int) *big.Int {
	return r.mul(a, new(big.Int).ModInverse(b, r.p))
}

// d returns rr − e·c mod q.
func (r *smpRef) d(rr, e, c *big.Int) *big.Int {
	t := new(big.Int).Mul(e, c)
	return t.Sub(rr, t).Mod(t, r.q)
}

// smpRefMPI encodes v as a minimal MPI.
func smpRefMPI(v *big.Int) []byte {
	b := v.Bytes()
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

// hash is SHA-256(version ‖ MPI(a) [‖ MPI(b)]) as an integer.
func (r *smpRef) hash(version byte, vs ...*big.Int) *big.Int {
	in := []byte{version}
	for _, v := range vs {
		in = append(in, smpRefMPI(v)...)
	}
	h := sha256.Sum256(in)
	return new(big.Int).SetBytes(h[:])
}

// smpRefEncode encodes an SMP body: count, then MPIs.
func smpRefEncode(vs ...*big.Int) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(vs)))
	for _, v := range vs {
		b = append(b, smpRefMPI(v)...)
	}
	return b
}

// smpRefDecode decodes an SMP body of n MPIs (test input is trusted).
func smpRefDecode(t *testing.T, b []byte, n int) []*big.Int {
	t.Helper()
	if len(b) < 4 || binary.BigEndian.Uint32(b) != uint32(n) {
		t.Fatalf("bad count")
	}
	b = b[4:]
	var out []*big.Int
	for range n {
		l := binary.BigEndian.Uint32(b)
		out = append(out, new(big.Int).SetBytes(b[4:4+l]))
		b = b[4+l:]
	}
	if len(b) != 0 {
		t.Fatalf("trailing bytes")
	}
	return out
}

// TestSMPMatchesReference replays a run's randomness through a literal
// math/big implementation of the spec and requires byte-identical messages.
func TestSMPMatchesReference(t *testing.T) {
	for _, same := range []bool{true, false} {
		ref := newSMPRef()
		var alice, bob smpState
		ra, rb := &smpDetReader{seed: "alice"}, &smpDetReader{seed: "bob"}
		refA, refB := &smpDetReader{seed: "alice"}, &smpDetReader{seed: "bob"}
		sb := "pw"
		if !same {
			sb = "other"
		}
		xs, ys := smpSecretsFor("pw", sb)
		x, y := new(big.Int).SetBytes(xs), new(big.Int).SetBytes(ys)
		const question = "Où?"
		run := smpRunBoth(t, &alice, &bob, ra, rb, xs, ys, question, true)

		// Message 1 (Alice).
		a2, a3, r2, r3 := ref.rand(refA), ref.rand(refA), ref.rand(refA), ref.rand(refA)
		g2a, g3a := ref.exp(ref.g, a2), ref.exp(ref.g, a3)
		c2 := ref.hash(1, ref.exp(ref.g, r2))
		c3 := ref.hash(2, ref.exp(ref.g, r3))
		want1 := append([]byte(question+"\x00"), smpRefEncode(g2a, c2, ref.d(r2, a2, c2), g3a, c3, ref.d(r3, a3, c3))...)
		if run.m1.typ != 7 || !bytes.Equal(run.m1.value, want1) {
			t.Fatalf("message 1 differs from the reference")
		}

		// Message 2 (Bob): verify Alice's proofs per spec, then build.
		if ref.hash(1, ref.mul(ref.exp(ref.g, ref.d(r2, a2, c2)), ref.exp(g2a, c2))).Cmp(c2) != 0 {
			t.Fatal("reference cannot verify its own proof")
		}
		b2, b3 := ref.rand(refB), ref.rand(refB)
		br2, br3, br4, br5, br6 := ref.rand(refB), ref.rand(refB), ref.rand(refB), ref.rand(refB), ref.rand(refB)
		g2b, g3b := ref.exp(ref.g, b2), ref.exp(ref.g, b3)
		bc2 := ref.hash(3, ref.exp(ref.g, br2))
		bc3 := ref.hash(4, ref.exp(ref.g, br3))
		g2, g3 := ref.exp(g2a, b2), ref.exp(g3a, b3)
		pb := ref.exp(g3, br4)
		qb := ref.mul(ref.exp(ref.g, br4), ref.exp(g2, y))
		cp := ref.hash(5, ref.exp(g3, br5), ref.mul(ref.exp(ref.g, br5), ref.exp(g2, br6)))
		want2 := smpRefEncode(g2b, bc2, ref.d(br2, b2, bc2), g3b, bc3, ref.d(br3, b3, bc3), pb, qb, cp,
			ref.d(br5, br4, cp), ref.d(br6, y, cp))
		if run.m2.typ != 3 || !bytes.Equal(run.m2.value, want2) {
			t.Fatalf("message 2 differs from the reference")
		}
		// Alice's check of cP, literally: g3^D5 Pb^cP, g1^D5 g2^D6 Qb^cP.
		v := smpRefDecode(t, run.m2.value, 11)
		ag2, ag3 := ref.exp(v[0], a2), ref.exp(v[3], a3)
		if ag2.Cmp(g2) != 0 || ag3.Cmp(g3) != 0 {
			t.Fatal("shared generators differ")
		}
		if ref.hash(5, ref.mul(ref.exp(ag3, v[9]), ref.exp(v[6], v[8])),
			ref.mul(ref.mul(ref.exp(ref.g, v[9]), ref.exp(ag2, v[10])), ref.exp(v[7], v[8]))).Cmp(v[8]) != 0 {
			t.Fatal("cP of message 2 does not verify literally")
		}

		// Message 3 (Alice).
		ar4, ar5, ar6, ar7 := ref.rand(refA), ref.rand(refA), ref.rand(refA), ref.rand(refA)
		pa := ref.exp(g3, ar4)
		qa := ref.mul(ref.exp(ref.g, ar4), ref.exp(g2, x))
		cpa := ref.hash(6, ref.exp(g3, ar5), ref.mul(ref.exp(ref.g, ar5), ref.exp(g2, ar6)))
		qab := ref.div(qa, qb)
		ra3 := ref.exp(qab, a3)
		cr := ref.hash(7, ref.exp(ref.g, ar7), ref.exp(qab, ar7))
		want3 := smpRefEncode(pa, qa, cpa, ref.d(ar5, ar4, cpa), ref.d(ar6, x, cpa), ra3, cr, ref.d(ar7, a3, cr))
		if run.m3.typ != 4 || !bytes.Equal(run.m3.value, want3) {
			t.Fatalf("message 3 differs from the reference")
		}
		// Bob's check of cR, literally: g1^D7 g3a^cR, (Qa/Qb)^D7 Ra^cR.
		v = smpRefDecode(t, run.m3.value, 8)
		if ref.hash(7, ref.mul(ref.exp(ref.g, v[7]), ref.exp(g3a, v[6])),
			ref.mul(ref.exp(qab, v[7]), ref.exp(v[5], v[6]))).Cmp(v[6]) != 0 {
			t.Fatal("cR of message 3 does not verify literally")
		}

		// Message 4 (Bob).
		br7 := ref.rand(refB)
		rb4 := ref.exp(qab, b3)
		crb := ref.hash(8, ref.exp(ref.g, br7), ref.exp(qab, br7))
		want4 := smpRefEncode(rb4, crb, ref.d(br7, b3, crb))
		if run.m4.typ != 5 || !bytes.Equal(run.m4.value, want4) {
			t.Fatalf("message 4 differs from the reference")
		}
		equal := ref.div(pa, pb).Cmp(ref.exp(rb4, a3)) == 0
		if equal != same {
			t.Fatalf("reference result %v, want %v", equal, same)
		}
		want := smpFailed
		if same {
			want = smpSucceeded
		}
		if run.alice.kind != want || run.bob.kind != want {
			t.Fatalf("events %v/%v, want %v", run.alice.kind, run.bob.kind, want)
		}
	}
}

// --- states at each stage, for negative tests and fuzzing ---

// smpCloneNat copies n (nil stays nil).
func smpCloneNat(n *bigmod.Nat, m *bigmod.Modulus) *bigmod.Nat {
	if n == nil {
		return nil
	}
	return bigmod.NewNat().Mod(n, m)
}

// clone deep-copies an smpState.
func (s *smpState) clone() *smpState {
	gr := otrGroup()
	c := *s
	c.x, c.e2, c.e3 = smpCloneNat(s.x, gr.qMod), smpCloneNat(s.e2, gr.qMod), smpCloneNat(s.e3, gr.qMod)
	c.g2o, c.g3o = smpCloneNat(s.g2o, gr.pMod), smpCloneNat(s.g3o, gr.pMod)
	c.ownP, c.ownQ = smpCloneNat(s.ownP, gr.pMod), smpCloneNat(s.ownQ, gr.pMod)
	c.pRatio, c.qRatio = smpCloneNat(s.pRatio, gr.pMod), smpCloneNat(s.qRatio, gr.pMod)
	return &c
}

// smpStages holds one honest run frozen at every stage: the state of the
// side about to receive each message, and that message.
type smpStages struct {
	idle     *smpState // Bob before message 1 (EXPECT1)
	awaiting *smpState // Bob after message 1, before respond
	exp2     *smpState // Alice after start (EXPECT2)
	exp3     *smpState // Bob after respond (EXPECT3)
	exp4     *smpState // Alice after message 3 (EXPECT4)
	m1, m2   tlv
	m3, m4   tlv
}

// smpBuildStages runs the protocol once, snapshotting every state. The
// randomness is deterministic so that every fuzzing worker process builds
// the same messages as the coordinator that recorded the seeds.
func smpBuildStages(tb testing.TB, question string, hasQ bool) *smpStages {
	tb.Helper()
	var alice, bob smpState
	ra, rb := &smpDetReader{seed: "stages-alice"}, &smpDetReader{seed: "stages-bob"}
	st := &smpStages{idle: bob.clone()}
	x, y := smpSecretsFor("pw", "pw")
	var err error
	if st.m1, err = alice.start(ra, x, question, hasQ); err != nil {
		tb.Fatal(err)
	}
	st.exp2 = alice.clone()
	if _, ev := bob.receive(rb, st.m1); ev.kind != smpRequest {
		tb.Fatalf("message 1: %v %v", ev.kind, ev.err)
	}
	st.awaiting = bob.clone()
	if st.m2, err = bob.respond(rb, y); err != nil {
		tb.Fatal(err)
	}
	st.exp3 = bob.clone()
	reply, ev := alice.receive(ra, st.m2)
	if ev.kind != smpInProgress || len(reply) != 1 {
		tb.Fatalf("message 2: %v %v", ev.kind, ev.err)
	}
	st.m3 = reply[0]
	st.exp4 = alice.clone()
	reply, ev = bob.receive(rb, st.m3)
	if ev.kind != smpSucceeded || len(reply) != 1 {
		tb.Fatalf("message 3: %v %v", ev.kind, ev.err)
	}
	st.m4 = reply[0]
	return st
}

// smpStagesCache caches the snapshots shared by the tests.
var smpStagesCache *smpStages

// smpStagesFor returns a shared set of snapshots (built on first use).
func smpStagesFor(tb testing.TB) *smpStages {
	if smpStagesCache == nil {
		smpStagesCache = smpBuildStages(tb, "", false)
	}
	return smpStagesCache
}

// smpExpectAbort asserts an error outcome: reply is exactly TLV 6, the
// event has the given kind and an error matching target, and s is reset.
func smpExpectAbort(t *testing.T, s *smpState, reply []tlv, ev smpEvent, kind smpEventKind, target error) {
	t.Helper()
	smpMustOne(t, reply, tlvSMPAbort)
	if ev.kind != kind || !errors.Is(ev.err, target) {
		t.Fatalf("event %v (%v), want %v (%v)", ev.kind, ev.err, kind, target)
	}
	if s.inProgress() || s.awaitingSecret() || s.stage != smpExpect1 {
		t.Fatal("state not reset")
	}
	if *s != (smpState{}) {
		t.Fatalf("state not zeroed: %+v", s)
	}
}

// TestSMPUnexpectedMessage sends every unexpected SMP message in every
// state: TLV 6 and reset (spec).
func TestSMPUnexpectedMessage(t *testing.T) {
	st := smpStagesFor(t)
	msgs := map[uint16]tlv{tlvSMP1: st.m1, tlvSMP2: st.m2, tlvSMP3: st.m3, tlvSMP4: st.m4,
		tlvSMP1Q: {typ: tlvSMP1Q, value: append([]byte("q\x00"), st.m1.value...)}}
	for _, c := range []struct {
		name     string
		s        *smpState
		expected []uint16
	}{
		{"idle", st.idle, []uint16{tlvSMP1, tlvSMP1Q}},
		{"awaiting", st.awaiting, []uint16{tlvSMP1, tlvSMP1Q}},
		{"expect2", st.exp2, []uint16{tlvSMP2}},
		{"expect3", st.exp3, []uint16{tlvSMP3}},
		{"expect4", st.exp4, []uint16{tlvSMP4}},
	} {
		for _, typ := range []uint16{tlvSMP1, tlvSMP2, tlvSMP3, tlvSMP4, tlvSMP1Q} {
			if typ == c.expected[0] || len(c.expected) > 1 && typ == c.expected[1] {
				continue
			}
			s := c.s.clone()
			reply, ev := s.receive(rand.Reader, msgs[typ])
			t.Logf("%s + TLV %d: %v", c.name, typ, ev.err)
			smpExpectAbort(t, s, reply, ev, smpAborted, errSMPUnexpected)
		}
	}
}

// TestSMPAbortEachStage aborts at every stage, from the peer and locally.
func TestSMPAbortEachStage(t *testing.T) {
	st := smpStagesFor(t)
	for _, c := range []struct {
		name string
		s    *smpState
	}{
		{"awaiting", st.awaiting}, {"expect2", st.exp2}, {"expect3", st.exp3}, {"expect4", st.exp4},
	} {
		// The peer aborts: we report smpAborted, send nothing, reset.
		s := c.s.clone()
		wi := s.weInitiated
		reply, ev := s.receive(rand.Reader, tlv{typ: tlvSMPAbort})
		if len(reply) != 0 || ev.kind != smpAborted || ev.err != nil || ev.weInitiated != wi {
			t.Errorf("%s: peer abort gave %v %+v", c.name, smpTLVTypes(reply), ev)
		}
		if s.inProgress() {
			t.Errorf("%s: not reset after peer abort", c.name)
		}
		// We abort: TLV 6, reset.
		s = c.s.clone()
		if a := s.abort(); a.typ != tlvSMPAbort || len(a.value) != 0 {
			t.Errorf("%s: abort() = %+v", c.name, a)
		}
		if *s != (smpState{}) {
			t.Errorf("%s: abort did not reset", c.name)
		}
	}
	// An abort while idle is not reported; abort() still yields TLV 6.
	var s smpState
	if reply, ev := s.receive(rand.Reader, tlv{typ: tlvSMPAbort}); len(reply) != 0 || ev.kind != smpNone {
		t.Errorf("idle abort: %v %v", smpTLVTypes(reply), ev.kind)
	}
	if s.abort().typ != tlvSMPAbort {
		t.Error("abort() while idle must still return TLV 6")
	}
}

// TestSMPAbortMidRunThenRestart aborts live runs from either side and restarts.
func TestSMPAbortMidRunThenRestart(t *testing.T) {
	// Each side aborts at each point of a live run; the peer handles the
	// TLV 6 and a fresh run succeeds afterwards.
	x, y := smpSecretsFor("pw", "pw")
	for stop := 1; stop <= 3; stop++ {
		for _, aliceAborts := range []bool{true, false} {
			var alice, bob smpState
			m1, err := alice.start(rand.Reader, x, "", false)
			if err != nil {
				t.Fatal(err)
			}
			bob.receive(rand.Reader, m1)
			if stop >= 2 {
				m2, err := bob.respond(rand.Reader, y)
				if err != nil {
					t.Fatal(err)
				}
				reply, _ := alice.receive(rand.Reader, m2)
				if stop >= 3 {
					// Bob has not received message 3 yet; drop it.
					_ = reply
				}
			}
			from, to := &alice, &bob
			if !aliceAborts {
				from, to = &bob, &alice
			}
			reply, ev := to.receive(rand.Reader, from.abort())
			if len(reply) != 0 || ev.kind != smpAborted {
				t.Fatalf("stop %d alice %v: %v %v", stop, aliceAborts, smpTLVTypes(reply), ev.kind)
			}
			if alice.inProgress() || bob.inProgress() {
				t.Fatal("not reset")
			}
			r := smpRunBoth(t, &alice, &bob, rand.Reader, rand.Reader, x, y, "", false)
			if r.alice.kind != smpSucceeded {
				t.Fatalf("restart failed: %v", r.alice.kind)
			}
		}
	}
}

// TestSMPStartWhileRunning checks that start refuses while busy and that
// abort+start restarts cleanly.
func TestSMPStartWhileRunning(t *testing.T) {
	st := smpStagesFor(t)
	x, y := smpSecretsFor("pw", "pw")
	for _, s := range []*smpState{st.awaiting, st.exp2, st.exp3, st.exp4} {
		s = s.clone()
		before := *s
		if _, err := s.start(rand.Reader, x, "", false); !errors.Is(err, errSMPInProgress) {
			t.Fatalf("start while running: %v", err)
		}
		if *s != before {
			t.Fatal("refused start changed the state")
		}
	}
	// The documented restart: abort() then start(), both delivered in
	// order; the peer (in EXPECT3 here) resets and sees a new request.
	alice, bob := st.exp4.clone(), st.exp3.clone()
	ab := alice.abort()
	m1, err := alice.start(rand.Reader, x, "new?", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ev := bob.receive(rand.Reader, ab); ev.kind != smpAborted {
		t.Fatalf("abort: %v", ev.kind)
	}
	if _, ev := bob.receive(rand.Reader, m1); ev.kind != smpRequest || ev.question != "new?" {
		t.Fatalf("restart: %+v", ev)
	}
	m2, err := bob.respond(rand.Reader, y)
	if err != nil {
		t.Fatal(err)
	}
	reply, _ := alice.receive(rand.Reader, m2)
	reply, evB := bob.receive(rand.Reader, reply[0])
	_, evA := alice.receive(rand.Reader, reply[0])
	if evA.kind != smpSucceeded || evB.kind != smpSucceeded {
		t.Fatalf("restarted run: %v %v", evA.kind, evB.kind)
	}
}

// TestSMPSimultaneousStart covers both users starting at once.
func TestSMPSimultaneousStart(t *testing.T) {
	// Both users start at once: each side gets the other's message 1 in
	// EXPECT2, aborts (spec), and the crossing aborts are not reported.
	var a, b smpState
	x, _ := smpSecretsFor("pw", "pw")
	y := smpSecret(smpFPB, smpFPA, smpSSID, []byte("pw"))
	ma, err := a.start(rand.Reader, x, "", false)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := b.start(rand.Reader, y, "", false)
	if err != nil {
		t.Fatal(err)
	}
	ra, eva := a.receive(rand.Reader, mb)
	rb, evb := b.receive(rand.Reader, ma)
	smpExpectAbort(t, &a, ra, eva, smpAborted, errSMPUnexpected)
	smpExpectAbort(t, &b, rb, evb, smpAborted, errSMPUnexpected)
	if r, ev := a.receive(rand.Reader, rb[0]); len(r) != 0 || ev.kind != smpNone {
		t.Fatalf("crossing abort: %v %v", smpTLVTypes(r), ev.kind)
	}
	if r, ev := b.receive(rand.Reader, ra[0]); len(r) != 0 || ev.kind != smpNone {
		t.Fatalf("crossing abort: %v %v", smpTLVTypes(r), ev.kind)
	}
}

// TestSMPNewRequestReplacesPending checks that a new message 1 replaces a
// request awaiting our secret.
func TestSMPNewRequestReplacesPending(t *testing.T) {
	st := smpStagesFor(t)
	bob := st.awaiting.clone()
	var alice smpState
	x, y := smpSecretsFor("pw", "pw")
	m1, err := alice.start(rand.Reader, x, "second?", true)
	if err != nil {
		t.Fatal(err)
	}
	reply, ev := bob.receive(rand.Reader, m1)
	if len(reply) != 0 || ev.kind != smpRequest || ev.question != "second?" || !ev.hasQuestion {
		t.Fatalf("replacement: %v %+v", smpTLVTypes(reply), ev)
	}
	if q, hq := bob.pendingQuestion(); q != "second?" || !hq {
		t.Fatalf("pendingQuestion = %q %v", q, hq)
	}
	m2, err := bob.respond(rand.Reader, y)
	if err != nil {
		t.Fatal(err)
	}
	reply, _ = alice.receive(rand.Reader, m2)
	reply, evB := bob.receive(rand.Reader, reply[0])
	_, evA := alice.receive(rand.Reader, reply[0])
	if evA.kind != smpSucceeded || evB.kind != smpSucceeded || evB.verified || !evA.verified {
		t.Fatalf("after replacement: %+v %+v", evA, evB)
	}
}

// TestSMPAPIErrors covers misuse and failing randomness.
func TestSMPAPIErrors(t *testing.T) {
	var s smpState
	x, _ := smpSecretsFor("pw", "pw")
	if _, err := s.respond(rand.Reader, x); !errors.Is(err, errSMPNoRequest) {
		t.Errorf("respond without request: %v", err)
	}
	if _, err := s.start(rand.Reader, x[:31], "", false); !errors.Is(err, errSMPSecret) {
		t.Errorf("short secret: %v", err)
	}
	if _, err := s.start(rand.Reader, x, "a\x00b", true); !errors.Is(err, errSMPQuestion) {
		t.Errorf("NUL in question: %v", err)
	}
	if _, err := s.start(rand.Reader, x, strings.Repeat("q", 0xffff), true); !errors.Is(err, errSMPQuestion) {
		t.Errorf("long question: %v", err)
	}
	// A NUL is harmless without a question (the question is not sent).
	if _, err := s.start(rand.Reader, x, "a\x00b", false); err != nil {
		t.Errorf("question ignored without hasQuestion: %v", err)
	}
	s.reset()
	// The longest question that fits.
	m1, err := s.start(rand.Reader, x, strings.Repeat("q", smpMaxTLV-1-smpMaxMsg1), true)
	if err != nil || len(m1.value) > smpMaxTLV {
		t.Errorf("longest question: %v, %d bytes", err, len(m1.value))
	}
	s.reset()
	if _, err := s.start(smpErrReader{}, x, "", false); err == nil || s.inProgress() {
		t.Errorf("failing rand at start: %v, in progress %v", err, s.inProgress())
	}
	st := smpStagesFor(t)
	b := st.awaiting.clone()
	if _, err := b.respond(smpErrReader{}, x); err == nil || !b.awaitingSecret() {
		t.Errorf("failing rand at respond: %v, awaiting %v", err, b.awaitingSecret())
	}
	if _, err := b.respond(rand.Reader, x[:5]); !errors.Is(err, errSMPSecret) || !b.awaitingSecret() {
		t.Errorf("bad secret at respond: %v", err)
	}
	// A failing random source while building messages 3 and 4 aborts.
	a := st.exp2.clone()
	reply, ev := a.receive(smpErrReader{}, st.m2)
	smpMustOne(t, reply, tlvSMPAbort)
	if ev.kind != smpAborted || ev.err == nil || a.inProgress() {
		t.Errorf("rand failure at message 3: %+v", ev)
	}
	b = st.exp3.clone()
	reply, ev = b.receive(smpErrReader{}, st.m3)
	smpMustOne(t, reply, tlvSMPAbort)
	if ev.kind != smpAborted || ev.err == nil || b.inProgress() {
		t.Errorf("rand failure at message 4: %+v", ev)
	}
	// Non-SMP TLVs are ignored.
	b = st.exp3.clone()
	if reply, ev := b.receive(rand.Reader, tlv{typ: tlvPadding}); len(reply) != 0 || ev.kind != smpNone || !b.inProgress() {
		t.Errorf("padding TLV: %v %v", smpTLVTypes(reply), ev.kind)
	}
}

// --- malformed and out-of-range messages ---

// smpReplaceMPI re-encodes an SMP body with MPI i replaced by v.
func smpReplaceMPI(t *testing.T, body []byte, count, i int, v *big.Int) []byte {
	t.Helper()
	mags, err := smpDecodeMPIs(body, count)
	if err != nil {
		t.Fatal(err)
	}
	mags[i] = v.Bytes()
	return smpEncodeMPIs(mags...)
}

// stageFor returns the state expecting message n and that message.
func (st *smpStages) stageFor(n int) (*smpState, tlv, string) {
	switch n {
	case 1:
		return st.idle, st.m1, smpLayout1
	case 2:
		return st.exp2, st.m2, smpLayout2
	case 3:
		return st.exp3, st.m3, smpLayout3
	default:
		return st.exp4, st.m4, smpLayout4
	}
}

// TestSMPRangeChecks replaces every value of every message with
// out-of-range and proof-breaking values.
func TestSMPRangeChecks(t *testing.T) {
	st := smpStagesFor(t)
	gr := otrGroup()
	one := big.NewInt(1)
	pm1 := new(big.Int).Sub(gr.p, one)
	// p−2 = −2 mod p is in range but a non-residue (−1 is a non-residue as
	// p ≡ 3 mod 4; 2 is a residue as p ≡ 7 mod 8).
	nonResidue := new(big.Int).Sub(gr.p, big.NewInt(2))
	if big.Jacobi(nonResidue, gr.p) != -1 {
		t.Fatal("p−2 should be a non-residue")
	}
	badElems := []*big.Int{big.NewInt(0), one, pm1, gr.p, nonResidue}
	badExps := []*big.Int{big.NewInt(0), gr.q, new(big.Int).Add(gr.q, one), pm1}
	for n := 1; n <= 4; n++ {
		s0, m, layout := st.stageFor(n)
		for i, kind := range layout {
			bad := badExps
			if kind == 'g' {
				bad = badElems
			}
			for _, v := range bad {
				s := s0.clone()
				body := smpReplaceMPI(t, m.value, len(layout), i, v)
				reply, ev := s.receive(rand.Reader, tlv{typ: m.typ, value: body})
				smpExpectAbort(t, s, reply, ev, smpCheated, errSMPRange)
			}
		}
		// An in-range but wrong value breaks a proof.
		for i := range layout {
			s := s0.clone()
			mags, _ := smpDecodeMPIs(m.value, len(layout))
			v := new(big.Int).SetBytes(mags[i])
			if layout[i] == 'g' {
				v.Mul(v, big.NewInt(4)).Mod(v, gr.p) // stays a residue
			} else {
				v.Add(v, one).Mod(v, gr.q)
			}
			body := smpReplaceMPI(t, m.value, len(layout), i, v)
			reply, ev := s.receive(rand.Reader, tlv{typ: m.typ, value: body})
			smpExpectAbort(t, s, reply, ev, smpCheated, errSMPProof)
		}
	}
}

// TestSMPMalformed covers wrong counts, non-minimal, truncated and oversized MPIs.
func TestSMPMalformed(t *testing.T) {
	st := smpStagesFor(t)
	for n := 1; n <= 4; n++ {
		s0, m, layout := st.stageFor(n)
		mags, err := smpDecodeMPIs(m.value, len(layout))
		if err != nil {
			t.Fatal(err)
		}
		var cases [][]byte
		// Wrong counts: one fewer, one more, and the other messages'.
		cases = append(cases, smpEncodeMPIs(mags[:len(mags)-1]...))
		cases = append(cases, smpEncodeMPIs(append(mags[:len(mags):len(mags)], mags[0])...))
		for _, c := range []uint32{0, 3, 6, 8, 11, 0xffffffff} {
			if c != uint32(len(layout)) {
				b := bytes.Clone(m.value)
				binary.BigEndian.PutUint32(b, c)
				cases = append(cases, b)
			}
		}
		// Non-minimal first MPI (leading zero byte).
		nm := binary.BigEndian.AppendUint32(nil, uint32(len(layout)))
		nm = binary.BigEndian.AppendUint32(nm, uint32(len(mags[0])+1))
		nm = append(append(nm, 0), mags[0]...)
		for _, g := range mags[1:] {
			nm = binary.BigEndian.AppendUint32(nm, uint32(len(g)))
			nm = append(nm, g...)
		}
		cases = append(cases, nm)
		// Truncations, trailing byte, oversized MPI length.
		cases = append(cases, nil, m.value[:3], m.value[:len(m.value)-1], append(bytes.Clone(m.value), 0))
		long := bytes.Clone(m.value)
		binary.BigEndian.PutUint32(long[4:], 193)
		cases = append(cases, long)
		huge := bytes.Clone(m.value)
		binary.BigEndian.PutUint32(huge[4:], 0xffffffff)
		cases = append(cases, huge)
		for i, body := range cases {
			s := s0.clone()
			reply, ev := s.receive(rand.Reader, tlv{typ: m.typ, value: body})
			if !errors.Is(ev.err, errSMPMalformed) {
				t.Errorf("message %d case %d: %v", n, i, ev.err)
			}
			smpExpectAbort(t, s, reply, ev, smpCheated, errSMPMalformed)
		}
	}
	// Message 1Q without the NUL after the question.
	s := st.idle.clone()
	reply, ev := s.receive(rand.Reader, tlv{typ: tlvSMP1Q, value: []byte("no nul here")})
	smpExpectAbort(t, s, reply, ev, smpCheated, errSMPMalformed)
	// A malformed message 1 while awaiting our secret drops that request.
	s = st.awaiting.clone()
	reply, ev = s.receive(rand.Reader, tlv{typ: tlvSMP1Q, value: append([]byte("q?\x00"), 1, 2)})
	smpExpectAbort(t, s, reply, ev, smpCheated, errSMPMalformed)
	if ev.question != "q?" || !ev.hasQuestion || ev.weInitiated {
		t.Errorf("event should carry the new question: %+v", ev)
	}
}

// TestSMPDecodeMPIs checks the codec's exact encoding and rejections.
func TestSMPDecodeMPIs(t *testing.T) {
	enc := smpEncodeMPIs([]byte{1}, nil, []byte{0xff, 0})
	got, err := smpDecodeMPIs(enc, 3)
	if err != nil || len(got) != 3 || !bytes.Equal(got[0], []byte{1}) || len(got[1]) != 0 || !bytes.Equal(got[2], []byte{0xff, 0}) {
		t.Fatalf("round trip: %x %v", got, err)
	}
	want := []byte{0, 0, 0, 3, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0}
	if !bytes.Equal(enc, want) {
		t.Fatalf("encoding %x, want %x", enc, want)
	}
	for _, b := range [][]byte{nil, {0, 0, 0}, {0, 0, 0, 2}, want[:len(want)-1], {0, 0, 0, 1, 0, 0, 0, 1, 0}} {
		if _, err := smpDecodeMPIs(b, len(want)); err == nil {
			t.Errorf("accepted %x", b)
		}
	}
}

// TestSMPResetWipes checks that reset zeroes the stored values in place.
func TestSMPResetWipes(t *testing.T) {
	st := smpStagesFor(t)
	for _, s0 := range []*smpState{st.exp2, st.exp3, st.exp4} {
		s := s0.clone()
		held := []*bigmod.Nat{s.x, s.e2, s.e3, s.g2o, s.g3o, s.ownP, s.ownQ, s.pRatio, s.qRatio}
		s.reset()
		for i, n := range held {
			if n == nil {
				continue
			}
			for _, w := range n.Bits() {
				if w != 0 {
					t.Fatalf("value %d not wiped", i)
				}
			}
		}
		if *s != (smpState{}) {
			t.Fatal("state not zero after reset")
		}
	}
}

// TestSMPEventKindString covers smpEventKind.String.
func TestSMPEventKindString(t *testing.T) {
	if smpCheated.String() != "cheated" || smpEventKind(99).String() != "smpEventKind(99)" {
		t.Fatal("String")
	}
}

// BenchmarkSMP runs a whole protocol (both sides, all four messages).
func BenchmarkSMP(b *testing.B) {
	otrGroup()
	x, y := smpSecretsFor("pw", "pw")
	for b.Loop() {
		var alice, bob smpState
		m1, err := alice.start(rand.Reader, x, "", false)
		if err != nil {
			b.Fatal(err)
		}
		bob.receive(rand.Reader, m1)
		m2, err := bob.respond(rand.Reader, y)
		if err != nil {
			b.Fatal(err)
		}
		r3, _ := alice.receive(rand.Reader, m2)
		r4, _ := bob.receive(rand.Reader, r3[0])
		if _, ev := alice.receive(rand.Reader, r4[0]); ev.kind != smpSucceeded {
			b.Fatal(ev.kind)
		}
	}
}
