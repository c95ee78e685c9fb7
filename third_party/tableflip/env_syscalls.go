//go:build !windows
// +build !windows

package tableflip

import (
	"os"
	"syscall"
)

var stdEnv = &env{
	newProc:     newOSProcess,
	newFile:     os.NewFile,
	passedFd:    func(fd int) uintptr { return uintptr(fd) },
	environ:     os.Environ,
	getenv:      os.Getenv,
	closeOnExec: syscall.CloseOnExec,
}
