package supervisor

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"srp/supervisor/link"
)

// TestHeldListenerFile checks the listener copies handed to workers: a new
// close-on-exec descriptor for the same socket, which stays non-blocking
// even after exec.Cmd has asked for its Fd (what (*net.TCPListener).File
// would have broken), and which accepts, after the listener it was taken
// from is closed.
func TestHeldListenerFile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	h, err := holdListener(ln, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(int(h.fd))
	f, err := h.file()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Fd() == h.fd {
		t.Fatal("file() returned the held descriptor, which closing it would lose")
	}
	fd := f.Fd() // as os/exec does when starting a worker
	fdFlags, err := unix.FcntlInt(fd, unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fdFlags&unix.FD_CLOEXEC == 0 {
		t.Error("copy is not close-on-exec: every child would inherit it")
	}
	flFlags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flFlags&unix.O_NONBLOCK == 0 {
		t.Error("the shared socket lost O_NONBLOCK")
	}
	l2, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil { // accept waits for bytes
		t.Fatal(err)
	}
	a, err := l2.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
}

func TestReadBufferedDoesNotWait(t *testing.T) {
	ours, theirs, err := socketPair("test")
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	defer theirs.Close()
	if got := readBuffered(ours); len(got) != 0 {
		t.Fatalf("read %q from an empty socket", got)
	}
	if err := link.Write(theirs, link.Error, []byte("boom")); err != nil {
		t.Fatal(err)
	}
	// theirs stays open, as the copy tableflip keeps does: no EOF comes.
	pid, text := parseHandover(readBuffered(ours))
	if pid != 0 || text != "boom" {
		t.Errorf("parseHandover: pid %d text %q", pid, text)
	}
}

func TestPIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srp.pid")
	if err := writePIDFile(path, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if pid, err := ReadPIDFile(path); err != nil || pid != os.Getpid() {
		t.Fatalf("ReadPIDFile: %d %v", pid, err)
	}
	if removed, err := removePIDFile(path, os.Getpid()); !removed || err != nil {
		t.Fatalf("our pidfile not removed: %v", err)
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if removed, _ := removePIDFile(path, os.Getpid()); removed {
		t.Error("removed a pidfile naming another process")
	}
	if got := link.ControlPath("/run/srp.pid"); got != "/run/srp.sock" {
		t.Errorf("link.ControlPath: %s", got)
	}
	if got := link.ControlPath("/run/srp"); got != "/run/srp.sock" {
		t.Errorf("link.ControlPath: %s", got)
	}
}
