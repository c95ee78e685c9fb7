package worker

import "golang.org/x/sys/unix"

// pollRDHUP is POLLRDHUP from <poll.h>: the peer shut its side down.
const pollRDHUP = 0x2000

// peerShutdown reports whether the peer of a socket closed its side, even
// with bytes still queued to read: a TLS client sends close_notify first.
func peerShutdown(fd uintptr) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | pollRDHUP}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(pollRDHUP|unix.POLLHUP|unix.POLLERR) != 0
}
