//go:build !unix

package atomicfile

// syncDir is a no-op where directories cannot be opened and flushed.
func syncDir(string) error { return nil }
