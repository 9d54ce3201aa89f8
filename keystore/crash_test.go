package keystore

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"otrbnc/otrcore"
)

// Environment of the crash helper process.
const (
	crashDirEnv  = "KEYSTORE_CRASH_DIR"
	crashPassEnv = "KEYSTORE_CRASH_PASSPHRASE"
	crashModeEnv = "KEYSTORE_CRASH_MODE"
)

// The crash helper's modes.
const (
	// crashDurable makes every change durable before reporting it:
	// sighting n, then SetTrust of it when n%4 == 0 and Flush otherwise.
	// It stops changing after crashDurableMax sightings, so that no limit
	// is reached.
	crashDurable = "durable"
	// crashBatched records sightings as fast as it can, leaving them to
	// the background writer (with a short interval) so that the limits
	// evict the oldest, and calls Flush after every crashFlushEvery.
	crashBatched = "batched"

	crashDurableMax   = 2000
	crashReportEvery  = 64
	crashFlushEvery   = 1024
	crashBatchedLimit = 512 // MaxFingerprints in batched mode
)

// crashFP returns the fingerprint of sighting n, and crashN recovers n.
func crashFP(n int) otrcore.Fingerprint {
	var f otrcore.Fingerprint
	for i := range f {
		f[i] = 0xab
	}
	binary.BigEndian.PutUint32(f[:], uint32(n))
	return f
}

func crashN(f otrcore.Fingerprint) int { return int(binary.BigEndian.Uint32(f[:])) }

// crashOptions are the options of both the helper and the checking
// process: they must agree, or opening would apply other limits.
func crashOptions(t testing.TB, passphrase, mode string) Options {
	opts := testOptions(t, passphrase)
	if mode == crashBatched {
		opts.MaxFingerprints = crashBatchedLimit
		opts.writeInterval = time.Millisecond
	}
	return opts
}

// crashHelper changes the store in a loop until it is killed. The state
// after sighting n holds crashFP(i) seen as "nick<i>" at Unix time i.
//
// In durable mode it prints n once sighting n (and its trust) is on disk.
// In batched mode it prints "s n" after n sightings are in memory (every
// crashReportEvery) and "d n" once Flush has put them on disk.
func crashHelper(t *testing.T, dir, mode string) {
	// The parent may briefly still hold the lock: parallel workers fork
	// processes, and a child shares the parent's lock file descriptor
	// between fork and exec.
	var (
		s   *Store
		err error
	)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s, err = Open(dir, crashOptions(t, os.Getenv(crashPassEnv), mode))
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			break
		}
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	if err != nil {
		fail(err)
	}
	a, err := s.Account("net")
	if err != nil {
		fail(err)
	}
	n := 0
	for _, info := range a.Fingerprints() {
		n = max(n, crashN(info.Fingerprint)+1)
	}
	if last := n - 1; mode == crashDurable && last >= 0 && last%4 == 0 && !a.IsTrusted("", crashFP(last)) {
		n = last // killed between the sighting and its trust: redo both
	}
	fmt.Printf("ready\nd %d\n", n) // what was on disk at the start
	for ; ; n++ {
		if mode == crashDurable && n >= crashDurableMax {
			time.Sleep(time.Hour)
		}
		at := time.Unix(int64(n), 0)
		if _, err := a.SeenFingerprint("nick"+strconv.Itoa(n), crashFP(n), at); err != nil {
			fail(err)
		}
		switch {
		case mode == crashBatched:
			if (n+1)%crashReportEvery == 0 {
				fmt.Printf("s %d\n", n+1)
			}
			if (n+1)%crashFlushEvery == 0 {
				if err := a.Flush(); err != nil {
					fail(err)
				}
				fmt.Printf("d %d\n", n+1)
			}
		case n%4 == 0:
			if err := a.SetTrust(crashFP(n), TrustManual, at); err != nil {
				fail(err)
			}
			fmt.Printf("%d\n", n+1)
		default:
			if err := a.Flush(); err != nil {
				fail(err)
			}
			fmt.Printf("%d\n", n+1)
		}
	}
}

// TestCrashSafety kills a process writing the store with SIGKILL at random
// moments, many times, and checks after each kill that the store opens and
// holds a complete state, one the process was in: never a mix, never less
// than it reported on disk. In durable mode that is everything the helper
// reported and at most the one change in flight; in batched mode, the
// latest sightings within the limit, at least up to the last Flush.
func TestCrashSafety(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashHelper(t, dir, os.Getenv(crashModeEnv))
		return
	}
	// Each worker kills and checks its own directory; workers run in
	// parallel because starting a process takes a while.
	for _, tc := range []struct {
		name       string
		mode       string
		passphrase string
		workers    int
		iterations int
	}{
		{"durable/plain", crashDurable, "", 3, 6},
		{"durable/sealed", crashDurable, "crash test passphrase", 2, 5},
		{"batched/plain", crashBatched, "", 3, 6},
		{"batched/sealed", crashBatched, "crash test passphrase", 2, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for w := range tc.workers {
				t.Run(strconv.Itoa(w), func(t *testing.T) {
					t.Parallel()
					crashLoop(t, tc.mode, tc.passphrase, tc.iterations)
				})
			}
		})
	}
}

func crashLoop(t *testing.T, mode, passphrase string, iterations int) {
	dir := t.TempDir()
	opts := crashOptions(t, passphrase, mode)
	s := mustOpen(t, dir, opts)
	a := mustAccount(t, s, "net")
	if _, err := a.PrivateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := takeSnapshot(t, a)
	s.Close()

	torn, evicted := 0, false
	for i := range iterations {
		rep := runAndKill(t, dir, mode, passphrase)
		if len(strayFiles(t, dir)) > 0 {
			torn++ // killed in the middle of a write
		}
		s, err := Open(dir, opts)
		if err != nil {
			t.Fatalf("iteration %d: Open after kill: %v", i, err)
		}
		a := mustAccount(t, s, "net")
		got := takeSnapshot(t, a)
		if got.tag != want.tag || !keysEqual(got.key, want.key) {
			t.Fatalf("iteration %d: identity changed", i)
		}
		// The sightings on disk must be crashFP(lo) … crashFP(hi-1), each
		// exactly as recorded.
		lo, hi := -1, 0
		for _, info := range got.fps {
			j := crashN(info.Fingerprint)
			if lo < 0 || j < lo {
				lo = j
			}
			hi = max(hi, j+1)
			// Every fourth durable sighting is trusted, unless its
			// SetTrust was the change in flight.
			trustOK := info.Trust == TrustNone
			if mode == crashDurable && j%4 == 0 {
				trustOK = info.Trust == TrustManual || j >= rep.durable && info.Trust == TrustNone
			}
			if info.Fingerprint != crashFP(j) || len(info.Seen) != 1 || info.Seen[0].Nick != "nick"+strconv.Itoa(j) ||
				!info.Seen[0].FirstSeen.Equal(time.Unix(int64(j), 0)) || !trustOK {
				t.Fatalf("iteration %d: sighting %d wrong: %+v", i, j, info)
			}
		}
		if lo < 0 {
			lo = 0
		}
		n := len(got.fps)
		switch mode {
		case crashDurable:
			if lo != 0 || n != hi || n < rep.durable || n > rep.durable+1 {
				t.Fatalf("iteration %d: sightings %d to %d on disk (%d), helper reported %d", i, lo, hi-1, n, rep.durable)
			}
		case crashBatched:
			// A snapshot after sighting hi: the latest ones within the
			// limit, hi at least what was flushed and at most what was
			// recorded.
			if n != hi-lo || n != min(hi, crashBatchedLimit) || hi < rep.durable || hi > rep.recorded+crashReportEvery {
				t.Fatalf("iteration %d: sightings %d to %d on disk (%d); helper flushed %d, recorded %d", i, lo, hi-1, n, rep.durable, rep.recorded)
			}
			evicted = evicted || lo > 0
		}
		if leftovers := strayFiles(t, dir); len(leftovers) > 0 {
			t.Errorf("iteration %d: temporary files left after Open: %q", i, leftovers)
		}
		if fi, err := os.Stat(filepath.Join(dir, "account-net.json")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("iteration %d: account file: %v %v", i, fi.Mode(), err)
		}
		s.Close()
	}
	t.Logf("%d of %d kills interrupted a write; evicted: %v", torn, iterations, evicted)
}

// strayFiles lists the files in dir other than the account file of "net"
// and the lock: the temporaries of a write interrupted by a kill.
func strayFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var stray []string
	for _, e := range entries {
		if n := e.Name(); n != "account-net.json" && n != lockName {
			stray = append(stray, n)
		}
	}
	return stray
}

// crashReport is what the helper reported before it was killed.
type crashReport struct {
	durable  int // sightings reported on disk
	recorded int // sightings reported in memory (batched mode)
}

// runAndKill starts the helper on dir, lets it write for a random moment,
// kills it with SIGKILL and returns what it reported.
func runAndKill(t *testing.T, dir, mode, passphrase string) crashReport {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashPassEnv+"="+passphrase, crashModeEnv+"="+mode)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var durable, recorded atomic.Int64
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				close(ready)
				continue
			}
			kind, num, ok := strings.Cut(line, " ")
			if !ok {
				kind, num = "d", line
			}
			n, err := strconv.Atoi(num)
			if err != nil {
				continue
			}
			switch kind {
			case "d":
				durable.Store(int64(n))
				recorded.Store(max(recorded.Load(), int64(n)))
			case "s":
				recorded.Store(int64(n))
			}
		}
	}()
	select {
	case <-ready:
	case <-done:
		cmd.Wait()
		t.Fatalf("helper exited early: %s", stderr.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("helper did not start")
	}
	time.Sleep(time.Duration(rand.IntN(25000)) * time.Microsecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	cmd.Wait()
	if strings.Contains(stderr.String(), "keystore") {
		t.Fatalf("helper failed: %s", stderr.String())
	}
	return crashReport{durable: int(durable.Load()), recorded: int(recorded.Load())}
}
