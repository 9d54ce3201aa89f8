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
	"unicode/utf8"

	"otrbnc/otrcore"
)

// minInstanceTag is the smallest valid OTR v3 instance tag.
const minInstanceTag = 0x100

// MaxPeerName is the longest peer name, in bytes, that an account records.
// IRC networks limit nicks to 9 to 32 characters (NICKLEN); 128 bytes
// leaves room for any of them in UTF-8.
const MaxPeerName = 128

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
	// NotRecorded reports that the sighting was reported but not stored:
	// the nick already has [Options.MaxFingerprintsPerNick] fingerprints,
	// or the account [Options.MaxFingerprints], and all of them are
	// trusted, which are never evicted.
	NotRecorded bool
}

// limits bound what an account stores; see [Options].
type limits struct {
	fingerprints int // fingerprints, trusted or not
	perNick      int // fingerprints seen under one nick
	nicksPerFP   int // nicks one fingerprint was seen under
}

// record is what an account stores for one fingerprint. A record is never
// modified once it is in a state's map: changes replace it with a modified
// copy, so a snapshot of the map can be encoded while the state changes.
type record struct {
	trust      TrustLevel
	verifiedAt time.Time
	seen       []Sighting // ordered by FirstSeen, then Nick
}

// clone returns a copy of r that can be modified.
func (r *record) clone() *record {
	c := *r
	c.seen = slices.Clone(r.seen)
	return &c
}

// lastSeen returns the latest sighting of r under any nick.
func (r *record) lastSeen() time.Time {
	var t time.Time
	for _, s := range r.seen {
		if s.LastSeen.After(t) {
			t = s.LastSeen
		}
	}
	return t
}

func (r *record) sightingIndex(nick string) int {
	return slices.IndexFunc(r.seen, func(s Sighting) bool { return s.Nick == nick })
}

func (r *record) sortSeen() {
	slices.SortStableFunc(r.seen, func(a, b Sighting) int {
		return cmp.Or(a.FirstSeen.Compare(b.FirstSeen), strings.Compare(a.Nick, b.Nick))
	})
}

func (r *record) info(fp otrcore.Fingerprint) FingerprintInfo {
	return FingerprintInfo{Fingerprint: fp, Trust: r.trust, VerifiedAt: r.verifiedAt, Seen: slices.Clone(r.seen)}
}

// state is an account's persistent state. Its maps are changed in place;
// the records in them never are.
type state struct {
	tag uint32
	key *dsa.PrivateKey
	fps map[otrcore.Fingerprint]*record
	// nicks indexes fps: the fingerprints seen under each nick, in no
	// particular order. It is nil in a snapshot.
	nicks map[string][]otrcore.Fingerprint
	// untrusted orders the untrusted fingerprints for eviction. It is nil
	// in a snapshot.
	untrusted *lru
}

// newState returns a state holding fps, indexed.
func newState(tag uint32, key *dsa.PrivateKey, fps map[otrcore.Fingerprint]*record) *state {
	st := &state{tag: tag, key: key, fps: fps, nicks: make(map[string][]otrcore.Fingerprint), untrusted: newLRU(len(fps))}
	for fp, r := range fps {
		for _, s := range r.seen {
			st.nicks[s.Nick] = append(st.nicks[s.Nick], fp)
		}
		if r.trust == TrustNone {
			st.untrusted.set(fp, r.lastSeen())
		}
	}
	return st
}

// put stores r as the record of fp.
func (st *state) put(fp otrcore.Fingerprint, r *record) {
	st.fps[fp] = r
	if r.trust == TrustNone {
		st.untrusted.set(fp, r.lastSeen())
	} else {
		st.untrusted.remove(fp)
	}
}

// del removes the record of fp; the caller updates the nick index.
func (st *state) del(fp otrcore.Fingerprint) {
	delete(st.fps, fp)
	st.untrusted.remove(fp)
}

// clone returns a copy of st that can be changed without changing st. It
// copies the maps and the eviction order but shares the records, which
// never change.
func (st *state) clone() *state {
	c := &state{tag: st.tag, key: st.key, fps: maps.Clone(st.fps), nicks: make(map[string][]otrcore.Fingerprint, len(st.nicks)), untrusted: st.untrusted.clone()}
	for n, fps := range st.nicks {
		c.nicks[n] = slices.Clone(fps)
	}
	return c
}

// snapshot returns a copy of st to encode: it shares the records and has
// no nick index.
func (st *state) snapshot() *state {
	return &state{tag: st.tag, key: st.key, fps: maps.Clone(st.fps)}
}

func (st *state) sortedFingerprints() []otrcore.Fingerprint {
	return slices.SortedFunc(maps.Keys(st.fps), func(a, b otrcore.Fingerprint) int { return bytes.Compare(a[:], b[:]) })
}

// peerFingerprints returns the fingerprints seen under nick, ordered by
// first sighting under that nick, then by value.
func (st *state) peerFingerprints(nick string) []otrcore.Fingerprint {
	fps := slices.Clone(st.nicks[nick])
	first := func(fp otrcore.Fingerprint) time.Time {
		r := st.fps[fp]
		return r.seen[r.sightingIndex(nick)].FirstSeen
	}
	slices.SortFunc(fps, func(a, b otrcore.Fingerprint) int {
		return cmp.Or(first(a).Compare(first(b)), bytes.Compare(a[:], b[:]))
	})
	return fps
}

// checkPeer reports whether nick can be recorded: 1 to [MaxPeerName] bytes
// of UTF-8. Invalid UTF-8 would not survive the JSON file unchanged.
func checkPeer(nick string) error {
	switch {
	case nick == "":
		return fmt.Errorf("keystore: empty peer name")
	case len(nick) > MaxPeerName:
		return fmt.Errorf("keystore: peer name %.32q… is longer than %d bytes", nick, MaxPeerName)
	case !utf8.ValidString(nick):
		return fmt.Errorf("keystore: peer name %q is not valid UTF-8", nick)
	}
	return nil
}

// seen records that nick presented fp at now, within lim, and reports what
// was known before and whether the state changed.
//
// Making room never evicts a trusted fingerprint. A nick at its limit
// loses its least recently seen untrusted fingerprint; a full account
// loses its least recently seen untrusted fingerprint under any nick; a
// fingerprint at its limit of nicks forgets the nick it was least recently
// seen under. When only trusted fingerprints could make room, the
// sighting is not stored.
func (st *state) seen(nick string, fp otrcore.Fingerprint, now time.Time, lim limits) (SeenResult, bool) {
	var res SeenResult
	for _, other := range st.peerFingerprints(nick) {
		if other != fp {
			res.OtherFingerprints = append(res.OtherFingerprints, other)
		}
	}
	r := st.fps[fp]
	res.NewFingerprint = r == nil
	if r != nil {
		for _, s := range r.seen {
			if s.Nick != nick {
				res.OtherNicks = append(res.OtherNicks, s.Nick)
			}
		}
		slices.Sort(res.OtherNicks)
		res.Trust = r.trust
		if i := r.sightingIndex(nick); i >= 0 {
			if old := r.seen[i]; !now.Before(old.FirstSeen) && !now.After(old.LastSeen) {
				return res, false
			}
			r = r.clone()
			s := &r.seen[i]
			if now.Before(s.FirstSeen) {
				s.FirstSeen = now
			}
			if now.After(s.LastSeen) {
				s.LastSeen = now
			}
			r.sortSeen()
			st.put(fp, r)
			return res, true
		}
	}
	res.NewForPeer = true
	changed := false
	if len(st.nicks[nick]) >= lim.perNick {
		if !st.evictFromNick(nick) {
			res.NotRecorded = true
			return res, false
		}
		changed = true
	}
	if r == nil {
		if len(st.fps) >= lim.fingerprints {
			if !st.evictOldest() {
				res.NotRecorded = true
				return res, changed
			}
		}
		r = new(record)
	} else {
		r = r.clone()
	}
	for len(r.seen) >= lim.nicksPerFP {
		i := oldestSighting(r.seen)
		st.unindex(r.seen[i].Nick, fp)
		r.seen = slices.Delete(r.seen, i, i+1)
	}
	r.seen = append(r.seen, Sighting{Nick: nick, FirstSeen: now, LastSeen: now})
	r.sortSeen()
	st.put(fp, r)
	st.nicks[nick] = append(st.nicks[nick], fp)
	return res, true
}

// oldestSighting returns the index of the least recently seen nick.
func oldestSighting(seen []Sighting) int {
	i := 0
	for j, s := range seen {
		if c := s.LastSeen.Compare(seen[i].LastSeen); c < 0 || c == 0 && s.Nick < seen[i].Nick {
			i = j
		}
	}
	return i
}

// unindex removes fp from the fingerprints of nick.
func (st *state) unindex(nick string, fp otrcore.Fingerprint) {
	fps := slices.DeleteFunc(st.nicks[nick], func(f otrcore.Fingerprint) bool { return f == fp })
	if len(fps) == 0 {
		delete(st.nicks, nick)
	} else {
		st.nicks[nick] = fps
	}
}

// forget removes fp and its sightings.
func (st *state) forget(fp otrcore.Fingerprint) {
	r := st.fps[fp]
	if r == nil {
		return
	}
	for _, s := range r.seen {
		st.unindex(s.Nick, fp)
	}
	st.del(fp)
}

// removeSighting removes the sighting of fp under nick, and fp itself if
// it is left untrusted and unseen.
func (st *state) removeSighting(fp otrcore.Fingerprint, nick string) {
	r := st.fps[fp].clone()
	r.seen = slices.DeleteFunc(r.seen, func(s Sighting) bool { return s.Nick == nick })
	st.unindex(nick, fp)
	if len(r.seen) == 0 && r.trust == TrustNone {
		st.del(fp)
	} else {
		st.put(fp, r)
	}
}

// evictFromNick removes the untrusted fingerprint least recently seen
// under nick from nick's sightings. It reports false if all of nick's
// fingerprints are trusted.
func (st *state) evictFromNick(nick string) bool {
	var (
		victim otrcore.Fingerprint
		when   time.Time
		found  bool
	)
	for _, fp := range st.nicks[nick] {
		r := st.fps[fp]
		if r.trust != TrustNone {
			continue
		}
		t := r.seen[r.sightingIndex(nick)].LastSeen
		if !found || t.Before(when) || t.Equal(when) && bytes.Compare(fp[:], victim[:]) < 0 {
			victim, when, found = fp, t, true
		}
	}
	if found {
		st.removeSighting(victim, nick)
	}
	return found
}

// evictOldest removes the untrusted fingerprint least recently seen under
// any nick. It reports false if every fingerprint is trusted.
func (st *state) evictOldest() bool {
	fp, ok := st.untrusted.oldest()
	if ok {
		st.forget(fp)
	}
	return ok
}

// setTrust sets the trust of fp, creating a record for a fingerprint not yet
// seen (evicting an untrusted one if the account is full). Clearing the
// trust of a never-seen fingerprint removes it.
func (st *state) setTrust(fp otrcore.Fingerprint, level TrustLevel, now time.Time, lim limits) error {
	r := st.fps[fp]
	if r == nil {
		if level == TrustNone {
			return nil
		}
		if len(st.fps) >= lim.fingerprints && !st.evictOldest() {
			return fmt.Errorf("%w: all %d are trusted; forget or distrust some first", ErrTooManyTrusted, len(st.fps))
		}
		r = new(record)
	} else {
		r = r.clone()
	}
	r.trust = level
	r.verifiedAt = time.Time{}
	if level != TrustNone {
		r.verifiedAt = now
	}
	if level == TrustNone && len(r.seen) == 0 {
		st.del(fp)
		return nil
	}
	st.put(fp, r)
	return nil
}

// enforce brings a state read from a file written by an earlier version,
// which recorded fingerprints without limit, within lim. It drops
// sightings under names [checkPeer] refuses, then evicts as [state.seen]
// does, and returns the number of fingerprints and sightings dropped.
func (st *state) enforce(lim limits) (fps, sightings int) {
	before := len(st.fps)
	count := func() int {
		n := 0
		for _, r := range st.fps {
			n += len(r.seen)
		}
		return n
	}
	seenBefore := count()
	// Sightings first, on the map alone: newState then rebuilds the
	// indexes.
	for fp, r := range st.fps {
		keep := r.clone()
		keep.seen = slices.DeleteFunc(keep.seen, func(s Sighting) bool { return checkPeer(s.Nick) != nil })
		for len(keep.seen) > lim.nicksPerFP {
			i := oldestSighting(keep.seen)
			keep.seen = slices.Delete(keep.seen, i, i+1)
		}
		if len(keep.seen) == len(r.seen) {
			continue
		}
		if len(keep.seen) == 0 && keep.trust == TrustNone {
			delete(st.fps, fp)
		} else {
			st.fps[fp] = keep
		}
	}
	*st = *newState(st.tag, st.key, st.fps)
	for nick := range st.nicks {
		for len(st.nicks[nick]) > lim.perNick {
			if !st.evictFromNick(nick) {
				break
			}
		}
	}
	for len(st.fps) > lim.fingerprints {
		if !st.evictOldest() {
			break
		}
	}
	return before - len(st.fps), seenBefore - count()
}
