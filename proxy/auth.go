package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/irc.v4"
)

// clientRegistration is the state of a client before it is attached.
type clientRegistration struct {
	nick, user, pass string
	capNegotiating   bool
	caps             map[string]bool
	saslMech         string
	saslBuf          strings.Builder
	saslUser         string
	saslOK           bool
	authFailures     int
}

// registerDownstream runs the client's registration and authentication.
// It returns the username (which selects the network) on success. On
// failure it has already told the client why.
func (s *Server) registerDownstream(ctx context.Context, dc *downstream) (string, error) {
	reg := &clientRegistration{caps: map[string]bool{}}
	timer := time.NewTimer(downstreamRegisterTimeout)
	defer timer.Stop()
	reply := func(cmd string, params ...string) {
		dc.conn.SendMessage(msg(serverName, cmd, params...))
	}
	target := func() string {
		if reg.nick != "" {
			return reg.nick
		}
		return "*"
	}
	for {
		var m *irc.Message
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-timer.C:
			reply("ERROR", "Closing link: registration timed out")
			return "", errors.New("registration timed out")
		case mm, ok := <-dc.conn.In():
			if !ok {
				return "", fmt.Errorf("client left during registration: %w", dc.conn.Err())
			}
			m = mm
		}
		switch m.Command {
		case "CAP":
			s.handleRegistrationCap(dc, reg, m, target())
		case "AUTHENTICATE":
			if done := s.handleAuthenticate(dc, reg, m, target()); done && reg.authFailures >= maxAuthFailures {
				reply("ERROR", "Closing link: too many authentication failures")
				return "", errors.New("too many SASL failures")
			}
		case "PASS":
			reg.pass = m.Param(0)
		case "NICK":
			if m.Param(0) == "" {
				reply("431", target(), "No nickname given")
				continue
			}
			reg.nick = m.Param(0)
		case "USER":
			if len(m.Params) < 4 {
				reply("461", target(), "USER", "Not enough parameters")
				continue
			}
			reg.user = m.Param(0)
		case "PING":
			reply("PONG", serverName, m.Param(0))
		case "QUIT":
			return "", errors.New("client quit during registration")
		default:
			reply("451", target(), "You have not registered")
		}
		if reg.nick == "" || reg.user == "" || reg.capNegotiating {
			continue
		}
		user := reg.user
		if !reg.saslOK {
			if reg.pass == "" {
				// Nothing was guessed (failed SASL attempts were already
				// slowed down): say what is missing, without the delay.
				reply("464", target(), "Password required")
				reply("ERROR", "Closing link: password required (set your client's server password to otrbnc's client password, or log in with SASL PLAIN)")
				return "", errors.New("no password")
			}
			if !s.checkPassword(reg.pass) {
				s.authFailDelay(ctx)
				reply("464", target(), "Password incorrect")
				reply("ERROR", "Closing link: password incorrect")
				return "", errors.New("bad password")
			}
		} else if reg.saslUser != "" {
			user = reg.saslUser
		}
		dc.nick = reg.nick
		dc.user = user
		dc.caps = reg.caps
		return user, nil
	}
}

func (s *Server) authFailDelay(ctx context.Context) {
	if s.opts.AuthFailDelay <= 0 {
		return
	}
	t := time.NewTimer(s.opts.AuthFailDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// checkPassword compares pw with the configured bcrypt hash.
func (s *Server) checkPassword(pw string) bool {
	if pw == "" {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(s.passwordHash()), []byte(pw)) == nil
}

func (s *Server) handleRegistrationCap(dc *downstream, reg *clientRegistration, m *irc.Message, target string) {
	negotiating, end, replies := capCommand(reg.caps, target, m)
	if negotiating {
		reg.capNegotiating = true
	}
	if end {
		reg.capNegotiating = false
	}
	for _, r := range replies {
		dc.conn.SendMessage(r)
	}
}

// handleAuthenticate runs SASL PLAIN; done reports a finished attempt.
func (s *Server) handleAuthenticate(dc *downstream, reg *clientRegistration, m *irc.Message, target string) (done bool) {
	reply := func(cmd string, params ...string) { dc.conn.SendMessage(msg(serverName, cmd, params...)) }
	fail := func() bool {
		reg.authFailures++
		reg.saslMech = ""
		reg.saslBuf.Reset()
		reply("904", target, "SASL authentication failed")
		return true
	}
	arg := m.Param(0)
	if reg.saslOK {
		reply("907", target, "You have already authenticated using SASL")
		return false
	}
	if reg.saslMech == "" {
		if !reg.caps["sasl"] {
			reply("904", target, "SASL authentication failed: negotiate the sasl capability first")
			return false
		}
		if !strings.EqualFold(arg, "PLAIN") {
			reply("908", target, "PLAIN", "are available SASL mechanisms")
			return fail()
		}
		reg.saslMech = "PLAIN"
		reply("AUTHENTICATE", "+")
		return false
	}
	switch {
	case arg == "*":
		reg.saslMech = ""
		reg.saslBuf.Reset()
		reply("906", target, "SASL authentication aborted")
		return false
	case arg != "+":
		reg.saslBuf.WriteString(arg)
		if reg.saslBuf.Len() > 4096 {
			return fail()
		}
		if len(arg) == 400 {
			return false // more to come
		}
	}
	raw, err := base64.StdEncoding.DecodeString(reg.saslBuf.String())
	if err != nil {
		return fail()
	}
	authzid, authcid, pw, err := decodeSASLPlain(raw)
	if err != nil || (authzid != "" && authzid != authcid) || !s.checkPassword(pw) {
		s.authFailDelay(context.Background())
		return fail()
	}
	reg.saslOK = true
	reg.saslUser = authcid
	reg.saslMech = ""
	reg.saslBuf.Reset()
	nick := target
	reply("900", target, nick+"!"+authcid+"@"+serverName, authcid, "You are now logged in as "+authcid)
	reply("903", target, "SASL authentication successful")
	return true
}

// decodeSASLPlain splits a SASL PLAIN response.
func decodeSASLPlain(b []byte) (authzid, authcid, password string, err error) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) != 3 {
		return "", "", "", errors.New("malformed SASL PLAIN response")
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}
