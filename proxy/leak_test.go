package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"otrbnc/otrcore/otrtest/libotrpeer"
)

// recordingRelay sits between otrbnc and the IRC server and records every
// byte otrbnc sends upstream. drop, when it returns true for a line from
// otrbnc, cuts the connection instead of forwarding that line.
type recordingRelay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	sent   bytes.Buffer
	drop   func(line string) bool
}

func startRelay(t *testing.T, target string) *recordingRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recordingRelay{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	return r
}

func (r *recordingRelay) setDrop(f func(string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop = f
}

func (r *recordingRelay) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	defer s.Close()
	go io.Copy(c, s)
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		r.mu.Lock()
		r.sent.WriteString(line)
		drop := r.drop != nil && r.drop(line)
		if drop {
			r.drop = nil
		}
		r.mu.Unlock()
		if err != nil || drop {
			return
		}
		if _, err := s.Write([]byte(line)); err != nil {
			return
		}
	}
}

func (r *recordingRelay) recorded() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent.String()
}

// TestPlaintextNeverLeaksUnderAlways captures everything otrbnc sends
// upstream while, under policy always, messages are typed before the
// session, the connection drops in the middle of the AKE, the session
// comes up, and the peer ends it.
func TestPlaintextNeverLeaksUnderAlways(t *testing.T) {
	t.Parallel()
	ircd := startNgircd(t, true)
	relay := startRelay(t, ircd.Addr)
	cfg := testConfig(relay.ln.Addr().String())
	cfg.Network[0].Policy = "always"
	env := startProxy(t, cfg, Options{})
	env.waitUp()
	bob := newIRCPeer(t, ircd.Addr, "bob", newLibotrEngine(t, "bob", libotrpeer.PolicyManual))
	c := registerClient(t, env.addr, "alice")

	// Cut the connection instead of forwarding our D-H Key message (v3
	// type 0x0a: base64 "AAMK"), so the AKE cannot finish.
	relay.setDrop(func(line string) bool { return strings.Contains(line, "?OTR:AAMK") })
	c.send("PRIVMSG bob :SECRET-ONE typed before the session")
	c.expect("queued", serviceSays("queued until the private conversation"))
	c.expect("disconnect mid-AKE", serviceSays("disconnected from test"))
	c.send("PRIVMSG bob :SECRET-TWO typed while disconnected")
	c.expect("not sent while down", serviceSays("was NOT sent"))
	c.expect("reconnected", serviceSays("connected to test as alice"))
	env.waitUp()

	c.send("PRIVMSG bob :SECRET-THREE after reconnecting")
	c.expect("gone secure", serviceSays("private conversation with bob started"))
	bob.expectText("SECRET-ONE")
	bob.expectText("SECRET-THREE")

	bob.endOTR("alice")
	c.expect("peer finished", serviceSays("ended the private conversation"))
	c.send("PRIVMSG bob :SECRET-FOUR after the peer finished")
	c.expect("refused", serviceSays("NOT sent"))
	c.send("PRIVMSG bob :\x01ACTION SECRET-FIVE action after finish\x01")
	c.expect("refused action", serviceSays("NOT sent"))
	c.send("PRIVMSG *otr :finish bob")
	c.expect("finished", serviceSays("private conversation ended"))
	c.send("PRIVMSG bob :SECRET-SIX queued again")
	c.expect("queued again", serviceSays("queued until the private conversation"))
	c.expect("gone secure again", serviceSays("private conversation with bob started"))
	bob.expectText("SECRET-SIX")
	// Sync: a round trip through the server flushes what otrbnc sent.
	c.send("PING :sync")
	c.expect("PONG", isCmd("PONG"))
	bob.say("alice", "bye")
	c.expect("last text", privmsgFrom("bob", "bye"))

	sent := relay.recorded()
	if !strings.Contains(sent, "?OTR") {
		t.Fatalf("relay recorded no OTR traffic:\n%s", sent)
	}
	for _, secret := range []string{"SECRET", "typed", "ACTION"} {
		if strings.Contains(sent, secret) {
			for _, l := range strings.Split(sent, "\n") {
				if strings.Contains(l, secret) {
					t.Errorf("plaintext went upstream: %q", l)
				}
			}
		}
	}
}
