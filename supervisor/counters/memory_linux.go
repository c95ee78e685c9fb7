package counters

import (
	"os"

	"golang.org/x/sys/unix"
)

// newMemory returns an anonymous file of n bytes: nothing on disk, gone
// with the last process that holds it.
func newMemory(n int) (*os.File, error) {
	fd, err := unix.MemfdCreate("srp-counters", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "srp-counters")
	if err := f.Truncate(int64(n)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
