//go:build race

package keystore

// raceEnabled reports whether the race detector is on; it makes
// encoding/json some 20 times slower.
const raceEnabled = true
