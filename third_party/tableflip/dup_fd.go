//go:build !windows
// +build !windows

package tableflip

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// dupFd goes through unix.FcntlInt rather than a raw SYS_FCNTL syscall:
// OpenBSD 7.5 and later allow system calls only through libc, and Go
// returns ENOSYS for the raw one there (golang/go#63900).
func dupFd(fd uintptr) (uintptr, error) {
	dupfd, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("can't dup fd using fcntl: %s", err)
	}

	return uintptr(dupfd), nil
}

func closeFd(fd uintptr) error {
	return unix.Close(int(fd))
}
