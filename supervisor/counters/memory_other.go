//go:build unix && !linux

package counters

import "os"

// newMemory returns a file of n bytes with no name: created in the
// temporary directory and unlinked at once, so it is gone with the last
// process that holds it.
func newMemory(n int) (*os.File, error) {
	f, err := os.CreateTemp("", "srp-counters-*")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name())
	if err := f.Truncate(int64(n)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
