package platform

import "syscall"

// What a peek finds on a connected socket.
const (
	PeekEmpty  = iota // open, nothing to read
	PeekData          // bytes waiting
	PeekClosed        // the peer closed or reset the connection
)

// Peek looks at a socket without reading from it or waiting. Control, not
// Read: a read deadline that has passed must not hide the answer.
func Peek(rc syscall.RawConn) int {
	res := PeekClosed
	if err := rc.Control(func(fd uintptr) { res = PeekFD(fd) }); err != nil {
		return PeekClosed
	}
	return res
}

// PeekFD is Peek on a descriptor the caller holds.
func PeekFD(fd uintptr) int {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case n > 0:
		return PeekData
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
		return PeekEmpty
	}
	return PeekClosed
}
