package platform

import "golang.org/x/sys/unix"

// pollRDHUP is POLLRDHUP from <poll.h>: the peer shut its side down.
const pollRDHUP = 0x2000

// PeerShutdown reports whether the peer of a connected socket closed its
// side, even with bytes still queued to read (a TLS client sends
// close_notify first). known is false where the system cannot tell that.
func PeerShutdown(fd uintptr) (closed, known bool) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | pollRDHUP}}
	n, err := unix.Poll(fds, 0)
	if err != nil {
		return false, false
	}
	return n > 0 && fds[0].Revents&(pollRDHUP|unix.POLLHUP|unix.POLLERR) != 0, true
}
