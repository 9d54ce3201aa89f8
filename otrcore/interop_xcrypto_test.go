package otrcore

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/otr"
)

// xpeer wraps a golang.org/x/crypto/otr (OTRv2) conversation as the
// other side of an interop test.
type xpeer struct {
	conv    *otr.Conversation
	got     [][]byte
	changes []otr.SecurityChange
}

func newXPeer(t *testing.T, keyIndex int, fragSize int) *xpeer {
	keys, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	k := keys[keyIndex%len(keys)]
	priv := &otr.PrivateKey{}
	priv.PrivateKey = *k
	priv.PublicKey.PublicKey = k.PublicKey
	return &xpeer{conv: &otr.Conversation{PrivateKey: priv, FragmentSize: fragSize}}
}

// xlink shuttles lines between one of our parties and an x/crypto/otr peer.
type xlink struct {
	t   *testing.T
	now time.Time
	us  *party
	x   *xpeer
	// toX and toUs record the wire, for plaintext-leak checks.
	toX, toUs []string
}

func (l *xlink) run(fromUs []Outgoing, fromX [][]byte) {
	l.t.Helper()
	var usQ []string
	for _, m := range fromUs {
		usQ = append(usQ, m.Lines...)
	}
	xQ := fromX
	for rounds := 0; len(usQ) > 0 || len(xQ) > 0; rounds++ {
		if rounds > 5000 {
			l.t.Fatal("protocol loop")
		}
		if len(usQ) > 0 {
			line := usQ[0]
			usQ = usQ[1:]
			l.toX = append(l.toX, line)
			out, _, change, toSend, err := l.x.conv.Receive([]byte(line))
			if err != nil {
				l.t.Fatalf("x/crypto/otr Receive(%q): %v", line, err)
			}
			if len(out) > 0 {
				l.x.got = append(l.x.got, out)
			}
			if change != otr.NoChange {
				l.x.changes = append(l.x.changes, change)
			}
			xQ = append(xQ, toSend...)
			continue
		}
		line := string(xQ[0])
		xQ = xQ[1:]
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

func (x *xpeer) has(c otr.SecurityChange) bool {
	for _, v := range x.changes {
		if v == c {
			return true
		}
	}
	return false
}

func TestInteropXCryptoOTR(t *testing.T) {
	for _, tc := range []struct {
		name      string
		weStart   bool
		fragUs    int
		fragX     int
		alternate int
	}{
		{"we-start", true, 0, 0, 20},
		{"they-start", false, 0, 0, 20},
		{"fragmented-400", true, 400, 400, 10},
		{"fragmented-small", false, 120, 120, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			us := newParty(t, "us", 0, 0x101, "x", Options{Policy: PolicyManual, MaxMessageSize: tc.fragUs})
			x := newXPeer(t, 2, tc.fragX)
			l := &xlink{t: t, now: time.Unix(1e9, 0), us: us, x: x}
			if tc.weStart {
				l.run(mustStart(us.conv, l.now).Send, nil)
			} else {
				l.run(nil, [][]byte{[]byte(otr.QueryMessage)})
			}
			if !x.conv.IsEncrypted() || us.conv.Status().State != StateEncrypted {
				t.Fatalf("not encrypted: x=%v us=%v events=%v", x.conv.IsEncrypted(), us.conv.Status().State, us.events)
			}
			if us.conv.Status().Version != 2 {
				t.Fatalf("version %d, want 2", us.conv.Status().Version)
			}
			if !bytes.Equal(x.conv.TheirPublicKey.Fingerprint(), func() []byte { f := us.acct.Key.Fingerprint(); return f[:] }()) {
				t.Fatal("x/crypto/otr sees a different fingerprint for us")
			}
			if x.conv.SSID != us.conv.Status().SSID {
				t.Fatal("SSID differs")
			}
			for i := 0; i < tc.alternate; i++ {
				msg := strings.Repeat("secret words ", 1+i%7) + "#" + string(rune('a'+i%26))
				if i%2 == 0 {
					res, err := us.conv.Send(l.now, msg)
					if err != nil {
						t.Fatal(err)
					}
					l.run(res.Send, nil)
					if got := string(x.got[len(x.got)-1]); got != msg {
						t.Fatalf("x got %q want %q", got, msg)
					}
				} else {
					toSend, err := x.conv.Send([]byte(msg))
					if err != nil {
						t.Fatal(err)
					}
					l.run(nil, toSend)
					if got := us.lastText(t); got.Text != msg || !got.Encrypted {
						t.Fatalf("we got %q (enc %v) want %q", got.Text, got.Encrypted, msg)
					}
				}
			}
			for _, line := range append(l.toX, l.toUs...) {
				if strings.Contains(line, "secret words") {
					t.Fatalf("plaintext on the wire: %q", line)
				}
			}
			// They end the session: we must go to FINISHED and refuse to send.
			l.run(nil, x.conv.End())
			if us.conv.Status().State != StateFinished || !us.hasEvent(EventPeerFinished) {
				t.Fatalf("state %v after peer ended", us.conv.Status().State)
			}
			if _, err := us.conv.Send(l.now, "secret words after end"); err != ErrFinished {
				t.Fatalf("Send in FINISHED: err = %v", err)
			}
		})
	}
}
