package keystore

import (
	"bytes"
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"otrbnc/otrcore"
)

const (
	fileFormat  = "otrbnc-keystore"
	fileVersion = 1
	filePrefix  = "account-"
	fileSuffix  = ".json"
	lockName    = "lock"

	// maxStateFile bounds how much of an account file is read.
	maxStateFile = 64 << 20
)

// Upper bounds, in bytes, of the parts of an account file, used to prove
// that with the limits in [Options] a file this version writes never
// exceeds maxStateFile (Open checks maxFileSize against it, and
// TestFileSizeAtLimits writes a file at the limits with worst-case
// content).
//
// The state is json.MarshalIndent with two-space indentation. One sighting
// is five lines at depth 4 and 5 ("{", "nick", "first_seen", "last_seen",
// "},"): 10 + (22+N) + 58 + 56 + 11 = 157+N bytes, where N is the encoded
// nick. A nick is at most MaxPeerName bytes of UTF-8 and encoding/json
// writes at most 6 bytes per byte (\u00XX for control characters and
// <, >, &), so N <= 6*MaxPeerName. Times are UTC with years 1 to 9999,
// at most 30 characters ("9999-12-31T23:59:59.999999999Z"). In a plaintext
// file the state is nested one level deeper, adding 2 bytes to each of
// the 5 lines: 167+N in all, below sightingBytes.
//
// One fingerprint without its sightings is seven lines at depth 2 and 3
// ("{", fingerprint of 40 digits, trust, verified_at, "seen": [, "]",
// "},"): 6 + 65 + 25 + 55 + 16 + 8 + 7 = 182 bytes, 196 in a plaintext
// file, below recordBytes.
//
// The rest of the state (instance tag, private key of 1024-bit p, g, y and
// 160-bit q, x in hexadecimal, brackets) is about 1,100 bytes, and the
// plaintext file's outer object about 100: below fixedBytes.
//
// So a state is at most inner = fixedBytes + F*(recordBytes +
// K*sightingBytes) bytes for F fingerprints of at most K nicks each. A
// plaintext file is at most inner bytes. A sealed file holds the state
// encrypted (16 bytes longer) and base64-encoded (4 bytes per 3, rounded
// up) in an outer object whose other fields (format, version, an account
// name of at most 64 bytes, Argon2id parameters, a salt of at most 64 and a
// nonce of 24 bytes, in base64) take less than sealedBytes. With the
// defaults, F = 4096 and K = 8:
//
//	sightingBytes = 170 + 6*128                   =        938
//	inner         = 4096 + 4096*(300 + 8*938)     = 31,969,280
//	sealed file  <= 4*((31,969,280+16+2)/3) + 1024 = 42,626,752
//
// which is less than maxStateFile = 67,108,864 by a third.
const (
	sightingBytes = 170 + 6*MaxPeerName
	recordBytes   = 300
	fixedBytes    = 4096
	sealedBytes   = 1024
)

// maxFileSize returns an upper bound of the size of an account file
// written with limits lim; see sightingBytes.
func maxFileSize(lim limits) int64 {
	if lim.fingerprints > maxStateFile/recordBytes || lim.nicksPerFP > maxStateFile/sightingBytes {
		return math.MaxInt64 // and the product below could overflow
	}
	inner := fixedBytes + int64(lim.fingerprints)*(recordBytes+int64(lim.nicksPerFP)*sightingBytes)
	return 4*((inner+16+2)/3) + sealedBytes
}

// Errors reported for state files. Each is wrapped together with the file's
// path; use errors.Is to test for them.
var (
	// ErrCorrupt means an account file is damaged: not valid JSON, or
	// holding values that cannot be right.
	ErrCorrupt = errors.New("keystore: corrupt state file")
	// ErrForeignFile means a file named like an account file was not
	// written by otrbnc's keystore, or belongs to another account.
	ErrForeignFile = errors.New("keystore: not an otrbnc keystore file for this account")
	// ErrUnsupportedVersion means an account file was written in a format
	// version this otrbnc does not know, for example by a newer release.
	ErrUnsupportedVersion = errors.New("keystore: unsupported state file version")
	// ErrPassphraseRequired means an account file is sealed and no
	// passphrase was configured.
	ErrPassphraseRequired = errors.New("keystore: state is encrypted and no passphrase was configured")
	// ErrWrongPassphrase means a sealed account file could not be opened
	// with the configured passphrase: the passphrase is wrong or the file
	// was tampered with.
	ErrWrongPassphrase = errors.New("keystore: wrong passphrase (or the state file was tampered with)")
)

// fileJSON is the outer structure of an account file.
type fileJSON struct {
	Format  string          `json:"format"`
	Version int             `json:"version"`
	Account string          `json:"account"`
	State   json.RawMessage `json:"state,omitempty"`
	Sealed  *sealedJSON     `json:"sealed,omitempty"`
}

// sealedJSON is an encrypted state.
type sealedJSON struct {
	KDF        string `json:"kdf"`
	Time       uint32 `json:"time"`
	MemoryKiB  uint32 `json:"memory_kib"`
	Threads    uint8  `json:"threads"`
	Salt       []byte `json:"salt"`
	AEAD       string `json:"aead"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// stateJSON is the content of an account.
type stateJSON struct {
	InstanceTag  uint32   `json:"instance_tag"`
	PrivateKey   *keyJSON `json:"private_key,omitempty"`
	Fingerprints []fpJSON `json:"fingerprints"`
}

type keyJSON struct {
	Type string `json:"type"`
	P    string `json:"p"`
	Q    string `json:"q"`
	G    string `json:"g"`
	Y    string `json:"y"`
	X    string `json:"x"`
}

type fpJSON struct {
	Fingerprint string     `json:"fingerprint"`
	Trust       string     `json:"trust"`
	VerifiedAt  *time.Time `json:"verified_at,omitempty"`
	Seen        []seenJSON `json:"seen"`
}

type seenJSON struct {
	Nick      string    `json:"nick"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// kdfParams are Argon2id parameters.
type kdfParams struct {
	time      uint32
	memoryKiB uint32
	threads   uint8
}

// defaultKDF follows RFC 9106's second recommended option.
var defaultKDF = kdfParams{time: 3, memoryKiB: 64 << 10, threads: 4}

// validKDF bounds parameters read from a file so that a crafted file cannot
// make Open allocate or compute without limit.
func validKDF(k kdfParams) bool {
	return k.time >= 1 && k.time <= 64 && k.threads >= 1 &&
		k.memoryKiB >= 8*uint32(k.threads) && k.memoryKiB <= 1<<20
}

// sealer holds a key derived from the passphrase for one salt.
type sealer struct {
	params kdfParams
	salt   []byte
	key    []byte
}

func newSealer(passphrase []byte, params kdfParams) (*sealer, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("keystore: generating salt: %w", err)
	}
	return deriveSealer(passphrase, params, salt), nil
}

func deriveSealer(passphrase []byte, params kdfParams, salt []byte) *sealer {
	key := argon2.IDKey(passphrase, salt, params.time, params.memoryKiB, params.threads, chacha20poly1305.KeySize)
	return &sealer{params: params, salt: bytes.Clone(salt), key: key}
}

// additionalData binds a sealed state to its format and account.
func additionalData(account string) []byte {
	var b []byte
	b = append(b, fileFormat...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, fileVersion)
	b = append(b, account...)
	return b
}

func (s *sealer) seal(account string, plaintext []byte) (*sealedJSON, error) {
	aead, err := chacha20poly1305.NewX(s.key)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keystore: generating nonce: %w", err)
	}
	return &sealedJSON{
		KDF:        "argon2id",
		Time:       s.params.time,
		MemoryKiB:  s.params.memoryKiB,
		Threads:    s.params.threads,
		Salt:       s.salt,
		AEAD:       "xchacha20poly1305",
		Nonce:      nonce,
		Ciphertext: aead.Seal(nil, nonce, plaintext, additionalData(account)),
	}, nil
}

// encodeState serializes st for account, sealing it when sl is not nil.
func encodeState(account string, st *state, sl *sealer) ([]byte, error) {
	inner, err := json.MarshalIndent(st.toJSON(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keystore: encoding state: %w", err)
	}
	f := fileJSON{Format: fileFormat, Version: fileVersion, Account: account}
	if sl != nil {
		if f.Sealed, err = sl.seal(account, inner); err != nil {
			return nil, err
		}
	} else {
		f.State = inner
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keystore: encoding state: %w", err)
	}
	return append(out, '\n'), nil
}

// decodeState parses an account file. It returns the sealer used (nil for a
// plaintext file) so later writes can reuse the derived key. Errors wrap one
// of the file error sentinels but do not name the file.
func decodeState(account string, data []byte, passphrase []byte) (*state, *sealer, error) {
	var f fileJSON
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, fmt.Errorf("%w: the file is empty", ErrCorrupt)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		if bytes.Contains(data, []byte(`"`+fileFormat+`"`)) {
			return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return nil, nil, ErrForeignFile
	}
	if f.Format != fileFormat {
		return nil, nil, ErrForeignFile
	}
	if f.Version != fileVersion {
		return nil, nil, fmt.Errorf("%w: version %d, this otrbnc reads version %d", ErrUnsupportedVersion, f.Version, fileVersion)
	}
	if f.Account != account {
		return nil, nil, fmt.Errorf("%w: it holds account %q", ErrForeignFile, f.Account)
	}
	var (
		inner []byte
		sl    *sealer
	)
	switch {
	case f.Sealed != nil && f.State == nil:
		s := f.Sealed
		p := kdfParams{time: s.Time, memoryKiB: s.MemoryKiB, threads: s.Threads}
		if s.KDF != "argon2id" || s.AEAD != "xchacha20poly1305" || !validKDF(p) ||
			len(s.Salt) < 16 || len(s.Salt) > 64 || len(s.Nonce) != chacha20poly1305.NonceSizeX {
			return nil, nil, fmt.Errorf("%w: unsupported or invalid sealing parameters", ErrCorrupt)
		}
		if len(passphrase) == 0 {
			return nil, nil, ErrPassphraseRequired
		}
		sl = deriveSealer(passphrase, p, s.Salt)
		aead, err := chacha20poly1305.NewX(sl.key)
		if err != nil {
			return nil, nil, fmt.Errorf("keystore: %w", err)
		}
		if inner, err = aead.Open(nil, s.Nonce, s.Ciphertext, additionalData(account)); err != nil {
			return nil, nil, ErrWrongPassphrase
		}
	case f.State != nil && f.Sealed == nil:
		inner = f.State
	default:
		return nil, nil, fmt.Errorf("%w: want exactly one of \"state\" and \"sealed\"", ErrCorrupt)
	}
	var sj stateJSON
	dec := json.NewDecoder(bytes.NewReader(inner))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sj); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("%w: data after the state", ErrCorrupt)
	}
	st, err := stateFromJSON(&sj)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return st, sl, nil
}

func (st *state) toJSON() *stateJSON {
	sj := &stateJSON{InstanceTag: st.tag, Fingerprints: []fpJSON{}}
	if k := st.key; k != nil {
		h := func(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }
		sj.PrivateKey = &keyJSON{Type: "dsa", P: h(k.P), Q: h(k.Q), G: h(k.G), Y: h(k.Y), X: h(k.X)}
	}
	for _, fp := range st.sortedFingerprints() {
		r := st.fps[fp]
		fj := fpJSON{Fingerprint: fp.Hex(), Trust: r.trust.String(), Seen: []seenJSON{}}
		if r.trust != TrustNone {
			t := r.verifiedAt.UTC()
			fj.VerifiedAt = &t
		}
		for _, s := range r.seen {
			fj.Seen = append(fj.Seen, seenJSON{Nick: s.Nick, FirstSeen: s.FirstSeen.UTC(), LastSeen: s.LastSeen.UTC()})
		}
		sj.Fingerprints = append(sj.Fingerprints, fj)
	}
	return sj
}

func stateFromJSON(sj *stateJSON) (*state, error) {
	if sj.InstanceTag < minInstanceTag {
		return nil, fmt.Errorf("instance tag %#x is below %#x", sj.InstanceTag, minInstanceTag)
	}
	fps := make(map[otrcore.Fingerprint]*record)
	var key *dsa.PrivateKey
	if kj := sj.PrivateKey; kj != nil {
		if kj.Type != "dsa" {
			return nil, fmt.Errorf("unsupported key type %q", kj.Type)
		}
		var n [5]*big.Int
		for i, s := range []string{kj.P, kj.Q, kj.G, kj.Y, kj.X} {
			b, err := hex.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("private key: %v", err)
			}
			n[i] = new(big.Int).SetBytes(b)
		}
		k := &dsa.PrivateKey{
			PublicKey: dsa.PublicKey{Parameters: dsa.Parameters{P: n[0], Q: n[1], G: n[2]}, Y: n[3]},
			X:         n[4],
		}
		if err := validateKey(k); err != nil {
			return nil, err
		}
		key = k
	}
	for _, fj := range sj.Fingerprints {
		var fp otrcore.Fingerprint
		if len(fj.Fingerprint) != 40 || strings.ToLower(fj.Fingerprint) != fj.Fingerprint {
			return nil, fmt.Errorf("fingerprint %q is not 40 lowercase hexadecimal digits", fj.Fingerprint)
		}
		if _, err := hex.Decode(fp[:], []byte(fj.Fingerprint)); err != nil {
			return nil, fmt.Errorf("fingerprint %q is not 40 lowercase hexadecimal digits", fj.Fingerprint)
		}
		if fps[fp] != nil {
			return nil, fmt.Errorf("fingerprint %s appears twice", fj.Fingerprint)
		}
		r := new(record)
		switch fj.Trust {
		case "none":
			r.trust = TrustNone
		case "manual":
			r.trust = TrustManual
		case "smp":
			r.trust = TrustSMP
		default:
			return nil, fmt.Errorf("fingerprint %s: unknown trust %q", fj.Fingerprint, fj.Trust)
		}
		if (r.trust == TrustNone) != (fj.VerifiedAt == nil) {
			return nil, fmt.Errorf("fingerprint %s: verified_at must be present exactly when trusted", fj.Fingerprint)
		}
		if fj.VerifiedAt != nil {
			r.verifiedAt = *fj.VerifiedAt
		}
		nicks := make(map[string]int) // index in r.seen
		for _, s := range fj.Seen {
			if s.Nick == "" {
				return nil, fmt.Errorf("fingerprint %s: empty nick", fj.Fingerprint)
			}
			if s.LastSeen.Before(s.FirstSeen) {
				return nil, fmt.Errorf("fingerprint %s: nick %q last seen before first seen", fj.Fingerprint, s.Nick)
			}
			// Earlier versions stored nicks that were not valid UTF-8,
			// which JSON turned into U+FFFD: two of them may now read
			// the same. They are merged rather than refused.
			if i, ok := nicks[s.Nick]; ok {
				o := &r.seen[i]
				o.FirstSeen = minTime(o.FirstSeen, s.FirstSeen)
				o.LastSeen = maxTime(o.LastSeen, s.LastSeen)
				continue
			}
			nicks[s.Nick] = len(r.seen)
			r.seen = append(r.seen, Sighting(s))
		}
		r.sortSeen()
		if len(r.seen) == 0 && r.trust == TrustNone {
			return nil, fmt.Errorf("fingerprint %s is neither seen nor trusted", fj.Fingerprint)
		}
		fps[fp] = r
	}
	return newState(sj.InstanceTag, key, fps), nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// accountFile returns the file name of account name.
func accountFile(name string) string { return filePrefix + name + fileSuffix }

// readStateFile reads an account file, enforcing the size bound. Its errors
// do not name the file.
func readStateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxStateFile {
		return nil, fmt.Errorf("%w: the file is %d bytes, more than the %d bytes otrbnc reads (earlier versions of otrbnc recorded every key any peer showed, without limit)",
			ErrCorrupt, fi.Size(), maxStateFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, fmt.Errorf("keystore: reading: %w", err)
	}
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("%w: the file is larger than the %d bytes otrbnc reads", ErrCorrupt, maxStateFile)
	}
	return data, nil
}
