//go:build !linux

package main

import "os"

// noEcho is only implemented on Linux; elsewhere the password is echoed.
func noEcho(f *os.File) (restore func(), ok bool) { return nil, false }
