package supervisor

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"srp/platform"
)

// heldListener is a listening socket the supervisor keeps for its
// workers, as a bare descriptor. As a net.Listener or an *os.File it would
// be registered with the runtime's poller, and every connection a worker
// accepts would first wake the supervisor, which never accepts.
type heldListener struct {
	fd   uintptr
	name string
}

// holdListener keeps ln's socket for the workers and closes ln. The socket
// defers accept until a client has sent bytes (platform.DeferAccept), set
// on inherited listeners too: one opened by a binary before this option
// gets it on its first upgrade.
func holdListener(ln net.Listener, addr string) (heldListener, error) {
	defer ln.Close()
	name := "listener " + addr
	raw, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		return heldListener{}, fmt.Errorf("hold %s: %w", name, err)
	}
	var fd int
	var setErr, dupErr error
	if err := raw.Control(func(s uintptr) {
		if setErr = platform.DeferAccept(s); setErr == nil {
			fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
		}
	}); err != nil {
		return heldListener{}, fmt.Errorf("hold %s: %w", name, err)
	}
	if setErr != nil {
		return heldListener{}, fmt.Errorf("hold %s: %w", name, setErr)
	}
	if dupErr != nil {
		return heldListener{}, fmt.Errorf("hold %s: fcntl F_DUPFD_CLOEXEC: %w", name, dupErr)
	}
	return heldListener{fd: uintptr(fd), name: name}, nil
}

// file returns a close-on-exec duplicate of the socket as an *os.File, for
// exec.Cmd.ExtraFiles; the caller closes it once the worker has started.
//
// Two hazards are avoided here. (*net.TCPListener).File returns a file whose
// Fd method clears O_NONBLOCK, and the flag lives on the socket shared by
// every process: a worker still accepting could block in accept(2) for good.
// os.NewFile on our own duplicate keeps the flag as it is. And the raw
// fcntl syscall fails with ENOSYS on OpenBSD 7.5 and later, where only the
// libc wrapper behind unix.FcntlInt works.
func (h heldListener) file() (*os.File, error) {
	fd, err := unix.FcntlInt(h.fd, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup %s: fcntl F_DUPFD_CLOEXEC: %w", h.name, err)
	}
	return os.NewFile(uintptr(fd), h.name), nil
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
