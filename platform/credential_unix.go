//go:build unix

package platform

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// checkSwitch accepts c if this process can start workers as c: only root
// can switch users, and a switch to oneself is no switch at all.
func checkSwitch(spec string, c *Credential) (*Credential, error) {
	euid, egid := os.Geteuid(), os.Getegid()
	switch {
	case euid == 0:
		return c, nil
	case uint32(euid) == c.UID && uint32(egid) == c.GID:
		return nil, nil
	}
	return nil, fmt.Errorf("-user %q: srp must be started as root to run workers as another user (running as uid %d)", spec, euid)
}

// applyCredential makes cmd run as c with no supplementary groups (an empty
// Groups list clears them rather than keeping the supervisor's).
func applyCredential(cmd *exec.Cmd, c *Credential) error {
	if c == nil {
		return nil
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: []uint32{}}
	return nil
}
