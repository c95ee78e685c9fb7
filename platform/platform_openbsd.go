package platform

import (
	"fmt"
	"log/slog"
	"os/exec"

	"golang.org/x/sys/unix"
)

// Lockdown unveils role's paths, blocks further unveils and pledges role's
// promises, in that order: pledge without the unveil promise would forbid
// the unveil calls. Listeners must exist before (Go's first Listen reads
// kern.somaxconn, which the promises forbid). Exec promises stay unset, so
// the workers and upgraded binaries this process starts lock themselves down.
func Lockdown(role Role, p Paths, log *slog.Logger) error {
	if err := prepare(role, p); err != nil {
		return err
	}
	promises, unveils := Rules(role, p)
	for _, u := range unveils {
		if err := unix.Unveil(u.Path, u.Perm); err != nil {
			return fmt.Errorf("lockdown: unveil %s %q: %w", u.Path, u.Perm, err)
		}
	}
	if err := unix.UnveilBlock(); err != nil {
		return fmt.Errorf("lockdown: unveil block: %w", err)
	}
	if err := unix.PledgePromises(promises); err != nil {
		return fmt.Errorf("lockdown: pledge %q: %w", promises, err)
	}
	logger(log).Info("pledge applied", "promises", promises, "unveil", describe(unveils))
	return nil
}

// StartWorker starts a worker process, as p.User if set. The worker pledges
// itself once it has its listeners and config.
func StartWorker(cmd *exec.Cmd, p Paths, _ *slog.Logger) error {
	if err := applyCredential(cmd, p.User); err != nil {
		return err
	}
	return cmd.Start()
}
