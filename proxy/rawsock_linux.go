//go:build linux && !386

package proxy

import (
	"syscall"
	"unsafe"
)

// tcpINQ is both the socket option TCP_INQ and the control message
// TCP_CM_INQ that it adds to every recvmsg(2) (linux/tcp.h, Linux 4.18).
const tcpINQ = 36

// enableReadHint asks the kernel to say, with every read of the socket,
// whether anything is left to read: data, or the end of the stream
// ("After receiving a FIN, tell the user-space to continue reading by
// returning a non-zero inq", net/ipv4/tcp.c). It reports whether the
// socket accepted.
func enableReadHint(rc syscall.RawConn) bool {
	ok := false
	err := rc.Control(func(fd uintptr) {
		ok = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpINQ, 1) == nil
	})
	return err == nil && ok
}

// recvWithHint makes one recvmsg(2) into b as a raw system call, retrying
// on EINTR. more reports whether the socket may hold more: data that did
// not fit or the end of the stream, or no hint came with the read (then
// only EAGAIN or the end of the stream can tell).
func recvWithHint(fd uintptr, b []byte) (n int, more bool, e syscall.Errno) {
	var ctl [4]uint64 // room for one control message with a 32-bit payload, aligned
	iov := syscall.Iovec{Base: &b[0]}
	iov.SetLen(len(b))
	msg := syscall.Msghdr{Iov: &iov, Iovlen: 1, Control: (*byte)(unsafe.Pointer(&ctl[0]))}
	msg.SetControllen(int(unsafe.Sizeof(ctl)))
	var r uintptr
	for {
		r, _, e = syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
		if e != syscall.EINTR {
			break
		}
	}
	if e != 0 {
		return 0, false, e
	}
	more = true
	if int(msg.Controllen) >= syscall.CmsgLen(4) {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		if h.Level == syscall.SOL_TCP && h.Type == tcpINQ && int(h.Len) >= syscall.CmsgLen(4) {
			inq := *(*int32)(unsafe.Add(unsafe.Pointer(&ctl[0]), syscall.CmsgLen(0)))
			more = inq != 0
		}
	}
	return int(r), more, 0
}
