//go:build !unix

package platform

import (
	"fmt"
	"os/exec"
	"runtime"
)

func checkSwitch(spec string, _ *Credential) (*Credential, error) {
	return nil, fmt.Errorf("-user %q: running workers as another user is not supported on %s", spec, runtime.GOOS)
}

func applyCredential(_ *exec.Cmd, c *Credential) error {
	if c != nil {
		return fmt.Errorf("running workers as %s is not supported on %s", c, runtime.GOOS)
	}
	return nil
}

// giveDir has nothing to do where workers cannot run as another user.
func giveDir(string, *Credential) error { return nil }
