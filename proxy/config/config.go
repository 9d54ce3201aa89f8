// Package config reads and checks otrbnc's configuration file (TOML) and
// holds the helpers that make one: password hashing and the commented
// default configuration.
package config

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/bcrypt"
)

// Config is the whole configuration file of otrbnc.
type Config struct {
	// StateDir holds keys, fingerprints and instance tags.
	StateDir string `toml:"state_dir"`
	// PassphraseFile names a file whose content (one trailing line break
	// removed) encrypts the keystore at rest. $VAR and ${VAR} are
	// expanded from the environment, so systemd's LoadCredential= works as
	// "${CREDENTIALS_DIRECTORY}/passphrase"; a relative path is relative to
	// the configuration file. Empty means the keystore is not encrypted.
	PassphraseFile string `toml:"passphrase_file"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// PasswordHash is the bcrypt hash of the password clients must give
	// (PASS or SASL PLAIN).
	PasswordHash string `toml:"password_hash"`
	// Listen lists the downstream listeners.
	Listen []ListenConfig `toml:"listen"`
	// Network lists the upstream networks.
	Network []NetworkConfig `toml:"network"`
}

// ListenConfig is one downstream listener.
type ListenConfig struct {
	// Address is host:port; the default is 127.0.0.1:6667.
	Address string `toml:"address"`
	// TLSCert and TLSKey are PEM files; when both are set the listener
	// speaks TLS.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// Insecure allows a plaintext listener on a non-loopback address.
	Insecure bool `toml:"insecure"`
}

// NetworkConfig is one upstream IRC network.
type NetworkConfig struct {
	// Name identifies the network; clients pick it with their username
	// ("name" or "anything/name", optionally followed by "@client").
	Name string `toml:"name"`
	// Address is ircs://host[:port] (TLS, the default scheme) or
	// irc+insecure://host[:port] (plaintext, only when asked explicitly).
	Address string `toml:"address"`
	// TLSFingerprint pins the server certificate by the SHA-256 (64 hex
	// digits) or SHA-512 (128 hex digits) of its DER form; when set, CA
	// verification is replaced by the pin.
	TLSFingerprint string `toml:"tls_fingerprint"`
	// TLSInsecureSkipVerify disables certificate verification (tests only).
	TLSInsecureSkipVerify bool `toml:"tls_insecure_skip_verify"`
	// TLSClientCert and TLSClientKey are PEM files for a client certificate
	// (needed by SASL EXTERNAL).
	TLSClientCert string `toml:"tls_client_cert"`
	TLSClientKey  string `toml:"tls_client_key"`
	// Nick, Username and Realname are used to register.
	Nick     string `toml:"nick"`
	Username string `toml:"username"`
	Realname string `toml:"realname"`
	// ServerPassword is sent with PASS, if set.
	ServerPassword string `toml:"server_password"`
	// SASL configures authentication to the network.
	SASL SASLConfig `toml:"sasl"`
	// Policy is the default OTR policy: never, manual, opportunistic or
	// always.
	Policy string `toml:"policy"`
	// Peers overrides the policy per nick.
	Peers map[string]PeerConfig `toml:"peers"`
	// FragmentSize, when positive, pins the OTR fragment size instead of
	// computing it from our visible prefix.
	FragmentSize int `toml:"fragment_size"`
	// PlaintextMarker precedes unencrypted messages received while a
	// session is encrypted.
	PlaintextMarker string `toml:"plaintext_marker"`
	// Pacing chooses how lines sent to the network are paced: PacingAuto
	// (the default: by what the server's software allows), PacingStrict
	// (what every common server allows) or PacingOff.
	Pacing string `toml:"pacing"`
	// RateBurst and RateInterval, when set, replace the line count of the
	// pacing: up to RateBurst lines at once, then one line per
	// RateInterval.
	RateBurst    int      `toml:"rate_burst"`
	RateInterval Duration `toml:"rate_interval"`
	// PingInterval is how long the upstream may stay silent before we send
	// a PING; PingTimeout how long we then wait for anything.
	PingInterval Duration `toml:"ping_interval"`
	PingTimeout  Duration `toml:"ping_timeout"`
	// ReconnectMin and ReconnectMax bound the exponential reconnect delay.
	ReconnectMin Duration `toml:"reconnect_min"`
	ReconnectMax Duration `toml:"reconnect_max"`
	// Channels are joined after each registration.
	Channels []string `toml:"channels"`
	// PeerMemoryMB bounds, in MiB, the memory that other nicks can make
	// otrbnc hold for them on this network: partial fragmented messages,
	// key exchanges under way, conversations without a session. Beyond it
	// the state of the nicks idle longest is dropped (never a running
	// session or queued messages).
	PeerMemoryMB int `toml:"peer_memory_mb"`
	// BacklogLines bounds the lines kept in memory, per channel or nick,
	// for clients that are not attached.
	BacklogLines int `toml:"backlog_lines"`
}

// SASLConfig configures SASL towards the network.
type SASLConfig struct {
	// Mechanism is "", "plain" or "external".
	Mechanism string `toml:"mechanism"`
	Username  string `toml:"username"`
	Password  string `toml:"password"`
}

// PeerConfig holds per-peer settings.
type PeerConfig struct {
	// Policy overrides the network's policy for this nick.
	Policy string `toml:"policy"`
}

// Duration is a time.Duration written as a string such as "2s" or "1m30s".
type Duration struct{ time.Duration }

// UnmarshalText parses a duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", b, err)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: negative", b)
	}
	d.Duration = v
	return nil
}

// MarshalText formats a duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// networkName is the form of network names; they also name keystore
// accounts (files).
var networkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Bounds of fragment_size: the size of one OTR fragment line, header
// included. Below the minimum a data message needs too many lines; above
// the maximum a line no longer fits once the server adds our prefix.
const (
	MinFragmentSize = 200
	MaxFragmentSize = 480
)

// Bounds of backlog_lines: lines kept in memory per channel or nick.
const (
	DefaultPeerMemoryMB = 32
	MaxPeerMemoryMB     = 4096
	DefaultBacklogLines = 200
	MaxBacklogLines     = 10000
)

// Values of NetworkConfig.Pacing.
const (
	PacingAuto   = "auto"
	PacingStrict = "strict"
	PacingOff    = "off"
)

// Defaults used when a setting is absent.
const (
	DefaultListenAddress   = "127.0.0.1:6667"
	DefaultPlaintextMarker = "[NOT ENCRYPTED]"
	DefaultPolicy          = "manual"
	defaultPingInterval    = 90 * time.Second
	defaultPingTimeout     = 60 * time.Second
	defaultReconnectMin    = 10 * time.Second
	defaultReconnectMax    = 10 * time.Minute
)

// LoadConfig reads and validates the configuration file at path. Unknown
// keys are errors naming the key and its line.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.StateDir != "" && !filepath.IsAbs(cfg.StateDir) {
		cfg.StateDir = filepath.Join(filepath.Dir(path), cfg.StateDir)
	}
	return cfg, nil
}

// ParseConfig decodes, defaults and validates a configuration.
func ParseConfig(data []byte) (*Config, error) {
	var cfg Config
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		return nil, fmt.Errorf("parsing config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		var msgs []string
		for _, k := range und {
			if line := keyLine(data, k); line > 0 {
				msgs = append(msgs, fmt.Sprintf("line %d: unknown key %q", line, k.String()))
			} else {
				msgs = append(msgs, fmt.Sprintf("unknown key %q", k.String()))
			}
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	if err := cfg.ApplyDefaults(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// keyLine finds the line where key is defined, by a light scan of the TOML
// text that tracks table headers; 0 when not found.
func keyLine(data []byte, key toml.Key) int {
	var table []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			h := strings.Trim(line, "[] \t")
			if i := strings.Index(h, "]"); i >= 0 {
				h = h[:i]
			}
			table = splitDotted(h)
			if equalKeys(table, key) {
				return n
			}
			continue
		}
		eq := strings.Index(line, "=")
		if eq <= 0 {
			continue
		}
		full := append(append([]string(nil), table...), splitDotted(line[:eq])...)
		if equalKeys(full, key) || (len(full) < len(key) && equalKeys(full, key[:len(full)])) {
			return n
		}
	}
	return 0
}

func splitDotted(s string) []string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return parts
}

func equalKeys(a []string, b toml.Key) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ApplyDefaults fills in the defaults of every absent setting and checks
// the configuration; ParseConfig calls it, and so must whoever builds a
// Config by hand.
func (cfg *Config) ApplyDefaults() error {
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if _, err := ParseLogLevel(cfg.LogLevel); err != nil {
		return err
	}
	if cfg.PasswordHash == "" {
		return errors.New("password_hash is required (a bcrypt hash of the client password)")
	}
	if _, err := bcrypt.Cost([]byte(cfg.PasswordHash)); err != nil {
		return fmt.Errorf("password_hash is not a bcrypt hash: %w", err)
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []ListenConfig{{Address: DefaultListenAddress}}
	}
	for i := range cfg.Listen {
		l := &cfg.Listen[i]
		if l.Address == "" {
			l.Address = DefaultListenAddress
		}
		host, _, err := net.SplitHostPort(l.Address)
		if err != nil {
			return fmt.Errorf("listen %q: %w", l.Address, err)
		}
		if (l.TLSCert == "") != (l.TLSKey == "") {
			return fmt.Errorf("listen %q: tls_cert and tls_key go together", l.Address)
		}
		if l.TLSCert == "" && !l.Insecure && !isLoopbackHost(host) {
			return fmt.Errorf("listen %q: plaintext on a non-loopback address needs insecure = true (or set tls_cert/tls_key)", l.Address)
		}
	}
	if len(cfg.Network) == 0 {
		return errors.New("at least one [[network]] is required")
	}
	seen := map[string]bool{}
	for i := range cfg.Network {
		n := &cfg.Network[i]
		if err := n.ApplyDefaults(); err != nil {
			return fmt.Errorf("network %d (%q): %w", i+1, n.Name, err)
		}
		if seen[strings.ToLower(n.Name)] {
			return fmt.Errorf("network %q defined twice", n.Name)
		}
		seen[strings.ToLower(n.Name)] = true
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ApplyDefaults fills in the defaults of a network's absent settings and
// checks them.
func (n *NetworkConfig) ApplyDefaults() error {
	if n.Address == "" {
		return errors.New("address is required")
	}
	if _, _, _, err := ParseServerAddress(n.Address); err != nil {
		return err
	}
	if n.Name == "" {
		_, host, _, _ := ParseServerAddress(n.Address)
		n.Name = host
	}
	if !networkName.MatchString(n.Name) {
		return fmt.Errorf("name %q: use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)", n.Name)
	}
	if n.Nick == "" {
		return errors.New("nick is required")
	}
	if strings.ContainsAny(n.Nick, " ,:!@*?") {
		return fmt.Errorf("invalid nick %q", n.Nick)
	}
	if n.Username == "" {
		n.Username = n.Nick
	}
	if n.Realname == "" {
		n.Realname = n.Nick
	}
	switch strings.ToLower(n.SASL.Mechanism) {
	case "":
	case "plain":
		if n.SASL.Username == "" {
			n.SASL.Username = n.Nick
		}
		if n.SASL.Password == "" {
			return errors.New("sasl.password is required for PLAIN")
		}
	case "external":
		if n.TLSClientCert == "" {
			return errors.New("sasl mechanism external needs tls_client_cert and tls_client_key")
		}
	default:
		return fmt.Errorf("unknown sasl.mechanism %q (want plain or external)", n.SASL.Mechanism)
	}
	if (n.TLSClientCert == "") != (n.TLSClientKey == "") {
		return errors.New("tls_client_cert and tls_client_key go together")
	}
	if n.TLSFingerprint != "" {
		if _, err := ParseCertFingerprint(n.TLSFingerprint); err != nil {
			return err
		}
	}
	if n.Policy == "" {
		n.Policy = DefaultPolicy
	}
	if err := validPolicyName(n.Policy); err != nil {
		return err
	}
	for nick, p := range n.Peers {
		if err := validPolicyName(p.Policy); err != nil {
			return fmt.Errorf("peers.%s: %w", nick, err)
		}
	}
	if n.FragmentSize != 0 && (n.FragmentSize < MinFragmentSize || n.FragmentSize > MaxFragmentSize) {
		return fmt.Errorf("fragment_size %d out of range [%d, %d] (0 means automatic)", n.FragmentSize, MinFragmentSize, MaxFragmentSize)
	}
	if n.PlaintextMarker == "" {
		n.PlaintextMarker = DefaultPlaintextMarker
	}
	switch {
	case n.PeerMemoryMB == 0:
		n.PeerMemoryMB = DefaultPeerMemoryMB
	case n.PeerMemoryMB < 4 || n.PeerMemoryMB > MaxPeerMemoryMB:
		return fmt.Errorf("peer_memory_mb %d out of range [4, %d]", n.PeerMemoryMB, MaxPeerMemoryMB)
	}
	switch {
	case n.BacklogLines == 0:
		n.BacklogLines = DefaultBacklogLines
	case n.BacklogLines < 0 || n.BacklogLines > MaxBacklogLines:
		return fmt.Errorf("backlog_lines %d out of range [1, %d]", n.BacklogLines, MaxBacklogLines)
	}
	switch n.Pacing {
	case "":
		n.Pacing = PacingAuto
	case PacingAuto, PacingStrict, PacingOff:
	default:
		return fmt.Errorf("pacing %q: want %q, %q or %q", n.Pacing, PacingAuto, PacingStrict, PacingOff)
	}
	if n.RateBurst < 0 {
		return fmt.Errorf("rate_burst %d: want a positive number of lines", n.RateBurst)
	}
	if n.RateInterval.Duration < 0 {
		return fmt.Errorf("rate_interval %s: want a positive duration", n.RateInterval.Duration)
	}
	if n.PingInterval.Duration == 0 {
		n.PingInterval.Duration = defaultPingInterval
	}
	if n.PingTimeout.Duration == 0 {
		n.PingTimeout.Duration = defaultPingTimeout
	}
	if n.ReconnectMin.Duration == 0 {
		n.ReconnectMin.Duration = defaultReconnectMin
	}
	if n.ReconnectMax.Duration == 0 {
		n.ReconnectMax.Duration = defaultReconnectMax
	}
	if n.ReconnectMax.Duration < n.ReconnectMin.Duration {
		n.ReconnectMax = n.ReconnectMin
	}
	return nil
}

func validPolicyName(p string) error {
	switch strings.ToLower(p) {
	case "never", "manual", "opportunistic", "always":
		return nil
	}
	return fmt.Errorf("unknown policy %q (want never, manual, opportunistic or always)", p)
}

// ParseServerAddress splits an upstream address into TLS use, host and
// port. Accepted forms: ircs://host[:port] (default port 6697),
// irc+insecure://host[:port] (default 6667), and host[:port] meaning ircs.
func ParseServerAddress(addr string) (useTLS bool, host, port string, err error) {
	if !strings.Contains(addr, "://") {
		addr = "ircs://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return false, "", "", fmt.Errorf("invalid address %q: %w", addr, err)
	}
	switch u.Scheme {
	case "ircs":
		useTLS, port = true, "6697"
	case "irc+insecure":
		useTLS, port = false, "6667"
	case "irc":
		return false, "", "", fmt.Errorf("address %q: plaintext must be asked for explicitly with irc+insecure://; use ircs:// for TLS", addr)
	default:
		return false, "", "", fmt.Errorf("address %q: unknown scheme %q (want ircs or irc+insecure)", addr, u.Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return false, "", "", fmt.Errorf("address %q: unexpected path", addr)
	}
	host = u.Hostname()
	if host == "" {
		return false, "", "", fmt.Errorf("address %q: missing host", addr)
	}
	if p := u.Port(); p != "" {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return false, "", "", fmt.Errorf("address %q: bad port: %w", addr, err)
		}
		port = p
	}
	return useTLS, host, port, nil
}

// ParseCertFingerprint decodes a SHA-256 or SHA-512 hex fingerprint;
// colons and spaces are ignored.
func ParseCertFingerprint(s string) ([]byte, error) {
	clean := strings.NewReplacer(":", "", " ", "").Replace(s)
	b, err := hex.DecodeString(clean)
	if err != nil || (len(b) != 32 && len(b) != 64) {
		return nil, fmt.Errorf("tls_fingerprint %q: want the SHA-256 (64 hex digits) or SHA-512 (128 hex digits) of the certificate", s)
	}
	return b, nil
}

// ParseLogLevel maps a level name to a slog level.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log_level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// GeneratePassword returns a random password suitable for clients.
func GeneratePassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashPassword returns the bcrypt hash stored in password_hash.
func HashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}

// DefaultConfigText returns a commented default configuration with the
// given bcrypt hash. It parses with ParseConfig.
func DefaultConfigText(passwordHash, stateDir string) string {
	return fmt.Sprintf(`# otrbnc configuration (TOML).
# Unknown keys are errors, so a typo is reported with its line.

# Where OTR keys, fingerprints and instance tags are stored (mode 0700).
state_dir = %q

# Encrypt the keys at rest with the passphrase held in this file:
# passphrase_file = "/path/to/passphrase"

# debug, info, warn or error. Private message text is never logged.
log_level = "info"

# bcrypt hash of the password your IRC client must send (server password /
# PASS, or SASL PLAIN). Make a new one with: otrbnc hash-password
password_hash = %q

# Where your IRC client connects. Plaintext is only allowed on loopback;
# add tls_cert/tls_key (PEM files) to listen with TLS.
[[listen]]
address = "127.0.0.1:6667"
# tls_cert = "/path/to/cert.pem"
# tls_key = "/path/to/key.pem"

# One [[network]] block per upstream network. Clients choose the network by
# their username: "libera" or "anything/libera", optionally followed by
# "@laptop" to name the client (each name gets its own backlog). The first
# network is the default.
[[network]]
name = "libera"
# ircs:// (TLS, verified) is the default; plaintext needs irc+insecure://.
address = "ircs://irc.libera.chat:6697"
nick = "otrbnc-user"
# username = "otrbnc-user"
# realname = "otrbnc user"
# Pin the server certificate (SHA-256 of the DER certificate) instead of CA checks:
# tls_fingerprint = "..."
# OTR policy for private messages: never, manual, opportunistic or always.
policy = "manual"
# Text put before unencrypted messages received during an encrypted session.
plaintext_marker = "[NOT ENCRYPTED]"
# OTR fragment size; 0 computes it from our visible nick!user@host.
fragment_size = 0
# Upstream pacing: "auto" paces lines by what the server's software allows
# (solanum, hybrid, InspIRCd, UnrealIRCd, ngIRCd; the strictest of them
# until it is known), "strict" always by the strictest, "off" not at all.
pacing = "auto"
# rate_burst and rate_interval replace the line count of the pacing: a
# burst of rate_burst lines, then one per rate_interval.
# rate_burst = 5
# rate_interval = "1s"
# channels = ["#otrbnc"]
# Lines kept in memory (never on disk), per channel or nick, for clients
# that are not attached.
backlog_lines = 200

# SASL towards the network (plain or external):
# [network.sasl]
# mechanism = "plain"
# username = "otrbnc-user"
# password = "secret"

# Per-nick policy overrides:
# [network.peers.alice]
# policy = "always"
`, stateDir, passwordHash)
}
