package proxy

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"otrbnc/proxy/config"

	"gopkg.in/irc.v4"
)

// startLonelyProxy runs otrbnc with an upstream that never answers; client
// registration and the service work without it.
func startLonelyProxy(t *testing.T) *proxyEnv {
	cfg := testConfig("127.0.0.1:1")
	cfg.Network = append(cfg.Network, cfg.Network[0])
	cfg.Network[1].Name = "other"
	cfg.Network[1].Nick = "carol"
	return startProxy(t, cfg, Options{})
}

// TestClientBadPassword checks that a wrong password and a missing one are
// refused, each with its own reason, and that a wrong one is slowed down.
func TestClientBadPassword(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	env := startProxy(t, testConfig("127.0.0.1:1"), Options{AuthFailDelay: delay})
	for _, tc := range []struct {
		pass, reason string
		delayed      bool
	}{
		{"PASS :wrong", "Password incorrect", true},
		{"", "Password required", false},
		{"PASS :", "Password required", false},
	} {
		c := dialTest(t, env.addr)
		start := time.Now()
		if tc.pass != "" {
			c.send(tc.pass)
		}
		c.send("NICK x", "USER x 0 * :x")
		if m := c.expect("464", isCmd("464")); m.Trailing() != tc.reason {
			t.Errorf("%q: 464 says %q, want %q", tc.pass, m.Trailing(), tc.reason)
		}
		if m := c.expect("ERROR", isCmd("ERROR")); !strings.Contains(m.Trailing(), strings.ToLower(tc.reason)) {
			t.Errorf("%q: ERROR says %q, want %q", tc.pass, m.Trailing(), strings.ToLower(tc.reason))
		}
		if tc.delayed && time.Since(start) < delay {
			t.Errorf("%q: refused after %v, before the %v delay", tc.pass, time.Since(start), delay)
		}
		c.expectClosed()
		for _, l := range c.seenLines() {
			if strings.Contains(l, " 001 ") {
				t.Errorf("got access with %q: %s", tc.pass, l)
			}
		}
	}
}

func TestClientCommandsBeforeRegistration(t *testing.T) {
	t.Parallel()
	env := startLonelyProxy(t)
	c := dialTest(t, env.addr)
	c.send("PRIVMSG bob :hi", "JOIN #x")
	c.expect("451", isCmd("451"))
	c.send("CAP LS 302")
	m := c.expect("CAP LS", isCmd("CAP"))
	if !strings.Contains(m.Trailing(), "sasl=PLAIN") || !strings.Contains(m.Trailing(), "echo-message") {
		t.Errorf("CAP LS = %q", m.Trailing())
	}
	c.send("CAP REQ :echo-message bogus")
	c.expect("NAK", func(m *irc.Message) bool { return m.Command == "CAP" && m.Param(1) == "NAK" })
	// Registration waits for CAP END.
	c.send("PASS :"+testPassword, "NICK x", "USER x 0 * :x")
	c.send("CAP END")
	c.expect("001", isCmd("001"))
}

func saslPlain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestClientSASLPlain(t *testing.T) {
	t.Parallel()
	env := startLonelyProxy(t)

	bad := dialTest(t, env.addr)
	bad.send("CAP LS 302", "CAP REQ :sasl", "NICK x", "USER x 0 * :x", "AUTHENTICATE PLAIN")
	bad.expect("AUTHENTICATE +", isCmd("AUTHENTICATE"))
	bad.send("AUTHENTICATE " + saslPlain("test", "wrong"))
	bad.expect("904", isCmd("904"))
	bad.send("CAP END")
	bad.expect("464 without SASL or PASS", isCmd("464"))
	bad.expectClosed()

	// Good SASL selects the network by username.
	c := dialTest(t, env.addr)
	c.send("CAP LS 302", "CAP REQ :sasl", "NICK x", "USER x 0 * :x", "AUTHENTICATE PLAIN")
	c.expect("AUTHENTICATE +", isCmd("AUTHENTICATE"))
	c.send("AUTHENTICATE " + saslPlain("me/other", testPassword))
	c.expect("903", isCmd("903"))
	c.send("CAP END")
	m := c.expect("001", isCmd("001"))
	if m.Param(0) != "carol" {
		t.Errorf("SASL user me/other attached to %q, want network other (nick carol)", m.Param(0))
	}
	c.expect("not connected notice", serviceSays("not connected"))

	// The service answers without an upstream.
	c.send("PRIVMSG *otr :help")
	c.expect("help", serviceSays("start <nick>"))
	c.send("PRIVMSG *otr :fingerprint me")
	c.expect("own fingerprint", serviceSays(testKey(t, 1).Fingerprint().String()))
	c.send("PRIVMSG *otr :bogus")
	c.expect("unknown command", serviceSays("unknown command"))
	c.send("PRIVMSG *otr :policy bob always")
	c.expect("policy set", serviceSays("policy is now always"))
	c.send("PRIVMSG *otr :status bob")
	c.expect("policy shown", serviceSays("policy always"))
	c.send("PRIVMSG *otr :trust bob " + strings.Repeat("AB12CD34", 5))
	c.expect("no blind trust of a key bob never presented", serviceSays("not a key bob has presented"))
	c.send("PRIVMSG bob :hello")
	c.expect("not sent while down", serviceSays("NOT sent"))
	c.send("PING :abc")
	c.expect("PONG", func(m *irc.Message) bool { return m.Command == "PONG" && m.Trailing() == "abc" })
}

func TestTLSListener(t *testing.T) {
	t.Parallel()
	cert, der := selfSigned(t)
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cfg := testConfig("127.0.0.1:1")
	cfg.Listen = []config.ListenConfig{{Address: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile}}
	env := startProxy(t, cfg, Options{})
	nc, err := tls.Dial("tcp", env.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	c := newTestConn(t, nc, true)
	c.send("PASS :"+testPassword, "NICK x", "USER x 0 * :x")
	c.expect("001 over TLS", isCmd("001"))
}

// TestPreLoginConnectionsCapped: at most maxUnauthenticated connections
// may be logging in at once; the next one is told why and closed, and a
// client can log in again once one of them is gone (defect 4 of the
// hostile-load issue).
func TestPreLoginConnectionsCapped(t *testing.T) {
	t.Parallel()
	env := startLonelyProxy(t)
	var idle []*testConn
	for range maxUnauthenticated {
		idle = append(idle, dialTest(t, env.addr))
	}
	// Each has been accepted and counted once it answers a PING.
	for i, c := range idle {
		c.send("PING :x" + strconv.Itoa(i))
		c.expect("PONG", isCmd("PONG"))
	}
	extra := dialTest(t, env.addr)
	m := extra.expect("refusal", isCmd("ERROR"))
	if !strings.Contains(m.Trailing(), "too many connections are logging in") {
		t.Errorf("refusal says %q", m.Trailing())
	}
	extra.expectClosed()
	idle[0].nc.Close()
	deadline := time.Now().Add(testTimeout)
	for {
		c := dialTest(t, env.addr)
		c.send("PASS :"+testPassword, "NICK late", "USER late 0 * :late")
		m := c.expect("welcome or refusal", func(m *irc.Message) bool { return m.Command == "001" || m.Command == "ERROR" })
		if m.Command == "001" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login possible after a pending connection left")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
