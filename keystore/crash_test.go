package keystore

import (
	"bufio"
	"context"
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
)

// Environment of the crash helper process.
const (
	crashDirEnv  = "KEYSTORE_CRASH_DIR"
	crashPassEnv = "KEYSTORE_CRASH_PASSPHRASE"
)

// crashHelper records sightings in a loop until it is killed. After the n-th
// sighting is on disk it prints n. The state after n sightings holds fp(i)
// seen as "nick<i>" at Unix time i, for i < n.
func crashHelper(t *testing.T, dir string) {
	// The parent may briefly still hold the lock: parallel workers fork
	// processes, and a child shares the parent's lock file descriptor
	// between fork and exec.
	var (
		s   *Store
		err error
	)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s, err = Open(dir, testOptions(t, os.Getenv(crashPassEnv)))
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	a, err := s.Account("net")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	n := len(a.Fingerprints())
	fmt.Printf("ready\n%d\n", n)
	for ; ; n++ {
		if _, err := a.SeenFingerprint("nick"+strconv.Itoa(n), fp(n), time.Unix(int64(n), 0)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Printf("%d\n", n+1)
	}
}

// TestCrashSafety kills a process writing the store with SIGKILL at random
// moments, many times, and checks after each kill that the store opens and
// holds a complete state: at least everything the helper reported written,
// and at most the one write in flight.
func TestCrashSafety(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashHelper(t, dir)
		return
	}
	// Each worker kills and checks its own directory; workers run in
	// parallel because starting a process takes a while.
	for _, tc := range []struct {
		name       string
		passphrase string
		workers    int
		iterations int
	}{
		{"plain", "", 5, 6},
		{"sealed", "crash test passphrase", 2, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for w := range tc.workers {
				t.Run(strconv.Itoa(w), func(t *testing.T) {
					t.Parallel()
					crashLoop(t, tc.passphrase, tc.iterations)
				})
			}
		})
	}
}

func crashLoop(t *testing.T, passphrase string, iterations int) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t, passphrase))
	a := mustAccount(t, s, "net")
	if _, err := a.PrivateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := takeSnapshot(t, a)
	s.Close()

	torn := 0
	for i := range iterations {
		acked := runAndKill(t, dir, passphrase)
		if len(strayFiles(t, dir)) > 0 {
			torn++ // killed in the middle of a write
		}
		s, err := Open(dir, testOptions(t, passphrase))
		if err != nil {
			t.Fatalf("iteration %d: Open after kill: %v", i, err)
		}
		a := mustAccount(t, s, "net")
		got := takeSnapshot(t, a)
		if got.tag != want.tag || !keysEqual(got.key, want.key) {
			t.Fatalf("iteration %d: identity changed", i)
		}
		n := len(got.fps)
		if n < acked || n > acked+1 {
			t.Fatalf("iteration %d: %d sightings on disk, helper reported %d", i, n, acked)
		}
		for j := range n {
			info, ok := a.Lookup(fp(j))
			if !ok || len(info.Seen) != 1 || info.Seen[0].Nick != "nick"+strconv.Itoa(j) || !info.Seen[0].FirstSeen.Equal(time.Unix(int64(j), 0)) {
				t.Fatalf("iteration %d: sighting %d wrong: %+v", i, j, info)
			}
		}
		if leftovers := strayFiles(t, dir); len(leftovers) > 0 {
			t.Errorf("iteration %d: temporary files left after Open: %q", i, leftovers)
		}
		if fi, err := os.Stat(filepath.Join(dir, "account-net.json")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("iteration %d: account file: %v %v", i, fi.Mode(), err)
		}
		s.Close()
	}
	t.Logf("%d of %d kills interrupted a write", torn, iterations)
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

// runAndKill starts the helper on dir, lets it write for a random moment,
// kills it with SIGKILL and returns the last count it reported as written.
func runAndKill(t *testing.T, dir, passphrase string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashPassEnv+"="+passphrase)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
				continue
			}
			if n, err := strconv.Atoi(sc.Text()); err == nil {
				acked.Store(int64(n))
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
	return int(acked.Load())
}
