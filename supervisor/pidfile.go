package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// writePIDFile atomically replaces path with pid (ours), so a reader never
// sees a half-written file and an upgrade hands over in one step.
func writePIDFile(path string, pid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write pidfile %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := fmt.Fprintf(tmp, "%d\n", pid); err != nil {
		tmp.Close()
		return fmt.Errorf("write pidfile %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write pidfile %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write pidfile %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write pidfile %s: %w", path, err)
	}
	return nil
}

// ReadPIDFile returns the PID recorded in path.
func ReadPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("read pidfile %s: no PID in %q", path, b)
	}
	return pid, nil
}

// removePIDFile removes path only if it still holds our PID, ours: after
// an upgrade it names the new supervisor, and another srp may have taken it.
func removePIDFile(path string, ours int) (bool, error) {
	pid, err := ReadPIDFile(path)
	if err != nil || pid != ours {
		return false, nil
	}
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("remove pidfile: %w", err)
	}
	return true, nil
}
