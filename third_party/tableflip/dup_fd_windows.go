package tableflip

import "errors"

func dupFd(fd uintptr) (uintptr, error) {
	return 0, errors.New("tableflip: duplicating file descriptors is not supported on this platform")
}

func closeFd(fd uintptr) error {
	return errors.New("tableflip: closing file descriptors is not supported on this platform")
}
