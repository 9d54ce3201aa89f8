package proxy

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"otrbnc/otrcore"
	"otrbnc/proxy/config"
)

// reloadTimeout bounds how long Reload waits for each network goroutine.
const reloadTimeout = 10 * time.Second

// reloadState is what Reload changes outside the network goroutines. It
// lives in Server.
type reloadState struct {
	mu           sync.Mutex // serializes Reload
	passwordHash atomic.Pointer[string]
}

// Settings that Reload applies to a running server; every other setting
// that differs is reported as needing a restart. The names are TOML keys.
var (
	// reloadableTop are the top-level keys Reload applies ("network" is
	// compared network by network; log_level belongs to whoever built the
	// logger, see Reload).
	reloadableTop = map[string]bool{"password_hash": true, "log_level": true, "network": true}
	// reloadableNetwork are the [[network]] keys Reload applies.
	reloadableNetwork = map[string]bool{"policy": true, "peers": true, "plaintext_marker": true, "fragment_size": true}
)

// passwordHash returns the bcrypt hash clients are checked against: the
// one from the last Reload, or the configuration's.
func (s *Server) passwordHash() string {
	if h := s.reload.passwordHash.Load(); h != nil {
		return *h
	}
	return s.cfg.PasswordHash
}

// Reload applies cfg, a configuration read with config.LoadConfig or config.ParseConfig,
// to the running server without dropping any connection or ending any OTR
// session. Call it while Serve runs (otrbnc calls it on SIGHUP).
//
// What it applies:
//   - password_hash, for clients that connect from now on (attached
//     clients stay attached);
//   - per network: policy, peers (per-nick policies), plaintext_marker and
//     fragment_size, including for conversations already open.
//
// The configuration file is the lowest layer of a network's settings:
// what the user set with /msg *otr (policy, set, …, saved in the state
// directory) stays in effect over it, as it does at startup.
//
// log_level is not applied here: the caller built Options.Logger and owns
// its level (otrbnc uses a slog.LevelVar).
//
// Every other difference (listeners, state_dir, passphrase_file, networks
// added, removed or reordered, a network's address, TLS, nick, SASL,
// pacing, timeouts, channels, …) only takes effect after a restart; Reload
// returns those keys, one "key" or "network NAME: key" string each, so that
// the caller can say so (until otrbnc restarts, each reload reports them
// again). It returns an error, having applied nothing, if
// cfg cannot be applied, and an error naming the networks that did not
// answer in time.
func (s *Server) Reload(cfg *config.Config) (restart []string, err error) {
	if cfg == nil {
		return nil, errors.New("reload: no configuration")
	}
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	// Compared with the configuration the server started with: a change
	// that needs a restart keeps being reported until there is one.
	restart = restartNeeded(s.cfg, cfg)

	// Check everything before changing anything.
	type plan struct {
		n     *network
		nc    config.NetworkConfig
		def   otrcore.Policy
		peers map[string]otrcore.Policy
	}
	var plans []plan
	for _, n := range s.networks {
		nc := findNetworkConfig(cfg, n.cfg.Name) // Name never changes
		if nc == nil {
			continue // reported in restart
		}
		def, err := otrcore.ParsePolicy(nc.Policy)
		if err != nil {
			return nil, fmt.Errorf("reload: network %s: policy: %w", nc.Name, err)
		}
		peers := make(map[string]otrcore.Policy, len(nc.Peers))
		for nick, pc := range nc.Peers {
			p, err := otrcore.ParsePolicy(pc.Policy)
			if err != nil {
				return nil, fmt.Errorf("reload: network %s: peers.%s: %w", nc.Name, nick, err)
			}
			peers[nick] = p
		}
		plans = append(plans, plan{n: n, nc: *nc, def: def, peers: peers})
	}
	if cfg.PasswordHash == "" {
		return nil, errors.New("reload: password_hash is empty")
	}

	h := cfg.PasswordHash
	s.reload.passwordHash.Store(&h)
	var failed []string
	for _, p := range plans {
		ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
		ok := p.n.call(ctx, func(n *network) { n.applyReload(p.nc, p.def, p.peers) })
		cancel()
		if !ok {
			failed = append(failed, p.nc.Name)
		}
	}
	if len(failed) > 0 {
		return restart, fmt.Errorf("reload: network(s) %s did not answer within %s; their settings may not be reloaded", strings.Join(failed, ", "), reloadTimeout)
	}
	return restart, nil
}

func findNetworkConfig(cfg *config.Config, name string) *config.NetworkConfig {
	for i := range cfg.Network {
		if strings.EqualFold(cfg.Network[i].Name, name) {
			return &cfg.Network[i]
		}
	}
	return nil
}

// applyReload runs in the network goroutine: it replaces the
// configuration-file layer of the network's settings. What the user set
// with *otr (saved in the state directory) stays on top of it, as at
// startup.
func (n *network) applyReload(cfg config.NetworkConfig, def otrcore.Policy, peers map[string]otrcore.Policy) {
	n.otr.policy = def
	n.otr.policies = make(map[string]otrcore.Policy, len(peers))
	for nick, p := range peers {
		n.otr.policies[n.casemap.fold(nick)] = p
	}
	n.cfg.Policy = cfg.Policy
	n.cfg.Peers = cfg.Peers
	n.cfg.PlaintextMarker = cfg.PlaintextMarker
	n.cfg.FragmentSize = cfg.FragmentSize
	n.applyPolicies()
	n.logger.Info("network settings reloaded", "default_policy", def.String())
}

// restartNeeded lists the settings that differ between old and cfg and
// that Reload does not apply.
func restartNeeded(old, cfg *config.Config) []string {
	out := diffFields("", reflect.ValueOf(*old), reflect.ValueOf(*cfg), reloadableTop)
	var oldNames, newNames []string
	for _, n := range old.Network {
		oldNames = append(oldNames, n.Name)
	}
	for _, n := range cfg.Network {
		newNames = append(newNames, n.Name)
	}
	sameSet := len(oldNames) == len(newNames)
	for _, name := range newNames {
		o := findNetworkConfig(old, name)
		if o == nil {
			out = append(out, fmt.Sprintf("network %s: added", name))
			sameSet = false
			continue
		}
		nc := findNetworkConfig(cfg, name)
		out = append(out, diffFields("network "+name+": ", reflect.ValueOf(*o), reflect.ValueOf(*nc), reloadableNetwork)...)
	}
	for _, name := range oldNames {
		if findNetworkConfig(cfg, name) == nil {
			out = append(out, fmt.Sprintf("network %s: removed", name))
			sameSet = false
		}
	}
	if sameSet {
		for i := range oldNames {
			if !strings.EqualFold(oldNames[i], newNames[i]) {
				out = append(out, "network order (the first network is the default for clients)")
				break
			}
		}
	}
	return out
}

// diffFields compares the fields of two structs of the same type and
// returns prefix+key for each that differs, skipping the keys in skip.
func diffFields(prefix string, a, b reflect.Value, skip map[string]bool) []string {
	var out []string
	t := a.Type()
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			continue
		}
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if key == "" || key == "-" {
			key = t.Field(i).Name
		}
		if skip[key] {
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			out = append(out, prefix+key)
		}
	}
	return out
}
