package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.json")
	if err := Create(path, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("mode %v, want 0600", m)
	}
	if err := Create(path, []byte("second")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing file: %v, want fs.ErrExist", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "first" {
		t.Errorf("content %q, want first", data)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"a.json"}) {
		t.Errorf("directory holds %q", got)
	}
}

func TestFailedWriteLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory cannot be replaced by a file.
	path := filepath.Join(dir, "a.json")
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("data")); err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	if got := names(t, dir); !slices.Equal(got, []string{"a.json"}) {
		t.Errorf("directory holds %q after a failed write", got)
	}
	if err := Write(filepath.Join(dir, "missing", "b.json"), []byte("data")); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	// Temporary files named exactly as Write names them.
	var mine, theirs string
	for _, want := range []string{"account-net.json", "settings-net.json"} {
		f, err := os.CreateTemp(dir, tempPrefix+want+"-*")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if tg, ok := target(filepath.Base(f.Name())); !ok || tg != want {
			t.Fatalf("target(%q) = %q, %v; want %q", filepath.Base(f.Name()), tg, ok, want)
		}
		if want == "account-net.json" {
			mine = f.Name()
		} else {
			theirs = f.Name()
		}
	}
	keep := []string{".tmp-account-net.json-12x", ".tmp-", ".tmp--1", "account-net.json", ".tmp-account-net.json"}
	for _, n := range keep {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := RemoveStale(dir, func(name string) bool { return name == "account-net.json" })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mine); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Errorf("another target's temporary file removed: %v", err)
	}
	for _, n := range keep {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s removed: %v", n, err)
		}
	}
}
