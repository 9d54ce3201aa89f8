package proxy

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
	"otrbnc/proxy/config"
)

// cloneConfig copies cfg deeply enough for Reload tests.
func cloneConfig(cfg *config.Config) *config.Config {
	c := *cfg
	c.Listen = slices.Clone(cfg.Listen)
	c.Network = slices.Clone(cfg.Network)
	for i := range c.Network {
		c.Network[i].Peers = maps.Clone(cfg.Network[i].Peers)
		c.Network[i].Channels = slices.Clone(cfg.Network[i].Channels)
	}
	return &c
}

func TestReloadAppliesWithoutDroppingClients(t *testing.T) {
	t.Parallel()
	cfg := testConfig("127.0.0.1:1")
	cfg.Network[0].Peers = map[string]config.PeerConfig{"Erin": {Policy: "never"}, "frank": {Policy: "always"}}
	env := startProxy(t, cfg, Options{})
	c := registerClient(t, env.addr, "alice")

	// Conversations that exist before the reload, and a policy set at run
	// time that the file does not mention.
	env.inNetwork(func(n *network) {
		for _, nick := range []string{"bob", "carol", "erin", "frank"} {
			n.peer(nick)
		}
	})
	c.send("PRIVMSG *otr :policy carol always")
	c.expect("policy reply", serviceSays("carol"))

	next := cloneConfig(env.cfg)
	newHash, err := bcrypt.GenerateFromPassword([]byte("new password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	next.PasswordHash = string(newHash)
	next.LogLevel = "debug"
	next.Listen[0].Address = "127.0.0.1:1"
	nc := &next.Network[0]
	nc.Policy = "opportunistic"
	nc.Peers = map[string]config.PeerConfig{"frank": {Policy: "always"}, "Dave": {Policy: "always"}}
	nc.PlaintextMarker = "[CLEAR]"
	nc.FragmentSize = 300
	nc.Nick = "alice2"
	nc.Channels = []string{"#new"}

	restart, err := env.srv.Reload(next)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	want := []string{"listen", "network test: nick", "network test: channels"}
	slices.Sort(want)
	slices.Sort(restart)
	if !slices.Equal(restart, want) {
		t.Errorf("restart list = %q, want %q", restart, want)
	}

	env.inNetwork(func(n *network) {
		check := func(nick string, want otrcore.Policy) {
			t.Helper()
			p := n.lookupPeer(nick)
			if got := p.conv.Policy(); got != want {
				t.Errorf("%s: conversation policy %v, want %v", nick, got, want)
			}
			if p.policy != want {
				t.Errorf("%s: recorded policy %v, want %v", nick, p.policy, want)
			}
			if got := n.decidePolicy(n.casemap.fold(nick)).policy; got != want {
				t.Errorf("%s: policy for new conversations %v, want %v", nick, got, want)
			}
		}
		check("bob", otrcore.PolicyOpportunistic)  // default changed in the file
		check("carol", otrcore.PolicyAlways)       // run-time override kept
		check("erin", otrcore.PolicyOpportunistic) // override removed from the file
		check("frank", otrcore.PolicyAlways)       // unchanged
		if got := n.decidePolicy("dave").policy; got != otrcore.PolicyAlways {
			t.Errorf("dave: %v, want always (new override, folded)", got)
		}
		if n.cfg.PlaintextMarker != "[CLEAR]" {
			t.Errorf("marker %q", n.cfg.PlaintextMarker)
		}
		if p := n.lookupPeer("bob"); p.fragSize != 300 || n.decidePolicy("bob").fragSize != 300 {
			t.Errorf("fragment size %d", p.fragSize)
		}
		if n.cfg.Nick != "alice" || len(n.cfg.Channels) != 0 {
			t.Errorf("settings needing a restart were applied: nick %q, channels %q", n.cfg.Nick, n.cfg.Channels)
		}
	})

	// The attached client is still there and sees the new settings.
	c.send("PRIVMSG *otr :status bob")
	c.expect("status after reload", serviceSays("fragment size 300"))

	// Passwords: the new one admits, the old one no longer does.
	good := dialTest(t, env.addr)
	good.send("PASS :new password", "NICK x", "USER test 0 * :x")
	good.expect("001 with the new password", isCmd("001"))
	bad := dialTest(t, env.addr)
	bad.send("PASS :"+testPassword, "NICK y", "USER test 0 * :y")
	bad.expect("464 with the old password", isCmd("464"))

	// A second reload with the same file changes nothing (the settings
	// that need a restart are still reported), and a policy set at run
	// time in between survives it.
	c.send("PRIVMSG *otr :policy bob never")
	c.expect("policy reply", serviceSays("bob"))
	restart2, err := env.srv.Reload(cloneConfig(next))
	slices.Sort(restart2)
	if err != nil || !slices.Equal(restart2, want) {
		t.Errorf("second reload: %q, %v; want %q", restart2, err, want)
	}
	env.inNetwork(func(n *network) {
		if got := n.lookupPeer("bob").conv.Policy(); got != otrcore.PolicyNever {
			t.Errorf("bob after a no-op reload: %v, want never", got)
		}
	})
	c.send("PING :still-here")
	c.expect("PONG", func(m *irc.Message) bool {
		return m.Command == "PONG" && strings.Contains(strings.Join(m.Params, " "), "still-here")
	})
}

func TestReloadRestartNeeded(t *testing.T) {
	t.Parallel()
	base := testConfig("127.0.0.1:1")
	base.Network = append(base.Network, base.Network[0])
	base.Network[1].Name = "other"
	if err := base.ApplyDefaults(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		change func(c *config.Config)
		want   []string
	}{
		{"nothing", func(c *config.Config) {}, nil},
		{"reloadable only", func(c *config.Config) {
			c.LogLevel = "error"
			c.PasswordHash = "x"
			c.Network[1].Policy = "always"
			c.Network[1].Peers = map[string]config.PeerConfig{"a": {Policy: "never"}}
		}, nil},
		{"state", func(c *config.Config) { c.StateDir = "/elsewhere"; c.PassphraseFile = "/p" }, []string{"state_dir", "passphrase_file"}},
		{"added", func(c *config.Config) {
			c.Network = append(c.Network, c.Network[0])
			c.Network[2].Name = "third"
		}, []string{"network third: added"}},
		{"removed", func(c *config.Config) { c.Network = c.Network[:1] }, []string{"network other: removed"}},
		{"reordered", func(c *config.Config) { c.Network[0], c.Network[1] = c.Network[1], c.Network[0] }, []string{"network order (the first network is the default for clients)"}},
		{"upstream", func(c *config.Config) {
			c.Network[0].Address = "ircs://example.net"
			c.Network[0].SASL.Password = "pw"
			c.Network[0].RateInterval = config.Duration{Duration: time.Hour}
		}, []string{"network test: address", "network test: sasl", "network test: rate_interval"}},
	}
	for _, tc := range cases {
		next := cloneConfig(base)
		tc.change(next)
		got := restartNeeded(base, next)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestReloadNil(t *testing.T) {
	t.Parallel()
	env := startProxy(t, testConfig("127.0.0.1:1"), Options{})
	if _, err := env.srv.Reload(nil); err == nil {
		t.Error("Reload(nil) succeeded")
	}
	bad := cloneConfig(env.cfg)
	bad.Network[0].Policy = "sometimes"
	if _, err := env.srv.Reload(bad); err == nil || !strings.Contains(err.Error(), "policy") {
		t.Errorf("bad policy: %v", err)
	}
	// Nothing was applied: the old password still works.
	registerClient(t, env.addr, "alice")
}
