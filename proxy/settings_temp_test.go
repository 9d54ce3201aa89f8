package proxy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestSettingsLeftoverTempRemoved checks that loading a network's settings
// removes the temporary file an interrupted save left (named by
// keystore/atomicfile, which proxy no longer spells out) and nothing else.
func TestSettingsLeftoverTempRemoved(t *testing.T) {
	dir := t.TempDir()
	if err := saveSettings(dir, &savedState{Network: "net"}); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, ".tmp-settings-net.json-123")
	other := filepath.Join(dir, ".tmp-settings-other.json-456")
	for _, p := range []string{mine, other} {
		if err := os.WriteFile(p, []byte("{partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := loadSettings(dir, "net"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mine); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover of an interrupted save kept: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another network's leftover removed: %v", err)
	}
	fi, err := os.Stat(settingsPath(dir, "net"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("settings file: %v, %v", fi, err)
	}
}
