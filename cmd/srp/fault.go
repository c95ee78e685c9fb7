//go:build srpfault

package main

import (
	"io"
	"os"
)

// Built only with the srpfault tag, which the process tests use to make a
// "new release" that fails in ways a shell script cannot fake: the worker
// is run from the supervisor's own executable, so a wrapper script never
// sees it. SRP_FAULT picks the fault; an ordinary build has none of this.
func init() {
	if len(os.Args) < 2 || os.Args[1] != "worker" {
		return
	}
	switch os.Getenv("SRP_FAULT") {
	case "worker-exit":
		os.Exit(3)
	case "worker-hang":
		// Never ready; it exits once its supervisor is gone, as a real
		// worker does, so a test never leaves it behind.
		_, _ = io.Copy(io.Discard, os.NewFile(3, "control"))
		os.Exit(3)
	}
}
