//go:build !windows

package tableflip

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReplaceClosesDisplaced: a listener added again under the same
// address, over an inherited one or an added one, closes the descriptor it
// displaces; held bare, nothing else would.
func TestReplaceClosesDisplaced(t *testing.T) {
	listen := func() Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln.(Listener)
	}
	key := fileName{listenKind, "tcp", "test"}
	closed := func(what string, fd uintptr) {
		t.Helper()
		if _, err := unix.FcntlInt(fd, unix.F_GETFD, 0); err != unix.EBADF {
			t.Errorf("the displaced %s descriptor %d is still open (%v)", what, fd, err)
		}
	}
	parent := newFds(nil, nil)
	if err := parent.AddListener("tcp", "test", listen()); err != nil {
		t.Fatal(err)
	}
	child := newFds(parent.copy(), nil) // inherits parent's descriptor
	next := listen()                    // opened before the check, so it cannot reuse the number
	inherited := child.inherited[key].fd
	if err := child.AddListener("tcp", "test", next); err != nil {
		t.Fatal(err)
	}
	closed("inherited", inherited)
	next = listen()
	added := child.used[key].fd
	if err := child.AddListener("tcp", "test", next); err != nil {
		t.Fatal(err)
	}
	closed("added", added)
	child.closeUsed()
}
