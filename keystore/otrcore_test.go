package keystore_test

import (
	"otrbnc/keystore"
	"otrbnc/otrcore"
)

// Account is the trust store the OTR engine consumes; this fails to
// compile if the two drift apart.
var _ otrcore.TrustStore = (*keystore.Account)(nil)
