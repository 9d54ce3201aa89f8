package keystore

import (
	"bytes"
	"cmp"
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"

	"otrbnc/otrcore"
)

// ErrLibotrFormat is wrapped by errors reporting a malformed libotr private
// key or fingerprints file.
var ErrLibotrFormat = errors.New("keystore: malformed libotr file")

// maxLibotrFile bounds how much of a libotr file is read.
const maxLibotrFile = 16 << 20

// A LibotrAccount names an account the way libotr does: by the account name
// and protocol the chat client passed to libotr. irssi and HexChat use the
// network tag and "IRC"; Pidgin uses the libpurple account name (for example
// "nick@irc.libera.chat") and protocol id (for example "prpl-irc").
type LibotrAccount struct {
	Name     string
	Protocol string
}

// String returns a, formatted as "name (protocol)".
func (a LibotrAccount) String() string {
	return fmt.Sprintf("%s (%s)", a.Name, a.Protocol)
}

// A LibotrKey is one account's private key from a libotr private key file.
type LibotrKey struct {
	Account LibotrAccount
	Key     *dsa.PrivateKey
}

// A LibotrFingerprint is one line of a libotr fingerprints file: a
// fingerprint that Account has seen from the contact named Peer.
type LibotrFingerprint struct {
	Peer        string
	Account     LibotrAccount
	Fingerprint otrcore.Fingerprint
	// Trust is libotr's free-text trust field. libotr treats any non-empty
	// value as trusted; libotr itself writes "smp" after a successful SMP
	// run, Pidgin "verified" and irssi "manual" for manual verification.
	Trust string
}

// Libotr is the content of a libotr private key file (otr.private_key in
// Pidgin, otr/otr.key in irssi and HexChat) and fingerprints file
// (otr.fingerprints, otr/otr.fp). Instance tag files are deliberately not
// supported: instance tags must not be copied between machines.
type Libotr struct {
	Keys         []LibotrKey
	Fingerprints []LibotrFingerprint
}

// ReadLibotr parses a libotr private key file from keys and a libotr
// fingerprints file from fingerprints. Either reader may be nil. Every key
// is validated as an OTR DSA key.
func ReadLibotr(keys, fingerprints io.Reader) (*Libotr, error) {
	l := new(Libotr)
	if keys != nil {
		data, err := readLimited(keys, "private key")
		if err != nil {
			return nil, err
		}
		if l.Keys, err = parseLibotrKeys(data); err != nil {
			return nil, err
		}
	}
	if fingerprints != nil {
		data, err := readLimited(fingerprints, "fingerprints")
		if err != nil {
			return nil, err
		}
		if l.Fingerprints, err = parseLibotrFingerprints(data); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func readLimited(r io.Reader, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxLibotrFile+1))
	if err != nil {
		return nil, fmt.Errorf("keystore: reading libotr %s file: %w", what, err)
	}
	if len(data) > maxLibotrFile {
		return nil, fmt.Errorf("%w: %s file is larger than %d bytes", ErrLibotrFormat, what, maxLibotrFile)
	}
	return data, nil
}

// Accounts returns the libotr accounts that have a key or a fingerprint in l,
// sorted by name and protocol.
func (l *Libotr) Accounts() []LibotrAccount {
	var accts []LibotrAccount
	for _, k := range l.Keys {
		accts = append(accts, k.Account)
	}
	for _, f := range l.Fingerprints {
		accts = append(accts, f.Account)
	}
	slices.SortFunc(accts, compareLibotrAccounts)
	return slices.Compact(accts)
}

func compareLibotrAccounts(a, b LibotrAccount) int {
	return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Protocol, b.Protocol))
}

// parseLibotrKeys interprets a libotr private key file:
//
//	(privkeys (account (name N) (protocol P) (private-key (dsa (p P) (q Q) (g G) (y Y) (x X)))) ...)
//
// Elements of an account and of a dsa list may come in any order; unknown
// elements are ignored, duplicates are an error.
func parseLibotrKeys(data []byte) ([]LibotrKey, error) {
	root, err := parseSexp(data)
	if err != nil {
		return nil, err
	}
	if listName(root) != "privkeys" {
		return nil, fmt.Errorf("%w: private key file does not start with (privkeys", ErrLibotrFormat)
	}
	var keys []LibotrKey
	seen := make(map[LibotrAccount]bool)
	for i, acct := range root.list[1:] {
		if listName(acct) != "account" {
			return nil, fmt.Errorf("%w: element %d of privkeys is not an (account ...) list", ErrLibotrFormat, i+1)
		}
		k, err := parseLibotrAccount(acct)
		if err != nil {
			return nil, fmt.Errorf("%w (account %d)", err, i+1)
		}
		if seen[k.Account] {
			return nil, fmt.Errorf("%w: two keys for account %v", ErrLibotrFormat, k.Account)
		}
		seen[k.Account] = true
		keys = append(keys, k)
	}
	return keys, nil
}

// listName returns the first atom of list e, or "" if e has none.
func listName(e *sexp) string {
	if !e.isList || len(e.list) == 0 || e.list[0].isList {
		return ""
	}
	return string(e.list[0].atom)
}

// fields returns the sub-lists of e keyed by their names, rejecting
// duplicates among the wanted names.
func fields(e *sexp, what string, want ...string) (map[string]*sexp, error) {
	m := make(map[string]*sexp)
	for _, c := range e.list[1:] {
		name := listName(c)
		if !slices.Contains(want, name) {
			continue
		}
		if m[name] != nil {
			return nil, fmt.Errorf("%w: duplicate (%s ...) in %s", ErrLibotrFormat, name, what)
		}
		m[name] = c
	}
	for _, name := range want {
		if m[name] == nil {
			return nil, fmt.Errorf("%w: missing (%s ...) in %s", ErrLibotrFormat, name, what)
		}
	}
	return m, nil
}

// atomValue returns the single atom of a (name value) list.
func atomValue(e *sexp) ([]byte, error) {
	if len(e.list) != 2 || e.list[1].isList {
		return nil, fmt.Errorf("%w: (%s ...) must hold exactly one atom", ErrLibotrFormat, listName(e))
	}
	return e.list[1].atom, nil
}

func parseLibotrAccount(e *sexp) (LibotrKey, error) {
	f, err := fields(e, "account", "name", "protocol", "private-key")
	if err != nil {
		return LibotrKey{}, err
	}
	var k LibotrKey
	name, err := atomValue(f["name"])
	if err != nil {
		return k, err
	}
	proto, err := atomValue(f["protocol"])
	if err != nil {
		return k, err
	}
	if bytes.IndexByte(name, 0) >= 0 || bytes.IndexByte(proto, 0) >= 0 {
		return k, fmt.Errorf("%w: account name or protocol contains a NUL byte", ErrLibotrFormat)
	}
	k.Account = LibotrAccount{Name: string(name), Protocol: string(proto)}
	pk := f["private-key"]
	if len(pk.list) != 2 || listName(pk.list[1]) != "dsa" {
		return k, fmt.Errorf("%w: account %v: private-key is not a single (dsa ...) key", ErrLibotrFormat, k.Account)
	}
	params, err := fields(pk.list[1], "dsa key", "p", "q", "g", "y", "x")
	if err != nil {
		return k, fmt.Errorf("%w (account %v)", err, k.Account)
	}
	n := make(map[string]*big.Int)
	for name, e := range params {
		v, err := atomValue(e)
		if err != nil {
			return k, fmt.Errorf("%w (account %v)", err, k.Account)
		}
		n[name] = new(big.Int).SetBytes(v)
	}
	k.Key = &dsa.PrivateKey{
		PublicKey: dsa.PublicKey{
			Parameters: dsa.Parameters{P: n["p"], Q: n["q"], G: n["g"]},
			Y:          n["y"],
		},
		X: n["x"],
	}
	if err := validateKey(k.Key); err != nil {
		return k, fmt.Errorf("account %v: %w", k.Account, err)
	}
	return k, nil
}

// WriteKeys writes l.Keys as a libotr private key file. The caller is
// responsible for writing it safely (mode 0600, atomically); irssi and Pidgin
// keep all of a user's keys in one file, so merge with existing keys first.
func (l *Libotr) WriteKeys(w io.Writer) error {
	root := &sexp{isList: true, list: []*sexp{{atom: []byte("privkeys")}}}
	seen := make(map[LibotrAccount]bool)
	for _, k := range l.Keys {
		if seen[k.Account] {
			return fmt.Errorf("keystore: two keys for libotr account %v", k.Account)
		}
		seen[k.Account] = true
		if k.Account.Name == "" || k.Account.Protocol == "" ||
			strings.IndexByte(k.Account.Name, 0) >= 0 || strings.IndexByte(k.Account.Protocol, 0) >= 0 {
			return fmt.Errorf("keystore: libotr account %q: name and protocol must be non-empty and free of NUL bytes", k.Account)
		}
		if err := validateKey(k.Key); err != nil {
			return fmt.Errorf("keystore: libotr account %v: %w", k.Account, err)
		}
		pair := func(name string, v *sexp) *sexp {
			return &sexp{isList: true, list: []*sexp{{atom: []byte(name)}, v}}
		}
		mpi := func(name string, n *big.Int) *sexp {
			// libotr writes MPIs in signed (two's complement) form, with a
			// leading zero byte when the top bit is set.
			b := n.Bytes()
			if len(b) > 0 && b[0]&0x80 != 0 {
				b = append([]byte{0}, b...)
			}
			return pair(name, &sexp{atom: b, binary: true})
		}
		dsaList := &sexp{isList: true, list: []*sexp{
			{atom: []byte("dsa")},
			mpi("p", k.Key.P), mpi("q", k.Key.Q), mpi("g", k.Key.G), mpi("y", k.Key.Y), mpi("x", k.Key.X),
		}}
		root.list = append(root.list, &sexp{isList: true, list: []*sexp{
			{atom: []byte("account")},
			pair("name", &sexp{atom: []byte(k.Account.Name)}),
			pair("protocol", &sexp{atom: []byte(k.Account.Protocol)}),
			pair("private-key", dsaList),
		}})
	}
	b := appendSexp(nil, root, 0)
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("keystore: writing libotr private key file: %w", err)
	}
	return nil
}

// parseLibotrFingerprints interprets a libotr fingerprints file: lines of
// peer, account name, protocol, fingerprint (40 hex digits) and an optional
// trust field, separated by tabs. Empty lines are skipped; a CR before the
// LF is tolerated. Anything else malformed is an error naming the line.
func parseLibotrFingerprints(data []byte) ([]LibotrFingerprint, error) {
	var out []LibotrFingerprint
	for n, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			continue
		}
		f := strings.SplitN(string(line), "\t", 5)
		if len(f) < 4 {
			return nil, fmt.Errorf("%w: fingerprints line %d: want 4 or 5 tab-separated fields, found %d", ErrLibotrFormat, n+1, len(f))
		}
		if f[0] == "" || f[1] == "" || f[2] == "" {
			return nil, fmt.Errorf("%w: fingerprints line %d: empty peer, account or protocol", ErrLibotrFormat, n+1)
		}
		if strings.IndexByte(string(line), 0) >= 0 {
			return nil, fmt.Errorf("%w: fingerprints line %d: NUL byte", ErrLibotrFormat, n+1)
		}
		var fp otrcore.Fingerprint
		if len(f[3]) != 40 {
			return nil, fmt.Errorf("%w: fingerprints line %d: fingerprint is not 40 hexadecimal digits", ErrLibotrFormat, n+1)
		}
		if _, err := hex.Decode(fp[:], []byte(f[3])); err != nil {
			return nil, fmt.Errorf("%w: fingerprints line %d: fingerprint is not 40 hexadecimal digits", ErrLibotrFormat, n+1)
		}
		e := LibotrFingerprint{
			Peer:        f[0],
			Account:     LibotrAccount{Name: f[1], Protocol: f[2]},
			Fingerprint: fp,
		}
		if len(f) == 5 {
			e.Trust = f[4]
		}
		out = append(out, e)
	}
	return out, nil
}

// WriteFingerprints writes l.Fingerprints as a libotr fingerprints file.
func (l *Libotr) WriteFingerprints(w io.Writer) error {
	var b bytes.Buffer
	for _, f := range l.Fingerprints {
		for _, s := range []string{f.Peer, f.Account.Name, f.Account.Protocol} {
			if s == "" || strings.ContainsAny(s, "\t\r\n\x00") {
				return fmt.Errorf("keystore: cannot write fingerprint line for peer %q, account %q: fields must be non-empty and free of tabs, line breaks and NUL", f.Peer, f.Account)
			}
		}
		if strings.ContainsAny(f.Trust, "\r\n\x00") {
			return fmt.Errorf("keystore: cannot write trust %q: it contains a line break or NUL", f.Trust)
		}
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s\n", f.Peer, f.Account.Name, f.Account.Protocol, f.Fingerprint.Hex(), f.Trust)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("keystore: writing libotr fingerprints file: %w", err)
	}
	return nil
}
