package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	faultOnce sync.Once
	faultPath string
	faultErr  error
)

// faultBin builds, once, an srp whose worker misbehaves as SRP_FAULT says
// (see fault.go).
func faultBin(t testing.TB) string {
	t.Helper()
	faultOnce.Do(func() {
		faultPath = filepath.Join(filepath.Dir(srpBin), "srp-fault")
		args := []string{"build", "-tags", "srpfault", "-o", faultPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			faultErr = fmt.Errorf("build srp with faults: %v\n%s", err, out)
		}
	})
	if faultErr != nil {
		t.Fatal(faultErr)
	}
	return faultPath
}

// installFault puts at path a release whose workers fail as fault says.
func installFault(t testing.TB, path, fault string) {
	t.Helper()
	installScript(t, path, fmt.Sprintf("SRP_FAULT=%s exec %s \"$@\"", fault, faultBin(t)))
}

// dirState describes every file in dir: name, type, inode, size, mtime and,
// for small files, content. Two equal states mean nothing was touched.
func dirState(t testing.TB, dir string, skip ...string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range entries {
		if slicesContains(skip, e.Name()) {
			lines = append(lines, e.Name())
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v ino=%d size=%d mtime=%d", e.Name(), fi.Mode(), st.Ino, fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() && fi.Size() < 64 {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			line += fmt.Sprintf(" %q", b)
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestFailedUpgradeKeepsFiles upgrades to releases that fail in each way
// an upgrade can fail and checks that the serving srp's pidfile, control
// socket and every other file beside them are exactly as before, and that
// reload and upgrade still work afterwards.
func TestFailedUpgradeKeepsFiles(t *testing.T) {
	f := newReloadFleet(t)
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, f.config(0), "-timeout", "3s")
	u := &upgrader{t: t, s: s, drain: 3 * time.Second}
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 2, fresh: 1, pause: 2 * time.Millisecond})
	l.progress(t, 100)

	for i, c := range []struct {
		name, want string
		install    func()
	}{
		{"new worker exits", "exit status 3", func() { installFault(t, bin, "worker-exit") }},
		{"new supervisor exits", "exit status 1", func() { installScript(t, bin, "exit 1") }},
		{"new worker hangs", "not ready within", func() { installFault(t, bin, "worker-hang") }},
		{"new binary hangs", "timed out", func() { installScript(t, bin, "exec sleep 600") }},
		{"config refused", `unknown field "Backend"`, func() {
			installBinary(t, srpBin, bin)
			setConfig(t, s.config, `{"Services": {"x.test": {"Backend": ["127.0.0.1:1"]}}}`)
		}},
	} {
		before := dirState(t, s.dir, "config.json")
		c.install()
		u.failUpgrade(c.want)
		setConfig(t, s.config, f.config(i+1))
		if after := dirState(t, s.dir, "config.json"); after != before {
			t.Errorf("%s: files changed by the failed upgrade:\nbefore:\n%s\nafter:\n%s", c.name, before, after)
		}
		if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
			t.Fatalf("%s: srp reload after the failed upgrade: exit %d: %s", c.name, code, out)
		}
		l.progress(t, 50)
	}
	installBinary(t, srpBin, bin)
	u.upgrade(1)
	if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
		t.Fatalf("srp reload after the upgrade: exit %d: %s", code, out)
	}
	l.progress(t, 100)
	f.checkLoad(t, l)
}
