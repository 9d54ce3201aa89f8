package keystore

import (
	"fmt"
	"testing"
	"time"

	"otrbnc/otrcore"
)

// benchFP returns a distinct fingerprint for each n.
func benchFP(n int) otrcore.Fingerprint {
	return otrcore.Fingerprint{0xbe, 0xec, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// benchAccount returns an account holding records fingerprints seen under
// records/4 nicks, written in one import.
func benchAccount(b *testing.B, passphrase string, records int) (*Store, *Account) {
	b.Helper()
	s, err := Open(b.TempDir(), testOptions(b, passphrase))
	if err != nil {
		b.Fatal(err)
	}
	a, err := s.Account("net")
	if err != nil {
		b.Fatal(err)
	}
	from := LibotrAccount{Name: "me", Protocol: "IRC"}
	l := &Libotr{}
	for i := range records {
		l.Fingerprints = append(l.Fingerprints, LibotrFingerprint{Peer: fmt.Sprintf("peer%d", i/4), Account: from, Fingerprint: benchFP(i)})
	}
	if records > 0 {
		if _, err := a.ImportLibotr(l, from, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	return s, a
}

// BenchmarkSeenNewKey measures what SeenFingerprint costs the caller (the
// network's goroutine in the proxy) for a key never seen before, on an
// account that already holds 4,000 fingerprints: the hostile case, where
// every AKE shows a fresh key. New keys come from 1,000 nicks, so the
// per-nick and overall limits evict as they would under a flood.
func BenchmarkSeenNewKey(b *testing.B) {
	for _, tc := range []struct{ name, passphrase string }{{"plain", ""}, {"sealed", "bench passphrase"}} {
		b.Run(tc.name, func(b *testing.B) {
			s, a := benchAccount(b, tc.passphrase, 4000)
			defer s.Close()
			now := time.Now()
			b.ResetTimer()
			for i := range b.N {
				if _, err := a.SeenFingerprint(fmt.Sprintf("new%d", i%1000), benchFP(1<<24+i), now.Add(time.Duration(i))); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
		})
	}
}

// BenchmarkTenThousandNewKeys measures the total cost of 10,000 new keys
// shown by 1,000 nicks to an empty account, until they are on disk (Close
// writes what is pending).
func BenchmarkTenThousandNewKeys(b *testing.B) {
	for _, tc := range []struct{ name, passphrase string }{{"plain", ""}, {"sealed", "bench passphrase"}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s, a := benchAccount(b, tc.passphrase, 0)
				now := time.Now()
				b.StartTimer()
				for i := range 10000 {
					if _, err := a.SeenFingerprint(fmt.Sprintf("new%d", i%1000), benchFP(i), now.Add(time.Duration(i))); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
