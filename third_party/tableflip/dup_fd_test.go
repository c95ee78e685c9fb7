//go:build !windows

package tableflip

import (
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDupFdKeepsFlags checks the duplicate made through x/sys/unix is a
// new close-on-exec descriptor for the same non-blocking socket.
func TestDupFdKeepsFlags(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	dup, err := dupConn(ln.(Listener), fileName{listenKind, "tcp", ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer dup.Close()

	orig, err := sysConnFd(ln.(Listener))
	if err != nil {
		t.Fatal(err)
	}
	if dup.fd == orig {
		t.Fatalf("dup returned the original descriptor %d", orig)
	}
	fdFlags, err := unix.FcntlInt(dup.fd, unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fdFlags&unix.FD_CLOEXEC == 0 {
		t.Error("duplicate is not close-on-exec")
	}
	flFlags, err := unix.FcntlInt(dup.fd, unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flFlags&unix.O_NONBLOCK == 0 {
		t.Error("duplicate's socket lost O_NONBLOCK")
	}

	// The duplicate must accept connections made to the original socket.
	osf, err := dup.osFile()
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.FileListener(osf)
	osf.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := l2.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
}

// TestAddFileClosesReplaced checks that replacing a file closes the
// duplicate kept for the old one.
func TestAddFileClosesReplaced(t *testing.T) {
	fds := newFds(nil, nil)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := fds.AddFile("x", w); err != nil {
		t.Fatal(err)
	}
	first := fds.used[fileName{fdKind, "x"}].fd
	if err := fds.AddFile("x", w); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(first, unix.F_GETFD, 0); err != unix.EBADF {
		t.Fatalf("replaced duplicate fd %d still open (err %v)", first, err)
	}
}
