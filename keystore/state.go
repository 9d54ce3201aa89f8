package keystore

import (
	"bytes"
	"cmp"
	"crypto/dsa" //nolint:staticcheck // OTR v2/v3 mandates DSA.
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"otrbnc/otrcore"
)

// minInstanceTag is the smallest valid OTR v3 instance tag.
const minInstanceTag = 0x100

// A TrustLevel says whether, and how, the user verified a fingerprint.
type TrustLevel uint8

const (
	// TrustNone means the fingerprint has not been verified.
	TrustNone TrustLevel = iota
	// TrustManual means the user compared the fingerprint out of band.
	TrustManual
	// TrustSMP means the Socialist Millionaires' Protocol succeeded.
	TrustSMP
)

// String returns "none", "manual" or "smp".
func (t TrustLevel) String() string {
	switch t {
	case TrustNone:
		return "none"
	case TrustManual:
		return "manual"
	case TrustSMP:
		return "smp"
	}
	return fmt.Sprintf("TrustLevel(%d)", uint8(t))
}

// A Sighting records that a fingerprint was presented under a nick.
type Sighting struct {
	Nick      string
	FirstSeen time.Time
	LastSeen  time.Time
}

// FingerprintInfo is everything an account knows about one fingerprint.
type FingerprintInfo struct {
	Fingerprint otrcore.Fingerprint
	Trust       TrustLevel
	// VerifiedAt is when Trust was last set to TrustManual or TrustSMP
	// (for trust imported from libotr, the time of the import). It is zero
	// when Trust is TrustNone.
	VerifiedAt time.Time
	// Seen lists the nicks the fingerprint was presented under, ordered by
	// first sighting. It is empty for a fingerprint that was trusted before
	// ever being seen.
	Seen []Sighting
}

// SeenResult describes a fingerprint presented by a peer, as reported by
// [Account.SeenFingerprint]. It reflects the state before the sighting was
// recorded.
type SeenResult struct {
	// NewFingerprint reports that the fingerprint had never been seen
	// under any nick.
	NewFingerprint bool
	// NewForPeer reports that the fingerprint had never been seen under
	// this peer's nick. It is implied by NewFingerprint.
	NewForPeer bool
	// OtherFingerprints lists the other fingerprints this nick has
	// presented before, ordered by first sighting. When NewForPeer is set
	// and this is not empty, the peer's key changed: someone else may be
	// using the nick.
	OtherFingerprints []otrcore.Fingerprint
	// OtherNicks lists, sorted, the other nicks this fingerprint has been
	// seen under.
	OtherNicks []string
	// Trust is the fingerprint's trust. Trust belongs to the fingerprint,
	// whichever nick presents it.
	Trust TrustLevel
}

// record is what an account stores for one fingerprint.
type record struct {
	trust      TrustLevel
	verifiedAt time.Time
	seen       []Sighting // ordered by FirstSeen, then Nick
}

// state is an account's persistent state. A state is never modified after
// it has been published to readers; updates work on a clone.
type state struct {
	tag uint32
	key *dsa.PrivateKey
	fps map[otrcore.Fingerprint]*record
}

func (st *state) clone() *state {
	c := &state{tag: st.tag, key: st.key, fps: make(map[otrcore.Fingerprint]*record, len(st.fps))}
	for fp, r := range st.fps {
		rc := *r
		rc.seen = slices.Clone(r.seen)
		c.fps[fp] = &rc
	}
	return c
}

func (st *state) sortedFingerprints() []otrcore.Fingerprint {
	return slices.SortedFunc(maps.Keys(st.fps), func(a, b otrcore.Fingerprint) int { return bytes.Compare(a[:], b[:]) })
}

func (r *record) sighting(nick string) *Sighting {
	for i := range r.seen {
		if r.seen[i].Nick == nick {
			return &r.seen[i]
		}
	}
	return nil
}

func (r *record) sortSeen() {
	slices.SortStableFunc(r.seen, func(a, b Sighting) int {
		return cmp.Or(a.FirstSeen.Compare(b.FirstSeen), strings.Compare(a.Nick, b.Nick))
	})
}

func (r *record) info(fp otrcore.Fingerprint) FingerprintInfo {
	return FingerprintInfo{Fingerprint: fp, Trust: r.trust, VerifiedAt: r.verifiedAt, Seen: slices.Clone(r.seen)}
}

// peerFingerprints returns the fingerprints seen under nick, ordered by
// first sighting under that nick, then by value.
func (st *state) peerFingerprints(nick string) []otrcore.Fingerprint {
	type entry struct {
		fp    otrcore.Fingerprint
		first time.Time
	}
	var es []entry
	for fp, r := range st.fps {
		if s := r.sighting(nick); s != nil {
			es = append(es, entry{fp, s.FirstSeen})
		}
	}
	slices.SortFunc(es, func(a, b entry) int {
		return cmp.Or(a.first.Compare(b.first), bytes.Compare(a.fp[:], b.fp[:]))
	})
	out := make([]otrcore.Fingerprint, len(es))
	for i, e := range es {
		out[i] = e.fp
	}
	return out
}

// seen records that nick presented fp at now and reports what was known
// before.
func (st *state) seen(nick string, fp otrcore.Fingerprint, now time.Time) SeenResult {
	var res SeenResult
	for _, other := range st.peerFingerprints(nick) {
		if other != fp {
			res.OtherFingerprints = append(res.OtherFingerprints, other)
		}
	}
	r := st.fps[fp]
	if r == nil {
		res.NewFingerprint = true
		r = new(record)
		st.fps[fp] = r
	}
	for _, s := range r.seen {
		if s.Nick != nick {
			res.OtherNicks = append(res.OtherNicks, s.Nick)
		}
	}
	slices.Sort(res.OtherNicks)
	res.Trust = r.trust
	if s := r.sighting(nick); s != nil {
		if now.Before(s.FirstSeen) {
			s.FirstSeen = now
		}
		if now.After(s.LastSeen) {
			s.LastSeen = now
		}
	} else {
		res.NewForPeer = true
		r.seen = append(r.seen, Sighting{Nick: nick, FirstSeen: now, LastSeen: now})
	}
	r.sortSeen()
	return res
}

// setTrust sets the trust of fp, creating a record for a fingerprint not yet
// seen. Clearing the trust of a never-seen fingerprint removes it.
func (st *state) setTrust(fp otrcore.Fingerprint, level TrustLevel, now time.Time) {
	r := st.fps[fp]
	if r == nil {
		if level == TrustNone {
			return
		}
		r = new(record)
		st.fps[fp] = r
	}
	r.trust = level
	r.verifiedAt = time.Time{}
	if level != TrustNone {
		r.verifiedAt = now
	}
	if level == TrustNone && len(r.seen) == 0 {
		delete(st.fps, fp)
	}
}
