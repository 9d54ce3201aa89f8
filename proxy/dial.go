package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/proxy/config"
)

// backoff computes reconnect delays: exponential from min to max, plus up
// to a quarter of the delay as random jitter.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

// next returns the delay before the next attempt and doubles the base.
func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur
	b.cur *= 2
	if b.cur > b.max {
		b.cur = b.max
	}
	if q := int64(d / 4); q > 0 {
		d += time.Duration(rand.Int64N(q + 1))
	}
	return d
}

func (b *backoff) reset() { b.cur = 0 }

// registration is what we learnt while registering upstream.
type registration struct {
	nick       string
	user, host string
	welcome    []*irc.Message // 001 and what preceded the end of registration
	caps       map[string]bool
	sasl       bool // logged in with SASL
}

// dialUpstream connects to the network, with TLS unless irc+insecure was
// asked for.
func dialUpstream(ctx context.Context, cfg *config.NetworkConfig, pace pacing, logger *slog.Logger) (*ircConn, error) {
	useTLS, host, port, err := config.ParseServerAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: upstreamDialTimeout}
	dctx, cancel := context.WithTimeout(ctx, upstreamDialTimeout)
	defer cancel()
	nc, err := d.DialContext(dctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", cfg.Address, err)
	}
	if useTLS {
		tc, err := upstreamTLSConfig(cfg, host)
		if err != nil {
			nc.Close()
			return nil, err
		}
		tconn := tls.Client(nc, tc)
		if err := tconn.HandshakeContext(dctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", cfg.Address, err)
		}
		nc = tconn
	}
	return newIRCConn(nc, connOptions{
		queue:        4096,
		pacer:        newPacer(pace, nil),
		pingInterval: cfg.PingInterval.Duration,
		pingTimeout:  cfg.PingTimeout.Duration,
		logger:       logger,
	}), nil
}

// upstreamTLSConfig verifies the server with the system roots, or with the
// configured certificate pin instead.
func upstreamTLSConfig(cfg *config.NetworkConfig, host string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSClientCert, cfg.TLSClientKey)
		if err != nil {
			return nil, fmt.Errorf("loading TLS client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if cfg.TLSFingerprint != "" {
		pin, err := config.ParseCertFingerprint(cfg.TLSFingerprint)
		if err != nil {
			return nil, err
		}
		tc.InsecureSkipVerify = true // replaced by the pin check below
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			return checkCertPin(cs.PeerCertificates[0], pin)
		}
	} else if cfg.TLSInsecureSkipVerify {
		tc.InsecureSkipVerify = true
	}
	return tc, nil
}

func checkCertPin(cert *x509.Certificate, pin []byte) error {
	var sum []byte
	if len(pin) == sha256.Size {
		s := sha256.Sum256(cert.Raw)
		sum = s[:]
	} else {
		s := sha512.Sum512(cert.Raw)
		sum = s[:]
	}
	if subtle.ConstantTimeCompare(sum, pin) != 1 {
		return fmt.Errorf("server certificate fingerprint %x does not match the pinned one", sum)
	}
	return nil
}

// errSASL marks an authentication refusal by the network.
var errSASL = errors.New("SASL authentication failed")

// registerUpstream runs CAP, SASL, PASS/NICK/USER until RPL_WELCOME.
func registerUpstream(ctx context.Context, c *ircConn, cfg *config.NetworkConfig) (*registration, error) {
	ctx, cancel := context.WithTimeout(ctx, upstreamRegisterTimeout)
	defer cancel()
	reg := &registration{nick: cfg.Nick, caps: map[string]bool{}}
	mech := strings.ToUpper(cfg.SASL.Mechanism)
	send := func(m *irc.Message) { c.SendMessage(m) }
	send(msg("", "CAP", "LS", "302"))
	if cfg.ServerPassword != "" {
		send(msg("", "PASS", cfg.ServerPassword))
	}
	send(msg("", "NICK", reg.nick))
	send(msg("", "USER", cfg.Username, "0", "*", cfg.Realname))
	var ls []string
	capDone := false
	nickTries := 0
	for {
		var m *irc.Message
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("registration: %w", ctx.Err())
		case mm, ok := <-c.In():
			if !ok {
				return nil, fmt.Errorf("registration: connection closed: %w", c.Err())
			}
			m = mm
		}
		switch m.Command {
		case "PING":
			c.sendPriority(formatMessage(msg("", "PONG", m.Params...)))
		case "CAP":
			if len(m.Params) < 3 {
				continue
			}
			switch strings.ToUpper(m.Params[1]) {
			case "LS":
				more := len(m.Params) >= 4 && m.Params[2] == "*"
				ls = append(ls, strings.Fields(m.Trailing())...)
				if more {
					continue
				}
				var want []string
				for _, cp := range ls {
					name, val, _ := strings.Cut(cp, "=")
					switch name {
					case "sasl":
						if mech != "" && (val == "" || containsFold(strings.Split(val, ","), mech)) {
							want = append(want, name)
						}
					case "chghost", "multi-prefix", "server-time", "message-tags", "batch", "labeled-response":
						// server-time and batch tell live messages from
						// history (history.go); message-tags carries
						// clients' tags; labeled-response names the
						// command each reply answers (routing.go).
						// echo-message is never asked: otrbnc echoes
						// plaintext itself.
						want = append(want, name)
					}
				}
				if mech != "" && !containsFold(want, "sasl") {
					return nil, fmt.Errorf("%w: the server does not offer SASL %s", errSASL, mech)
				}
				if len(want) == 0 {
					send(msg("", "CAP", "END"))
					capDone = true
				} else {
					send(msg("", "CAP", "REQ", strings.Join(want, " ")))
				}
			case "ACK":
				for _, cp := range strings.Fields(m.Trailing()) {
					reg.caps[strings.TrimPrefix(cp, "-")] = !strings.HasPrefix(cp, "-")
				}
				if mech != "" && reg.caps["sasl"] {
					send(msg("", "AUTHENTICATE", mech))
				} else if !capDone {
					send(msg("", "CAP", "END"))
					capDone = true
				}
			case "NAK":
				if mech != "" {
					return nil, fmt.Errorf("%w: the server refused the sasl capability", errSASL)
				}
				send(msg("", "CAP", "END"))
				capDone = true
			}
		case "AUTHENTICATE":
			if m.Param(0) != "+" {
				continue
			}
			var payload []byte
			if mech == "PLAIN" {
				payload = []byte(cfg.SASL.Username + "\x00" + cfg.SASL.Username + "\x00" + cfg.SASL.Password)
			}
			for _, chunk := range saslChunks(payload) {
				send(msg("", "AUTHENTICATE", chunk))
			}
		case "903": // RPL_SASLSUCCESS
			reg.sasl = true
			send(msg("", "CAP", "END"))
			capDone = true
		case "902", "904", "905", "906", "908":
			return nil, fmt.Errorf("%w: %s %s", errSASL, m.Command, m.Trailing())
		case "432", "433", "436", "437":
			nickTries++
			if nickTries > 8 {
				return nil, fmt.Errorf("registration: no acceptable nick (last %s)", reg.nick)
			}
			reg.nick = fallbackNick(cfg.Nick, nickTries)
			send(msg("", "NICK", reg.nick))
		case "464", "465":
			return nil, fmt.Errorf("registration refused: %s %s", m.Command, m.Trailing())
		case "ERROR":
			return nil, fmt.Errorf("registration: server closed the link: %s", m.Trailing())
		case "001":
			reg.nick = m.Param(0)
			reg.welcome = append(reg.welcome, m)
			if u, h, ok := prefixFromWelcome(m.Trailing(), reg.nick); ok {
				reg.user, reg.host = u, h
			}
			return reg, nil
		}
	}
}

// saslChunks encodes an AUTHENTICATE payload in 400-byte pieces; "+"
// stands for an empty payload or ends one that filled its last piece.
func saslChunks(payload []byte) []string {
	enc := base64.StdEncoding.EncodeToString(payload)
	if enc == "" {
		return []string{"+"}
	}
	var out []string
	for len(enc) >= 400 {
		out = append(out, enc[:400])
		enc = enc[400:]
	}
	if enc == "" {
		enc = "+"
	}
	return append(out, enc)
}

// fallbackNick returns the nick to try after try refusals.
func fallbackNick(nick string, try int) string {
	if try <= 3 {
		return nick + strings.Repeat("_", try)
	}
	return fmt.Sprintf("%s%d", nick, rand.IntN(1000))
}

// prefixFromWelcome finds "nick!user@host" at the end of a 001 text.
func prefixFromWelcome(text, nick string) (user, host string, ok bool) {
	f := strings.Fields(text)
	if len(f) == 0 {
		return "", "", false
	}
	p := irc.ParsePrefix(f[len(f)-1])
	if p.User == "" || p.Host == "" || !strings.EqualFold(p.Name, nick) {
		return "", "", false
	}
	return p.User, p.Host, true
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
