//go:build unix

package platform

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestWorkerCredentialRefuses(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"srp-no-such-user-x", `no such user "srp-no-such-user-x"`},
		{"nobody:srp-no-such-group-x", `no such group "srp-no-such-group-x"`},
		{":wheel", "want NAME or NAME:GROUP"},
		{"nobody:", "want NAME or NAME:GROUP"},
		{"root", "must not run as root"},
		{"0", "must not run as root"},
	}
	for _, tt := range tests {
		c, err := WorkerCredential(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("WorkerCredential(%q) = %v, %v; want error with %q", tt.spec, c, err, tt.want)
		}
	}
	if c, err := WorkerCredential(""); c != nil || err != nil {
		t.Errorf(`WorkerCredential("") = %v, %v; want nil, nil`, c, err)
	}
}

func nobody(t *testing.T) *user.User {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody here: %v", err)
	}
	return u
}

func TestWorkerCredentialNobody(t *testing.T) {
	u := nobody(t)
	if os.Geteuid() != 0 {
		_, err := WorkerCredential("nobody")
		if err == nil || !strings.Contains(err.Error(), "must be started as root") {
			t.Fatalf("non-root switch to nobody: %v, want a refusal", err)
		}
		return
	}
	for _, spec := range []string{"nobody", u.Uid, "nobody:" + u.Gid} {
		c, err := WorkerCredential(spec)
		if err != nil {
			t.Fatalf("WorkerCredential(%q): %v", spec, err)
		}
		if strconv.Itoa(int(c.UID)) != u.Uid || strconv.Itoa(int(c.GID)) != u.Gid || c.User != "nobody" {
			t.Errorf("WorkerCredential(%q) = %+v, want nobody's uid %s gid %s", spec, c, u.Uid, u.Gid)
		}
	}
}

// A worker started as -user runs with that uid and gid and none of the
// supervisor's supplementary groups.
func TestStartWorkerAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	u := nobody(t)
	c, err := WorkerCredential("nobody")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "id -u; id -g; id -G")
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		// On Linux the worker's Landlock domain only allows the starting
		// binary, so ask this test binary for its ids instead.
		cmd = exec.Command("/proc/self/exe", "-test.run=^TestPrintIDs$")
		cmd.Env = append(os.Environ(), "SRP_PRINT_IDS=1")
	}
	out := &strings.Builder{}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := StartWorker(cmd, Paths{User: c}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker: %v\n%s", err, out)
	}
	want := u.Uid + "\n" + u.Gid + "\n" + u.Gid + "\n"
	if !strings.HasPrefix(out.String(), want) {
		t.Errorf("worker ids:\n%s\nwant uid, gid, groups:\n%s", out, want)
	}
}

// TestPrintIDs is TestStartWorkerAsUser's stand-in worker.
func TestPrintIDs(t *testing.T) {
	if os.Getenv("SRP_PRINT_IDS") == "" {
		t.Skip("run by TestStartWorkerAsUser")
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	g := []string{strconv.Itoa(os.Getgid())} // as id -G: the group first, then the supplementary ones
	for _, x := range groups {
		g = append(g, strconv.Itoa(x))
	}
	os.Stdout.WriteString(strconv.Itoa(os.Getuid()) + "\n" + strconv.Itoa(os.Getgid()) + "\n" + strings.Join(g, " ") + "\n")
}

// The cache is handed to the worker user once, with only what root itself
// left there: a hard link a worker planted to a file elsewhere, or a
// symbolic link, never becomes a chown of that file, and nothing is
// chowned again once the directory is the workers'.
func TestCacheHandedOverOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("handing files to another user needs root")
	}
	nobody(t)
	c, err := WorkerCredential("nobody")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	dir, outside := filepath.Join(root, "certs"), filepath.Join(root, "shadow")
	write := func(path string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write(outside)
	write(filepath.Join(dir, "example.com"))
	if err := os.Link(outside, filepath.Join(dir, "planted")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "symlink")); err != nil {
		t.Fatal(err)
	}
	owner := func(path string) uint32 {
		t.Helper()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Uid
	}
	if err := giveDir(dir, c); err != nil {
		t.Fatal(err)
	}
	if owner(dir) != c.UID || owner(filepath.Join(dir, "example.com")) != c.UID {
		t.Error("the cache and root's certificate were not handed over")
	}
	if owner(outside) != 0 || owner(filepath.Join(dir, "symlink")) != 0 {
		t.Error("a linked file outside the cache was handed over")
	}
	later := filepath.Join(dir, "later")
	write(later) // as root, after the hand-over
	if err := giveDir(dir, c); err != nil {
		t.Fatal(err)
	}
	if owner(later) != 0 {
		t.Error("the cache was handed over a second time")
	}
}
