//go:build !linux

package platform

// PeerShutdown cannot see a shutdown behind queued bytes here; callers
// fall back to what a read would tell.
func PeerShutdown(fd uintptr) (closed, known bool) { return false, false }

// DeferAccept does nothing here: connections reach accept as they open.
func DeferAccept(fd uintptr) error { return nil }
