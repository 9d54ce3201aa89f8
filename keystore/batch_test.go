package keystore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"otrbnc/otrcore"
)

// onDisk reads the account file of "net" in dir as Open would.
func onDisk(t *testing.T, dir, passphrase string) *state {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "account-net.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := decodeState("net", data, []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSightingsDoNotWaitForDisk holds the account's disk writer, as a slow
// write would: a sighting must still return at once, while a trust change
// must wait until it is on disk.
func TestSightingsDoNotWaitForDisk(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, testOptions(t, ""))
	a := mustAccount(t, s, "net")
	if _, err := a.PrivateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	a.writeMu.Lock() // a write in progress
	seen := make(chan error, 1)
	go func() {
		_, err := a.SeenFingerprint("bob", fp(1), t0)
		seen <- err
	}()
	select {
	case err := <-seen:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		a.writeMu.Unlock()
		t.Fatal("SeenFingerprint waited for the disk")
	}
	if got := a.KnownFingerprints("bob"); len(got) != 1 {
		t.Errorf("sighting not visible at once: %x", got)
	}

	trusted := make(chan error, 1)
	go func() { trusted <- a.SetTrust(fp(1), TrustSMP, t0) }()
	select {
	case err := <-trusted:
		t.Fatalf("SetTrust returned (%v) while the disk was busy", err)
	case <-time.After(50 * time.Millisecond):
	}
	if a.IsTrusted("bob", fp(1)) {
		t.Error("trust visible before it is on disk")
	}
	a.writeMu.Unlock()
	if err := <-trusted; err != nil {
		t.Fatal(err)
	}
	// Once SetTrust returns, the trust and the sighting before it are on
	// disk.
	r := onDisk(t, dir, "").fps[fp(1)]
	if r == nil || r.trust != TrustSMP || len(r.seen) != 1 || r.seen[0].Nick != "bob" {
		t.Errorf("on disk after SetTrust: %+v", r)
	}
}

// TestBackgroundWrites checks that sightings reach the disk without Flush,
// and that a burst of them costs one write, not one each.
func TestBackgroundWrites(t *testing.T) {
	t.Run("written", func(t *testing.T) {
		dir := t.TempDir()
		opts := testOptions(t, "")
		opts.writeInterval = 10 * time.Millisecond
		s := mustOpen(t, dir, opts)
		a := mustAccount(t, s, "net")
		mustSee(t, a, "bob", fp(1), time.Time{})
		waitFor(t, "the background write", func() bool { return onDisk(t, dir, "").fps[fp(1)] != nil })
	})
	t.Run("coalesced", func(t *testing.T) {
		for _, pass := range []string{"", "pw"} {
			dir := t.TempDir()
			var log logRecorder
			opts := testOptions(t, pass)
			opts.writeInterval = time.Hour
			opts.Logger = log.logger()
			s := mustOpen(t, dir, opts)
			a := mustAccount(t, s, "net")
			if _, err := a.PrivateKey(context.Background()); err != nil {
				t.Fatal(err)
			}
			before := log.count("keystore: account saved")
			for i := range 100 {
				mustSee(t, a, fmt.Sprintf("nick%d", i%10), fp(i), time.Time{})
			}
			if err := a.Flush(); err != nil {
				t.Fatal(err)
			}
			// The first change after a quiet time is written at once; the
			// rest waits for the interval, or here for Flush.
			if n := log.count("keystore: account saved") - before; n < 1 || n > 2 {
				t.Errorf("passphrase %q: %d writes for 100 sightings, want 1 or 2", pass, n)
			}
			if n := len(onDisk(t, dir, pass).fps); n != 100 {
				t.Errorf("passphrase %q: %d fingerprints on disk after Flush, want 100", pass, n)
			}
		}
	})
}

// TestCloseWritesPending checks that Close writes sightings the background
// writer has not written yet.
func TestCloseWritesPending(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t, "")
	opts.writeInterval = time.Hour
	s := mustOpen(t, dir, opts)
	a := mustAccount(t, s, "net")
	for i := range 50 {
		mustSee(t, a, fmt.Sprintf("nick%d", i), fp(i), time.Time{})
	}
	want := takeSnapshot(t, a)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(); err != ErrClosed {
		t.Errorf("Flush after Close: %v, want ErrClosed", err)
	}
	s = mustOpen(t, dir, opts)
	if got := takeSnapshot(t, mustAccount(t, s, "net")); !snapshotsEqual(got, want) {
		t.Error("sightings lost by Close")
	}
}

// TestBackgroundWriteErrors makes the account file unwritable and checks
// that the failure of background writes is logged, returned by Flush and
// Close, does not make trust appear that is not on disk, and heals.
func TestBackgroundWriteErrors(t *testing.T) {
	dir := t.TempDir()
	var log logRecorder
	opts := testOptions(t, "")
	opts.writeInterval = 5 * time.Millisecond
	opts.Logger = log.logger()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	a := mustAccount(t, s, "net")
	if _, err := a.PrivateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A non-empty directory cannot be replaced by a file.
	path := filepath.Join(dir, "account-net.json")
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	breakFile := func() {
		os.Remove(path)
		if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	healFile := func() {
		os.RemoveAll(path)
		if err := os.WriteFile(path, saved, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	breakFile()
	mustSee(t, a, "bob", fp(1), time.Time{})
	waitFor(t, "the failure to be logged", func() bool { return log.has("keystore: recent fingerprint sightings are not saved yet") })
	if err := a.Flush(); err == nil || !strings.Contains(err.Error(), "net") {
		t.Errorf("Flush with an unwritable file: %v, want an error naming the account", err)
	}
	if err := a.SetTrust(fp(1), TrustManual, time.Time{}); err == nil {
		t.Error("SetTrust succeeded with an unwritable file")
	}
	if a.IsTrusted("bob", fp(1)) {
		t.Error("trust that is not on disk is visible")
	}
	if len(a.KnownFingerprints("bob")) != 1 {
		t.Error("the sighting was lost from memory")
	}

	healFile()
	waitFor(t, "the retry to succeed", func() bool { return log.has("keystore: fingerprint sightings saved again") })
	if onDisk(t, dir, "").fps[fp(1)] == nil {
		t.Error("sighting not on disk after the retry")
	}

	breakFile()
	mustSee(t, a, "carol", fp(2), time.Time{})
	if err := s.Close(); err == nil || !strings.Contains(err.Error(), "net") {
		t.Errorf("Close with an unwritable file: %v, want an error naming the account", err)
	}
	healFile()
}

// TestTrustDurableUnderSightings changes trust while another goroutine
// records sightings as fast as it can: every trust change must be on disk
// when it returns, and nothing may be lost by Close.
func TestTrustDurableUnderSightings(t *testing.T) {
	dir := t.TempDir()
	opts := limitOptions(t, 200, 4, 8) // small files, frequent evictions
	opts.writeInterval = time.Millisecond
	s := mustOpen(t, dir, opts)
	a := mustAccount(t, s, "net")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f := otrcore.Fingerprint{0xee, byte(i >> 8), byte(i)}
			if _, err := a.SeenFingerprint(fmt.Sprintf("n%d", i%300), f, time.Time{}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range 15 {
		if i%3 == 2 {
			if err := a.Forget(fp(i - 1)); err != nil {
				t.Fatal(err)
			}
			if onDisk(t, dir, "").fps[fp(i-1)] != nil {
				t.Fatalf("forgotten fp(%d) still on disk", i-1)
			}
			continue
		}
		if err := a.SetTrust(fp(i), TrustManual, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if r := onDisk(t, dir, "").fps[fp(i)]; r == nil || r.trust != TrustManual {
			t.Fatalf("trust of fp(%d) not on disk when SetTrust returned", i)
		}
	}
	close(stop)
	wg.Wait()
	want := takeSnapshot(t, a)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, opts)
	if got := takeSnapshot(t, mustAccount(t, s, "net")); !snapshotsEqual(got, want) {
		t.Error("state after Close and Open differs")
	}
}
