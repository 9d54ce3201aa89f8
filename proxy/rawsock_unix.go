//go:build unix

package proxy

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// rawSocket reads and writes a plain TCP socket with read(2) and write(2)
// made as raw system calls, through the socket's syscall.RawConn (so Go's
// poller, deadlines and Close keep working).
//
// Why: Go's own socket calls enter the scheduler's system-call state,
// and the first such call after the process was idle wakes the runtime's
// monitor thread (sysmon), which then polls every 20 µs until the process
// is idle again. At chat rates otrbnc is idle between almost every two
// lines, so that was a thread wake-up, several sleeps and context
// switches per line (about a fifth of otrbnc's CPU per message, see
// docs/performance.md). Go's sockets are non-blocking, so these calls
// never block: a raw call is as safe as the scheduler-aware one, and
// returns at once when the socket has nothing to read or no room.
type rawSocket struct {
	rc syscall.RawConn
	// hint: reads come with the kernel's word on whether anything is
	// left (enableReadHint), which spares the read that would only
	// return EAGAIN before every wait.
	hint bool
}

// newRawSocket returns a rawSocket for nc, or nil when nc is not a plain
// socket (TLS, pipes): those use the ordinary net.Conn calls.
func newRawSocket(nc net.Conn) *rawSocket {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawSocket{rc: rc, hint: enableReadHint(rc)}
}

// rawCall makes one read(2) or write(2), retrying on EINTR.
func rawCall(trap, fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}

// readLines reads lines into h until h or an error stops it. The poller
// is edge-triggered: it reports an arrival once, so before waiting for it
// the socket must be known to be empty, the end of the stream included
// (which may come with the last data and is not reported again). With the
// kernel's hint a read says so itself, and one recvmsg(2) per arrival is
// enough; without it the socket is read until EAGAIN. Waiting inside one
// RawConn.Read call is what keeps this safe: data that arrives after a
// read marks the socket ready, and the wait returns at once (a new
// RawConn.Read call would clear that mark, but starts with a read).
func (s *rawSocket) readLines(h lineHandler) {
	lb := newLineBuffer(maxLineLen)
	for {
		stop := false
		var rerr error
		err := s.rc.Read(func(fd uintptr) bool {
			for {
				space := lb.space()
				var n int
				var e syscall.Errno
				more := true
				if s.hint {
					n, more, e = recvWithHint(fd, space)
				} else {
					n, e = rawCall(syscall.SYS_READ, fd, space)
				}
				switch {
				case e == syscall.EAGAIN:
					return false // wait for the poller
				case e != 0:
					rerr = e
					return true
				case n == 0:
					rerr = io.EOF
					return true
				}
				lb.wrote(n)
				for {
					line, tooLong, ok := lb.next()
					if !ok {
						break
					}
					if tooLong {
						h.tooLong()
					} else if !h.line(line) {
						stop = true
						return true
					}
				}
				if !h.flush() {
					stop = true
					return true
				}
				if !more {
					return false // empty, and not at its end: wait
				}
			}
		})
		if stop {
			return
		}
		if err == nil {
			err = rerr
		}
		if !h.err(err) {
			return
		}
	}
}

// write writes what the socket takes now, never waiting: n < len(b) with
// a nil error means the socket buffer is full.
func (s *rawSocket) write(b []byte) (n int, err error) {
	var werr error
	err = s.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := rawCall(syscall.SYS_WRITE, fd, b[n:])
			if e != 0 {
				if e != syscall.EAGAIN {
					werr = e
				}
				break
			}
			if m <= 0 {
				break
			}
			n += m
		}
		return true // done: never wait for the socket
	})
	if err == nil {
		err = werr
	}
	return n, err
}
