//go:build !unix

package keystore

import (
	"fmt"
	"io"
	"os"
)

// lockDir opens the lock file; other systems get no inter-process locking.
func lockDir(path string) (io.Closer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: opening lock file: %w", err)
	}
	return f, nil
}
