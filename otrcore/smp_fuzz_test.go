package otrcore

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// FuzzSMP feeds an arbitrary TLV to an SMP state frozen at each stage of an
// honest run (idle, awaiting our secret, EXPECT2, EXPECT3, EXPECT4) and
// checks that receive never panics and always leaves a consistent state:
// errors reset and reply with exactly TLV 6, and success is only ever
// reported for the honest message of that stage.
func FuzzSMP(f *testing.F) {
	st := smpBuildStages(f, "", false)
	states := []*smpState{st.idle, st.awaiting, st.exp2, st.exp3, st.exp4}
	honest := []tlv{st.m1, st.m1, st.m2, st.m3, st.m4}
	q1 := tlv{typ: tlvSMP1Q, value: append([]byte("question?\x00"), st.m1.value...)}
	for i := range states {
		for _, m := range []tlv{st.m1, st.m2, st.m3, st.m4, q1} {
			f.Add(uint8(i), m.typ, m.value)
		}
		f.Add(uint8(i), tlvSMPAbort, []byte{})
		f.Add(uint8(i), tlvSMP1Q, []byte("\x00"))
		f.Add(uint8(i), tlvPadding, []byte{0, 0})
	}
	// A few hand-made malformed bodies: huge count, huge MPI length,
	// non-minimal MPI, zero MPI.
	f.Add(uint8(0), tlvSMP1, []byte{0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(2), tlvSMP2, []byte{0, 0, 0, 11, 0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(4), tlvSMP4, []byte{0, 0, 0, 3, 0, 0, 0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(3), tlvSMP3, []byte{0, 0, 0, 8, 0, 0, 0, 0})

	f.Fuzz(func(t *testing.T, which uint8, typ uint16, value []byte) {
		i := int(which) % len(states)
		s := states[i].clone()
		wasBusy := s.inProgress()
		stage, awaiting := s.stage, s.awaiting
		reply, ev := s.receive(rand.Reader, tlv{typ: typ, value: value})

		isAbortReply := len(reply) == 1 && reply[0].typ == tlvSMPAbort && len(reply[0].value) == 0
		switch ev.kind {
		case smpNone:
			if len(reply) != 0 {
				t.Fatalf("smpNone with reply %v", smpTLVTypes(reply))
			}
			if typ != tlvSMPAbort && (s.stage != stage || s.awaiting != awaiting) {
				t.Fatal("ignored TLV changed the state")
			}
			if typ == tlvSMPAbort && (wasBusy || s.inProgress()) {
				t.Fatal("abort while busy must be reported and reset")
			}
		case smpCheated:
			if !isAbortReply || ev.err == nil || *s != (smpState{}) {
				t.Fatalf("cheated: reply %v err %v state %+v", smpTLVTypes(reply), ev.err, s)
			}
		case smpAborted:
			if ev.err != nil && !isAbortReply {
				t.Fatalf("error abort without TLV 6: %v", smpTLVTypes(reply))
			}
			if ev.err == nil && (len(reply) != 0 || typ != tlvSMPAbort) {
				t.Fatalf("peer abort: reply %v typ %d", smpTLVTypes(reply), typ)
			}
			if *s != (smpState{}) {
				t.Fatal("aborted state not reset")
			}
		case smpRequest:
			if len(reply) != 0 || !s.awaitingSecret() || (typ != tlvSMP1 && typ != tlvSMP1Q) {
				t.Fatalf("request: reply %v typ %d", smpTLVTypes(reply), typ)
			}
			body := value
			if typ == tlvSMP1Q {
				body = body[bytes.IndexByte(body, 0)+1:]
				if q, hq := s.pendingQuestion(); !hq || q != string(value[:len(value)-len(body)-1]) {
					t.Fatalf("question %q not recorded", q)
				}
			}
			if !bytes.Equal(body, st.m1.value) {
				// Another valid message 1 would need a forged proof.
				t.Fatalf("accepted a message 1 that is not the honest one: typ %d state %d len %d/%d", typ, i, len(body), len(st.m1.value))
			}
		case smpInProgress:
			if len(reply) != 1 || reply[0].typ != tlvSMP3 || s.stage != smpExpect4 {
				t.Fatalf("in progress: reply %v stage %d", smpTLVTypes(reply), s.stage)
			}
			if !bytes.Equal(value, honest[i].value) {
				t.Fatal("accepted a message 2 that is not the honest one")
			}
		case smpSucceeded, smpFailed:
			want := 0
			if !ev.weInitiated {
				want = 1
			}
			if len(reply) != want || want == 1 && reply[0].typ != tlvSMP4 || s.inProgress() {
				t.Fatalf("final: reply %v busy %v", smpTLVTypes(reply), s.inProgress())
			}
			if !bytes.Equal(value, honest[i].value) || ev.kind != smpSucceeded {
				t.Fatalf("%v for a message that is not the honest one", ev.kind)
			}
		default:
			t.Fatalf("unknown event kind %d", ev.kind)
		}
		// Every reply must itself be well-formed.
		for _, r := range reply {
			layout := map[uint16]string{tlvSMP3: smpLayout3, tlvSMP4: smpLayout4}[r.typ]
			if layout == "" {
				continue
			}
			if _, err := smpParse(otrGroup(), r.value, layout); err != nil {
				t.Fatalf("our reply TLV %d does not parse: %v", r.typ, err)
			}
		}
	})
}

// FuzzSMPDecodeMPIs checks the MPI-array codec: decoding never panics,
// and whatever decodes re-encodes to exactly the input (the encoding is
// canonical: minimal MPIs, no trailing bytes).
func FuzzSMPDecodeMPIs(f *testing.F) {
	f.Add(uint8(3), smpEncodeMPIs([]byte{1}, nil, []byte{0xff, 0}))
	f.Add(uint8(6), []byte{0, 0, 0, 6})
	f.Add(uint8(1), []byte{0, 0, 0, 1, 0, 0, 0, 1, 0})
	f.Add(uint8(2), []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, count uint8, b []byte) {
		mags, err := smpDecodeMPIs(b, int(count))
		if err != nil {
			return
		}
		if len(mags) != int(count) {
			t.Fatalf("got %d MPIs, want %d", len(mags), count)
		}
		for _, m := range mags {
			if len(m) > dhPrimeBytes || len(m) > 0 && m[0] == 0 {
				t.Fatalf("bad magnitude %x", m)
			}
		}
		if !bytes.Equal(smpEncodeMPIs(mags...), b) {
			t.Fatal("decoding is not canonical")
		}
	})
}
