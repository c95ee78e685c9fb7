//go:build unix

package platform

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// giveDir hands the certificate cache, and the files srp left in it while
// it ran as root, to c, so workers running as c can keep using them. It
// acts only while the directory still belongs to this process's user, and
// hands the directory over last: until then no worker can write in it, so
// nothing in it was planted by one, and afterwards everything in it is the
// workers' and is never touched again. Even so only regular files owned by
// this user with a single link are handed over, so that a hard link to a
// file elsewhere can never turn into a chown of that file.
func giveDir(dir string, c *Credential) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() || !ownedByUs(fi) {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink == 1 && ownedByUs(fi) {
			errs = append(errs, os.Lchown(path, int(c.UID), int(c.GID)))
		}
	}
	errs = append(errs, os.Lchown(dir, int(c.UID), int(c.GID)))
	return errors.Join(errs...)
}

func ownedByUs(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
