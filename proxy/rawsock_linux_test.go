//go:build linux && !386

package proxy

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// hintRead is one recvWithHint of at most size bytes on c, waiting for the
// poller first if nothing has arrived.
type hintRead struct {
	data string
	more bool
}

func readWithHint(t *testing.T, rc syscall.RawConn, size int) hintRead {
	t.Helper()
	buf := make([]byte, size)
	var got hintRead
	var rerr syscall.Errno
	err := rc.Read(func(fd uintptr) bool {
		n, more, e := recvWithHint(fd, buf)
		if e == syscall.EAGAIN {
			return false
		}
		got, rerr = hintRead{data: string(buf[:n]), more: more}, e
		return true
	})
	if err != nil || rerr != 0 {
		t.Fatalf("recvmsg: %v %v", err, rerr)
	}
	return got
}

// TestReadHintSaysWhatIsLeft: with TCP_INQ each read says whether data or
// the end of the stream is still waiting, so the reader can wait for the
// poller after a read without a second read that returns EAGAIN.
func TestReadHintSaysWhatIsLeft(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	a.SetReadDeadline(time.Now().Add(testTimeout))
	rc, err := a.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if !enableReadHint(rc) {
		t.Fatal("TCP_INQ refused: every read would need a second one")
	}
	steps := []struct {
		write string
		close bool
		size  int
		want  []hintRead
	}{
		{write: "hello\r\n", size: 64, want: []hintRead{{"hello\r\n", false}}},
		{write: "0123456789", size: 4, want: []hintRead{{"0123", true}, {"4567", true}, {"89", false}}},
		// The end of the stream came with the last line: the read says
		// something is left, and the next read finds the end.
		{write: "ERROR :bye\r\n", close: true, size: 64, want: []hintRead{{"ERROR :bye\r\n", true}, {"", false}}},
	}
	for _, st := range steps {
		if _, err := b.Write([]byte(st.write)); err != nil {
			t.Fatal(err)
		}
		if st.close {
			b.Close()
			time.Sleep(50 * time.Millisecond) // the line and the end have both arrived
		}
		for i, want := range st.want {
			got := readWithHint(t, rc, st.size)
			if got.data != want.data || (want.data != "" && got.more != want.more) {
				t.Fatalf("after writing %q, read %d: got %q more=%v, want %q more=%v", st.write, i, got.data, got.more, want.data, want.more)
			}
		}
	}
}
