package supervisor

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"srp/platform"
)

// dupFile returns a close-on-exec duplicate of c's descriptor as an
// *os.File, ready for exec.Cmd.ExtraFiles.
//
// Two hazards are avoided here. (*net.TCPListener).File returns a file whose
// Fd method clears O_NONBLOCK, and the flag lives on the socket shared by
// every process: a worker still accepting could block in accept(2) for good.
// os.NewFile on our own duplicate keeps the flag as it is. And the raw
// fcntl syscall fails with ENOSYS on OpenBSD 7.5 and later, where only the
// libc wrapper behind unix.FcntlInt works.
func dupFile(c syscall.Conn, name string) (*os.File, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", name, err)
	}
	var fd int
	var dupErr error
	if err := raw.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("dup %s: %w", name, err)
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup %s: fcntl F_DUPFD_CLOEXEC: %w", name, dupErr)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// deferAccept has the kernel hold each connection to the listener c until
// its first bytes arrive (platform.DeferAccept).
func deferAccept(c syscall.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var setErr error
	if err := raw.Control(func(fd uintptr) { setErr = platform.DeferAccept(fd) }); err != nil {
		return err
	}
	return setErr
}

// socketPair returns a connected pair of stream sockets: ours as a
// net.Conn, theirs as a file to hand to a child process.
func socketPair(name string) (ours *net.UnixConn, theirs *os.File, err error) {
	// Not every system has SOCK_CLOEXEC (macOS); holding ForkLock keeps a
	// concurrent exec from inheriting the pair before it is close-on-exec.
	syscall.ForkLock.RLock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fds[0]), name)
	c, err := net.FileConn(f) // dups; f is ours to close
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("socketpair %s: %w", name, err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), name), nil
}

// readBuffered returns what c has already received, without waiting for
// more. It is how a supervisor learns why a new binary failed: the peer may
// be gone, but another copy of its end keeps the stream from reaching EOF.
func readBuffered(c *net.UnixConn) []byte {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var out []byte
	buf := make([]byte, 4096)
	_ = raw.Read(func(fd uintptr) bool {
		for {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if n <= 0 || err != nil {
				return true
			}
			out = append(out, buf[:n]...)
		}
	})
	return out
}
