//go:build unix && (!linux || 386)

package proxy

import "syscall"

// enableReadHint reports false: only Linux says, with a read, whether
// anything is left (and on 386 recvmsg is not a system call of its own),
// so sockets read until EAGAIN.
func enableReadHint(syscall.RawConn) bool { return false }

// recvWithHint is read(2), which gives no hint: more is always true.
func recvWithHint(fd uintptr, b []byte) (n int, more bool, e syscall.Errno) {
	n, e = rawCall(syscall.SYS_READ, fd, b)
	return n, true, e
}
