package otrcore

import (
	"fmt"
	"strings"
)

// Policy is a set of flags that decides when the engine starts, accepts
// and requires OTR. The bit values match libotr's OTRL_POLICY_* flags so
// that settings read the same in both.
type Policy uint32

// Policy flags.
const (
	// AllowV2 lets the engine speak OTR protocol version 2.
	AllowV2 Policy = 0x02
	// AllowV3 lets the engine speak OTR protocol version 3.
	AllowV3 Policy = 0x04
	// RequireEncryption forbids sending any user message in clear: in
	// PLAINTEXT it is held and a query is sent instead.
	RequireEncryption Policy = 0x08
	// SendWhitespaceTag marks outgoing plaintext with a whitespace tag
	// advertising OTR support.
	SendWhitespaceTag Policy = 0x10
	// WhitespaceStartAKE starts the AKE when a whitespace tag is received.
	WhitespaceStartAKE Policy = 0x20
	// ErrorStartAKE answers a received OTR error message with a query.
	ErrorStartAKE Policy = 0x40
)

// Named policy presets, as offered to users.
const (
	// PolicyNever disables OTR: nothing is started or answered.
	PolicyNever Policy = 0
	// PolicyManual answers OTR requests but never starts OTR by itself.
	PolicyManual = AllowV2 | AllowV3
	// PolicyOpportunistic advertises OTR with whitespace tags and starts it
	// whenever the peer shows support.
	PolicyOpportunistic = AllowV2 | AllowV3 | SendWhitespaceTag | WhitespaceStartAKE | ErrorStartAKE
	// PolicyAlways requires encryption: nothing is sent in clear.
	PolicyAlways = AllowV2 | AllowV3 | RequireEncryption | WhitespaceStartAKE | ErrorStartAKE
)

// policyNames lists the presets in a stable order.
var policyNames = [...]struct {
	name string
	p    Policy
}{
	{"never", PolicyNever},
	{"manual", PolicyManual},
	{"opportunistic", PolicyOpportunistic},
	{"always", PolicyAlways},
}

// ParsePolicy returns the preset called name (never, manual,
// opportunistic, always; case-insensitive).
func ParsePolicy(name string) (Policy, error) {
	for _, pn := range policyNames {
		if strings.EqualFold(name, pn.name) {
			return pn.p, nil
		}
	}
	return 0, fmt.Errorf("otrcore: unknown policy %q (want never, manual, opportunistic or always)", name)
}

// String returns the preset name for a preset policy and the flag list
// otherwise.
func (p Policy) String() string {
	for _, pn := range policyNames {
		if p == pn.p {
			return pn.name
		}
	}
	var flags []string
	for _, f := range [...]struct {
		bit  Policy
		name string
	}{
		{AllowV2, "ALLOW_V2"}, {AllowV3, "ALLOW_V3"}, {RequireEncryption, "REQUIRE_ENCRYPTION"},
		{SendWhitespaceTag, "SEND_WHITESPACE_TAG"}, {WhitespaceStartAKE, "WHITESPACE_START_AKE"},
		{ErrorStartAKE, "ERROR_START_AKE"},
	} {
		if p&f.bit != 0 {
			flags = append(flags, f.name)
		}
	}
	if len(flags) == 0 {
		return "never"
	}
	return strings.Join(flags, "|")
}

// has reports whether every flag in f is set.
func (p Policy) has(f Policy) bool { return p&f == f }

// versions returns the protocol versions the policy allows.
func (p Policy) versions() versionSet {
	var v versionSet
	if p.has(AllowV2) {
		v |= versionSetV2
	}
	if p.has(AllowV3) {
		v |= versionSetV3
	}
	return v
}
