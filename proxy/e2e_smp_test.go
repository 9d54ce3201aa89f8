package proxy

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"otrbnc/keystore"
	"otrbnc/otrcore/otrtest/libotrpeer"
)

// smpLibotr is a libotr peer that also reports its SMP events.
type smpLibotr struct {
	*libotrEngine
	smp chan libotrpeer.Event
}

func (e *smpLibotr) recv(ctx context.Context, from, line string) (string, bool, []string, error) {
	r, err := e.p.Recv(ctx, from, line)
	for _, ev := range r.EventsNamed(libotrpeer.EventSMP) {
		e.smp <- ev
	}
	return r.Text, r.Delivered, r.Out, err
}

func (e *smpLibotr) expectSMP(t *testing.T, name string) libotrpeer.Event {
	t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case ev := <-e.smp:
			if ev.Args["event"] == name {
				return ev
			}
		case <-timer.C:
			t.Fatalf("libotr: no SMP event %s", name)
			return libotrpeer.Event{}
		}
	}
}

// TestE2ESMPWithLibotr runs identity verification through ngIRCd against
// libotr 4.1.1, driven from /msg *otr: we ask (with and without a
// question) and libotr answers; libotr asks and we answer with auth.
func TestE2ESMPWithLibotr(t *testing.T) {
	t.Parallel()
	ircd := startNgircd(t, true)
	env := startProxy(t, testConfig(ircd.Addr), Options{StateDir: t.TempDir()})
	env.waitUp()
	eng := &smpLibotr{libotrEngine: newLibotrEngine(t, "bob", libotrpeer.PolicyManual), smp: make(chan libotrpeer.Event, 100)}
	bob := newIRCPeer(t, ircd.Addr, "bob", eng)
	c := registerClient(t, env.addr, "alice")
	ctx := context.Background()
	bobFP := strings.ToUpper(eng.p.Fingerprint())

	cmd(c, "start bob", "asking bob")
	c.expect("gone secure", serviceSays("private conversation with bob started (OTRv3, UNVERIFIED)"))

	// We ask, libotr answers with the same secret.
	cmd(c, "auth bob correct horse battery", "verification started")
	eng.expectSMP(t, "OTRL_SMPEVENT_ASK_FOR_SECRET")
	r, err := eng.p.SMPRespond(ctx, "alice", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	bob.write("alice", r.Out)
	m := c.expect("verified", serviceSays("identity verified: fingerprint"))
	if !strings.Contains(strings.ReplaceAll(m.Trailing(), " ", ""), bobFP) {
		t.Errorf("verified the wrong key: %q (libotr's is %s)", m.Trailing(), bobFP)
	}
	eng.expectSMP(t, "OTRL_SMPEVENT_SUCCESS")
	cmd(c, "fingerprint bob", "by shared secret (current session)")
	cmd(c, "distrust bob", "no longer verified")

	// We ask a question; libotr's user answers it.
	cmd(c, `authq bob "What is our cat's name?" Tom`, "question sent")
	ev := eng.expectSMP(t, "OTRL_SMPEVENT_ASK_FOR_ANSWER")
	if ev.Args["question"] != "What is our cat's name?" {
		t.Errorf("libotr got the question %q", ev.Args["question"])
	}
	r, err = eng.p.SMPRespond(ctx, "alice", "Tom")
	if err != nil {
		t.Fatal(err)
	}
	bob.write("alice", r.Out)
	c.expect("verified by question", serviceSays("identity verified"))
	eng.expectSMP(t, "OTRL_SMPEVENT_SUCCESS")

	// libotr asks a question; we answer with /msg *otr auth.
	r, err = eng.p.SMPStartQuestion(ctx, "alice", "Where did we meet?", "the old pier")
	if err != nil {
		t.Fatal(err)
	}
	bob.write("alice", r.Out)
	c.expect("SMP request", serviceSays(`bob wants to verify your identity and asks: "Where did we meet?" — answer with: /msg *otr auth bob <answer>`))
	cmd(c, "auth bob the old pier", "answer sent")
	eng.expectSMP(t, "OTRL_SMPEVENT_SUCCESS")
	c.expect("they verified us", serviceSays("bob verified your identity"))
	if st, err := eng.p.Status(ctx, "alice"); err != nil || !st.Trusted {
		t.Errorf("libotr does not trust us after its question: %+v %v", st, err)
	}

	// libotr asks with a shared secret; a wrong answer fails on both
	// sides and leaves our earlier verification alone.
	r, err = eng.p.SMPStart(ctx, "alice", "right")
	if err != nil {
		t.Fatal(err)
	}
	bob.write("alice", r.Out)
	c.expect("SMP request", serviceSays("bob wants to verify your identity with a shared secret"))
	cmd(c, "auth bob wrong", "answer sent")
	c.expect("failure", serviceSays("identity verification FAILED: the secrets differ. The key stays verified (by shared secret)"))
	eng.expectSMP(t, "OTRL_SMPEVENT_FAILURE")
	cmd(c, "status bob", "encrypted OTRv3, verified")

	for _, l := range c.seenLines() {
		if strings.Contains(l, "?OTR") {
			t.Errorf("client saw OTR data: %q", l)
		}
	}
}

// TestTrustWorkflowSurvivesRestart: trust without a fingerprint refuses,
// a wrong fingerprint is refused, the right one is saved in the keystore
// and is still there after otrbnc restarts.
func TestTrustWorkflowSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := store.Account("test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acct.ReplaceKey(context.Background(), testKey(t, 0).DSA()); err != nil {
		t.Fatal(err)
	}
	env, fn := startFakeNet(t, "", nil, Options{Identities: KeystoreIdentities{Store: store}, StateDir: dir})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2201)
	bobFP := testKey(t, 1).Fingerprint()
	c := registerClient(t, env.addr, "alice")
	bob.secure(c)

	cmd(c, "trust bob", "the key bob uses now is "+bobFP.String())
	c.expect("refused", serviceSays("nothing was trusted"))
	cmd(c, "trust bob "+testKey(t, 2).Fingerprint().String(), "nothing was trusted")
	cmd(c, "status bob", "UNVERIFIED")
	cmd(c, "trust bob "+bobFP.String(), "is now trusted")
	cmd(c, "policy known always", "policy is now always")
	env.stop()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store2, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store2.Close() })
	env2, fn2 := startFakeNet(t, "", nil, Options{Identities: KeystoreIdentities{Store: store2}, StateDir: dir})
	c = registerClient(t, env2.addr, "alice")
	cmd(c, "fingerprint bob", "[bob] "+bobFP.String()+" by fingerprint")
	cmd(c, "status bob", "policy always (policy known)")
	bob2 := fn2.addPeer("bob", testKey(t, 1), 0x2202)
	bob2.start()
	c.expect("verified session after restart", serviceSays("private conversation with bob started (OTRv3, verified)"))
	for _, name := range []string{"account-test.json", "settings-test.json"} {
		assertPrivateFile(t, dir+string(os.PathSeparator)+name)
	}
}
