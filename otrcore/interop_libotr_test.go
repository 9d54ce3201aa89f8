package otrcore

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"otrbnc/otrcore/otrtest/libotrpeer"
)

// llink connects one of our parties ("alice") with a libotr 4.1.1 peer
// ("bob") running as a subprocess. Lines are moved by the test, split at
// newlines as an IRC client would.
type llink struct {
	t      *testing.T
	ctx    context.Context
	now    time.Time
	us     *party
	lo     *libotrpeer.Peer
	toLo   []string
	toUs   []string
	loGot  []string
	loEvts []libotrpeer.Event
	// filter may alter or drop lines from libotr to us.
	filter func(line string) (string, bool)
}

const (
	usName = "alice"
	loName = "bob"
)

func startLibotr(t *testing.T, policy libotrpeer.Policy, mms int) (*libotrpeer.Peer, context.Context) {
	t.Helper()
	bin := libotrpeer.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	p, err := libotrpeer.Start(ctx, libotrpeer.Options{Account: loName, Dir: t.TempDir(), Policy: policy, MaxMessageSize: mms, Binary: bin})
	if err != nil {
		t.Fatalf("starting libotr peer: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p, ctx
}

func newLLink(t *testing.T, opts Options, loPolicy libotrpeer.Policy, loMMS int) *llink {
	lo, ctx := startLibotr(t, loPolicy, loMMS)
	us := newParty(t, usName, 0, 0x8000_0101, loName, opts)
	return &llink{t: t, ctx: ctx, now: time.Unix(1.7e9, 0), us: us, lo: lo}
}

// ircLines splits a message into the lines an IRC client would send.
func ircLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// run delivers lines in both directions until both sides are quiet.
func (l *llink) run(fromUs []Outgoing, fromLo []string) {
	l.t.Helper()
	var usQ []string
	for _, m := range fromUs {
		usQ = append(usQ, m.Lines...)
	}
	var loQ []string
	for _, m := range fromLo {
		loQ = append(loQ, ircLines(m)...)
	}
	for rounds := 0; len(usQ) > 0 || len(loQ) > 0; rounds++ {
		if rounds > 2000 {
			l.t.Fatal("protocol loop")
		}
		if len(usQ) > 0 {
			line := usQ[0]
			usQ = usQ[1:]
			if strings.ContainsAny(line, "\r\n") {
				l.t.Fatalf("we sent a multi-line message: %q", line)
			}
			l.toLo = append(l.toLo, line)
			r, err := l.lo.Recv(l.ctx, usName, line)
			if err != nil {
				l.t.Fatalf("libotr recv: %v", err)
			}
			l.loEvts = append(l.loEvts, r.Events...)
			if r.Delivered {
				l.loGot = append(l.loGot, r.Text)
			}
			for _, o := range r.Out {
				loQ = append(loQ, ircLines(o)...)
			}
			continue
		}
		line := loQ[0]
		loQ = loQ[1:]
		if l.filter != nil {
			var ok bool
			if line, ok = l.filter(line); !ok {
				continue
			}
		}
		l.toUs = append(l.toUs, line)
		res, err := l.us.conv.Receive(l.now, line)
		if err != nil {
			l.t.Fatalf("our Receive: %v", err)
		}
		l.us.events = append(l.us.events, res.Events...)
		if res.HasText {
			l.us.got = append(l.us.got, res)
		}
		for _, m := range res.Send {
			usQ = append(usQ, m.Lines...)
		}
	}
}

func (l *llink) loDo(r libotrpeer.Response, err error) {
	l.t.Helper()
	if err != nil {
		l.t.Fatalf("libotr: %v", err)
	}
	l.loEvts = append(l.loEvts, r.Events...)
	l.run(nil, r.Out)
}

func (l *llink) usSend(text string) {
	l.t.Helper()
	res, err := l.us.conv.Send(l.now, text)
	if err != nil {
		l.t.Fatalf("our Send: %v", err)
	}
	l.us.events = append(l.us.events, res.Events...)
	l.run(res.Send, nil)
}

func (l *llink) loHas(name, arg, value string) bool {
	for _, e := range l.loEvts {
		if e.Name == name && (arg == "" || e.Args[arg] == value) {
			return true
		}
	}
	return false
}

// checkSecure asserts both sides are encrypted with matching version,
// fingerprints, SSID and instance tags.
func (l *llink) checkSecure(version int) {
	l.t.Helper()
	st := l.us.conv.Status()
	ls, err := l.lo.Status(l.ctx, usName)
	if err != nil {
		l.t.Fatal(err)
	}
	if st.State != StateEncrypted || !ls.Encrypted() {
		l.t.Fatalf("not encrypted: us %v libotr %q; our events %v; libotr events %v", st.State, ls.MsgState, l.us.events, l.loEvts)
	}
	if st.Version != version || ls.Version != version {
		l.t.Fatalf("versions us %d libotr %d, want %d", st.Version, ls.Version, version)
	}
	if st.Fingerprint.Hex() != l.lo.Fingerprint() {
		l.t.Fatalf("we see fingerprint %s, libotr has %s", st.Fingerprint.Hex(), l.lo.Fingerprint())
	}
	if ls.Fingerprint != l.us.acct.Key.Fingerprint().Hex() {
		l.t.Fatalf("libotr sees fingerprint %s, ours is %s", ls.Fingerprint, l.us.acct.Key.Fingerprint().Hex())
	}
	if hex.EncodeToString(ls.SSID) != hex.EncodeToString(st.SSID[:]) {
		l.t.Fatalf("SSID us %x libotr %x", st.SSID, ls.SSID)
	}
	if version == 3 {
		if st.Instance != l.lo.Instag() || ls.TheirInstance != l.us.acct.InstanceTag || ls.OurInstance != l.lo.Instag() {
			l.t.Fatalf("instance tags: we see %08x (libotr %08x), libotr sees %08x (ours %08x)", st.Instance, l.lo.Instag(), ls.TheirInstance, l.us.acct.InstanceTag)
		}
	}
}

// converse exchanges n messages alternating direction and checks each.
func (l *llink) converse(n int, size int) {
	l.t.Helper()
	for i := 0; i < n; i++ {
		msg := strings.Repeat("confidential ", size/13+1)[:size] + "#" + string(rune('A'+i%26))
		if i%2 == 0 {
			l.usSend(msg)
			if len(l.loGot) == 0 || l.loGot[len(l.loGot)-1] != msg {
				l.t.Fatalf("message %d: libotr got %q", i, l.loGot)
			}
		} else {
			l.loDo(l.lo.Send(l.ctx, usName, msg))
			if got := l.us.lastText(l.t); got.Text != msg || !got.Encrypted {
				l.t.Fatalf("message %d: we got %q (encrypted %v)", i, got.Text, got.Encrypted)
			}
		}
	}
	for _, line := range append(l.toLo, l.toUs...) {
		if strings.Contains(line, "confidential") {
			l.t.Fatalf("plaintext on the wire: %q", line)
		}
	}
}

func TestInteropLibotr(t *testing.T) {
	for _, tc := range []struct {
		name     string
		weStart  bool
		loPolicy libotrpeer.Policy
		version  int
		mms      int
		messages int
		size     int
	}{
		{"v3-we-start", true, libotrpeer.PolicyManual, 3, 0, 60, 100},
		{"v3-libotr-starts", false, libotrpeer.PolicyManual, 3, 0, 20, 100},
		{"v2-we-start", true, libotrpeer.PolicyV2Only, 2, 0, 20, 100},
		{"v2-libotr-starts", false, libotrpeer.PolicyV2Only, 2, 0, 20, 100},
		{"v3-fragments-400", true, libotrpeer.PolicyManual, 3, 400, 10, 900},
		{"v3-fragments-small", false, libotrpeer.PolicyManual, 3, 96, 6, 300},
		{"v2-fragments-400", false, libotrpeer.PolicyV2Only, 2, 400, 6, 900},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLLink(t, Options{Policy: PolicyManual, MaxMessageSize: tc.mms}, tc.loPolicy, tc.mms)
			if tc.weStart {
				l.run(mustStart(l.us.conv, l.now).Send, nil)
			} else {
				l.loDo(l.lo.Query(l.ctx, usName))
			}
			l.checkSecure(tc.version)
			if !l.loHas(libotrpeer.EventGoneSecure, "", "") || !l.us.hasEvent(EventGoneSecure) {
				t.Fatal("missing gone-secure events")
			}
			l.converse(tc.messages, tc.size)
			if tc.mms > 0 {
				for _, line := range l.toLo {
					if len(line) > tc.mms {
						t.Fatalf("we sent a %d-byte line, limit %d", len(line), tc.mms)
					}
				}
			}
			// Refresh (a second AKE inside the session) keeps working.
			l.run(mustStart(l.us.conv, l.now).Send, nil)
			l.checkSecure(tc.version)
			l.converse(4, 50)
		})
	}
}

func TestInteropLibotrFinish(t *testing.T) {
	t.Run("we-finish", func(t *testing.T) {
		t.Parallel()
		l := newLLink(t, Options{Policy: PolicyManual}, libotrpeer.PolicyManual, 0)
		l.run(mustStart(l.us.conv, l.now).Send, nil)
		l.checkSecure(3)
		l.run(l.us.conv.End(l.now).Send, nil)
		ls, _ := l.lo.Status(l.ctx, usName)
		if ls.MsgState != "finished" {
			t.Fatalf("libotr state after our TLV 1: %q", ls.MsgState)
		}
		if l.us.conv.Status().State != StatePlaintext {
			t.Fatal("we are not in plaintext after End")
		}
	})
	t.Run("libotr-finishes", func(t *testing.T) {
		t.Parallel()
		l := newLLink(t, Options{Policy: PolicyManual}, libotrpeer.PolicyManual, 0)
		l.loDo(l.lo.Query(l.ctx, usName))
		l.checkSecure(3)
		l.loDo(l.lo.End(l.ctx, usName))
		if l.us.conv.Status().State != StateFinished || !l.us.hasEvent(EventPeerFinished) {
			t.Fatalf("after libotr ended: %v", l.us.conv.Status().State)
		}
		if res, err := l.us.conv.Send(l.now, "must not leak"); err != ErrFinished || len(res.Send) != 0 {
			t.Fatalf("send in FINISHED: %v %v", res.Send, err)
		}
	})
}

func TestInteropLibotrWhitespaceStart(t *testing.T) {
	t.Run("libotr-tags", func(t *testing.T) {
		t.Parallel()
		l := newLLink(t, Options{Policy: PolicyOpportunistic}, libotrpeer.PolicyOpportunistic, 0)
		// libotr appends its tag at the end of the text; we find it there
		// and strip it before showing the text.
		l.loDo(l.lo.Send(l.ctx, usName, "hello from libotr"))
		if got := l.us.got[0]; got.Text != "hello from libotr" || got.Encrypted {
			t.Fatalf("we got %+v", got)
		}
		l.checkSecure(3)
	})
	t.Run("we-tag", func(t *testing.T) {
		t.Parallel()
		l := newLLink(t, Options{Policy: PolicyOpportunistic}, libotrpeer.PolicyOpportunistic, 0)
		l.usSend("hello from us")
		if len(l.loGot) == 0 || l.loGot[0] != "hello from us" {
			t.Fatalf("libotr got %q", l.loGot)
		}
		l.checkSecure(3)
	})
}

func TestInteropLibotrExtraKey(t *testing.T) {
	t.Parallel()
	l := newLLink(t, Options{Policy: PolicyManual}, libotrpeer.PolicyManual, 0)
	l.run(mustStart(l.us.conv, l.now).Send, nil)
	l.checkSecure(3)
	key, res, err := l.us.conv.SendExtraKey(l.now, 0x2a, []byte("usedata"))
	if err != nil {
		t.Fatal(err)
	}
	l.run(res.Send, nil)
	var got *libotrpeer.Event
	for i := range l.loEvts {
		if l.loEvts[i].Name == libotrpeer.EventSymkey {
			got = &l.loEvts[i]
		}
	}
	if got == nil || got.Args["key"] != string(key[:]) || got.Args["usedata"] != "usedata" || got.Args["use"] != "42" {
		t.Fatalf("libotr symkey event %v", got)
	}
	lkey, r, err := l.lo.Symkey(l.ctx, usName, 7, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	l.run(nil, r.Out)
	for _, e := range l.us.events {
		if e.Kind == EventExtraKey && e.KeyUse == 7 {
			if string(e.ExtraKey[:]) != string(lkey) {
				t.Fatal("extra key differs from libotr's")
			}
			return
		}
	}
	t.Fatal("we saw no extra key from libotr")
}
