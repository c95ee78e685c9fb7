//go:build !linux

package fast

// parker is Linux's epoll set for idle connections; elsewhere an idle
// connection keeps its goroutine, waiting on its socket.
type parker struct{}

func newParker(*Server) *parker { return nil }

func (*parker) park(*conn) bool { return false }

func (*parker) closeAll() {}
