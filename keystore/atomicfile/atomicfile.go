// Package atomicfile replaces small files so that a crash, a power cut or
// kill -9 at any moment leaves either the old or the new content, never a
// mix, and so that a replacement reported successful survives a crash.
//
// [Write] writes the data to a temporary file in the target's directory
// (mode 0600), flushes it with fsync, renames it over the target and then
// flushes the directory, which makes the rename itself durable. [Create]
// does the same but never replaces an existing file. A crash can leave a
// temporary file behind; the temporary files belong to this package, and
// [RemoveStale] removes them for the files a caller owns, so no caller needs
// to know how they are named.
//
// The files are private: every file written is mode 0600, whatever the
// umask. It is used for the keystore's account files, the proxy's
// per-network settings and the libotr files the command line exports.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Temporary files are named tempPrefix + target name + "-" + random
// digits, which is the pattern os.CreateTemp fills in.
const tempPrefix = ".tmp-"

// Write replaces the file at path with data, mode 0600. When it returns nil
// the new content is on disk; when it fails, or the process dies while it
// runs, the file at path holds its old content (or still does not exist)
// and at most a temporary file is left for [RemoveStale].
func Write(path string, data []byte) error {
	return write(path, data, false)
}

// Create is like [Write] but fails with an error wrapping [fs.ErrExist]
// instead of replacing a file that already exists.
func Create(path string, data []byte) error {
	return write(path, data, true)
}

func write(path string, data []byte, create bool) (err error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tempPrefix+name+"-*")
	if err != nil {
		return fmt.Errorf("atomicfile: writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	// CreateTemp already uses 0600 less the umask; make it exact.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: flushing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfile: writing %s: %w", path, err)
	}
	if create {
		// A hard link fails if the target exists, which a rename would
		// silently replace.
		if err := os.Link(tmp, path); err != nil {
			return fmt.Errorf("atomicfile: creating %s: %w", path, err)
		}
		os.Remove(tmp)
	} else if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: replacing %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("atomicfile: flushing directory of %s: %w", path, err)
	}
	return nil
}

// target returns the name of the file a temporary file called name was
// written for, and whether name is such a temporary file at all.
func target(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, tempPrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 || i == len(rest)-1 {
		return "", false
	}
	for _, c := range rest[i+1:] {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return rest[:i], true
}

// RemoveStale removes from dir the temporary files that interrupted [Write]
// and [Create] calls left behind, for the target files whose name satisfies
// match; other files are left alone. It must only run while no other
// process writes those files, for example with the directory locked.
func RemoveStale(dir string, match func(name string) bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if t, ok := target(e.Name()); ok && match(t) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("atomicfile: removing a leftover temporary file: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
