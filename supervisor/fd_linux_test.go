package supervisor

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// The descriptor the supervisor holds defers accept and is close-on-exec:
// no process it starts inherits it by accident.
func TestHeldListenerOptions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, err := holdListener(ln, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(int(h.fd))
	if v, err := unix.GetsockoptInt(int(h.fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT); err != nil || v == 0 {
		t.Errorf("TCP_DEFER_ACCEPT: %d, %v", v, err)
	}
	if flags, err := unix.FcntlInt(h.fd, unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("held descriptor flags %#x, %v: not close-on-exec", flags, err)
	}
}
