//go:build srpprofile

// Built only with -tags srpprofile, so scripts/bench can profile a worker
// under load while the product itself has no profiling endpoint.

package main

import (
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// init starts a CPU profile in a worker when SRP_CPUPROFILE=1 and writes it
// to standard output on SIGUSR1. Standard output, because it is open before
// the worker starts: a locked-down worker may not open files, and srp writes
// nothing else there.
func init() {
	if os.Getenv("SRP_CPUPROFILE") != "1" || len(os.Args) < 2 || os.Args[1] != "worker" {
		return
	}
	if err := pprof.StartCPUProfile(os.Stdout); err != nil {
		slog.Error("cpu profile", "err", err)
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		<-sig
		pprof.StopCPUProfile()
		slog.Info("cpu profile written")
	}()
}
