package platform

import (
	"fmt"

	"golang.org/x/sys/unix"
)

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

// deferAcceptSeconds is how long the kernel holds a connection that has
// sent nothing before handing it to accept anyway, as HAProxy's
// defer-accept does.
const deferAcceptSeconds = 1

// DeferAccept makes a TCP listener hand a connection to accept only once
// its first bytes have arrived (TCP_DEFER_ACCEPT). Every client of srp
// speaks first, so the worker's first read need not find the socket empty
// and wait for it: a third of the worker's thread switches per new
// connection were that wait.
func DeferAccept(fd uintptr) error {
	if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds); err != nil {
		return fmt.Errorf("TCP_DEFER_ACCEPT: %w", err)
	}
	return nil
}
