//go:build !linux && !openbsd

package platform

import (
	"log/slog"
	"os/exec"
	"runtime"
)

// Lockdown prepares what role needs later; this system has no pledge,
// unveil or Landlock for srp to apply.
func Lockdown(role Role, p Paths, log *slog.Logger) error {
	if err := prepare(role, p); err != nil {
		return err
	}
	logger(log).Debug("lockdown: nothing to apply", "role", role, "os", runtime.GOOS)
	return nil
}

// StartWorker starts a worker process, as p.User if set.
func StartWorker(cmd *exec.Cmd, p Paths, _ *slog.Logger) error {
	if err := applyCredential(cmd, p.User); err != nil {
		return err
	}
	return cmd.Start()
}
