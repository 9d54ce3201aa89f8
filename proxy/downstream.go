package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/irc.v4"
)

const (
	// serverName is the prefix of lines otrbnc makes up itself.
	serverName = "otrbnc"
	// downstreamRegisterTimeout bounds client registration.
	downstreamRegisterTimeout = 30 * time.Second
	// maxAuthFailures closes a client after this many bad SASL attempts.
	maxAuthFailures = 3
)

// downstream is one attached client. Its fields other than conn are owned
// by the network goroutine once attached.
type downstream struct {
	conn   *ircConn
	id     uint64
	nick   string // the nick the client believes it has
	user   string
	caps   map[string]bool
	logger *slog.Logger
	// now is the server's clock, for server-time tags.
	now func() time.Time
}

// hasCap reports whether the client negotiated capability name.
func (dc *downstream) hasCap(name string) bool { return dc.caps[name] }

// send queues messages to the client, with the tags its capabilities
// allow; a client that cannot keep up is disconnected rather than slowing
// everyone down.
func (dc *downstream) send(ms ...*irc.Message) {
	lines := make([]string, 0, len(ms))
	now := time.Now()
	if dc.now != nil {
		now = dc.now()
	}
	for _, m := range ms {
		if c := forClient(dc.caps, m, now); c != nil {
			lines = append(lines, formatMessage(c))
		}
	}
	if !dc.conn.Send(lines...) {
		dc.logger.Warn("client too slow or gone; disconnecting")
		dc.conn.Close()
	}
}

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

// handleClient serves one accepted connection: registration, then hands
// the client to its network.
func (s *Server) handleClient(ctx context.Context, nc net.Conn) {
	id := s.nextClientID.Add(1)
	logger := s.logger.With("client", id, "addr", nc.RemoteAddr().String())
	dc := &downstream{
		conn:   newIRCConn(nc, connOptions{queue: 8192, logger: logger}),
		id:     id,
		logger: logger,
		now:    s.opts.Now,
	}
	user, err := s.registerDownstream(ctx, dc)
	if err != nil {
		logger.Info("client not admitted", "err", err)
		dc.conn.Shutdown(2 * time.Second)
		return
	}
	n := s.pickNetwork(user)
	logger = logger.With("network", n.cfg.Name)
	dc.logger = logger
	logger.Info("client attached")
	if !n.post(ctx, evDownstreamAttach{dc: dc}) {
		dc.conn.Close()
		return
	}
	for m := range dc.conn.In() {
		if !n.post(ctx, evDownstreamMsg{dc: dc, m: m}) {
			break
		}
	}
	dc.conn.Close()
	n.post(ctx, evDownstreamDetach{dc: dc})
	logger.Info("client detached", "reason", dc.conn.Err())
}

// pickNetwork selects the network named by the username ("name" or
// "anything/name"); the first network is the default.
func (s *Server) pickNetwork(user string) *network {
	name := user
	if i := strings.LastIndexByte(user, '/'); i >= 0 {
		name = user[i+1:]
	}
	for _, n := range s.networks {
		if strings.EqualFold(n.cfg.Name, name) {
			return n
		}
	}
	return s.networks[0]
}
