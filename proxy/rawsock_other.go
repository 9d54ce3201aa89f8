//go:build !unix

package proxy

import "net"

// rawSocket is unavailable here: connections use the ordinary net.Conn
// calls and every write goes through the writer goroutine.
type rawSocket struct{}

func newRawSocket(net.Conn) *rawSocket { return nil }

func (*rawSocket) readLines(lineHandler) {}

func (*rawSocket) write([]byte) (int, error) { return 0, nil }
