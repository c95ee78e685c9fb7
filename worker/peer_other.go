//go:build !linux

package worker

// peerShutdown reports whether the peer of a socket closed its side. Here
// only a close with nothing queued to read is seen, so a TLS client that
// left is noticed when its response is written.
func peerShutdown(fd uintptr) bool { return peekFD(fd) == peekClosed }
