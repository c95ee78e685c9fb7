//go:build !windows

package tableflip

import (
	"encoding/gob"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// childUpgrader is an Upgrader as a child of a running parent sees it,
// having inherited the Unix listener at path.
func childUpgrader(t *testing.T, path string) *Upgrader {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	t.Cleanup(func() { ln.Close() })
	lf, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	_, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	namesR, namesW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// namesW stays open: the parent is alive for the whole test.
	t.Cleanup(func() { namesW.Close() })
	if err := gob.NewEncoder(namesW).Encode([][]string{{listenKind, "unix", path}}); err != nil {
		t.Fatal(err)
	}
	files := map[uintptr]*os.File{3: readyW, 4: namesR}
	e := &env{
		newFile: func(fd uintptr, _ string) *os.File { return files[fd] },
		passedFd: func(fd int) uintptr {
			if fd != 5 {
				t.Fatalf("passed descriptor %d, want 5", fd)
			}
			d, err := syscall.Dup(int(lf.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			return uintptr(d) // the child's own, which it closes
		},
		environ:     func() []string { return nil },
		getenv:      func(k string) string { return map[bool]string{true: "yes"}[k == sentinelEnvVar] },
		closeOnExec: func(int) {},
	}
	u, err := newUpgrader(e, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Listen("unix", path); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestStopBeforeReadyKeepsParentSockets: a child that fails to start and
// stops cleanly must not unlink the sockets its parent still serves.
func TestStopBeforeReadyKeepsParentSockets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	u := childUpgrader(t, path)
	u.Stop()
	<-u.Exit()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("a child that never became ready unlinked its parent's socket: %v", err)
	}
}

// TestStopAfterReadyRemovesSockets: once ready, the child owns the
// sockets, and a Stop before any upgrade removes them as before.
func TestStopAfterReadyRemovesSockets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	u := childUpgrader(t, path)
	if err := u.Ready(); err != nil {
		t.Fatal(err)
	}
	u.Stop()
	<-u.Exit()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after a ready process stopped: %v", err)
	}
}
