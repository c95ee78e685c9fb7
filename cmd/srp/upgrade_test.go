package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installBinary puts a copy of src at path the way an operator installs a
// new release: write beside it, then rename over it.
func installBinary(t testing.TB, src, path string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := path + ".new"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// installScript replaces the binary at path with a shell script.
func installScript(t testing.TB, path, script string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// upgrader runs upgrades of one srp and checks each hand-over.
type upgrader struct {
	t     testing.TB
	s     *lifeSRP
	drain time.Duration // the -timeout srp runs with
}

// upgrade runs "srp upgrade" and checks the pidfile moves to the new
// supervisor and the old supervisor and its worker exit within the drain
// deadline.
func (u *upgrader) upgrade(n int) {
	u.t.Helper()
	oldPID, err := readPID(u.s.pidfile)
	if err != nil {
		u.t.Fatal(err)
	}
	oldWorkers := children(oldPID)
	code, out := srpCLI(u.t, "upgrade", "-pidfile", u.s.pidfile)
	if code != 0 {
		u.t.Fatalf("srp upgrade #%d: exit %d:\n%s", n, code, out)
	}
	newPID, err := readPID(u.s.pidfile)
	if err != nil || newPID == oldPID {
		u.t.Fatalf("after upgrade #%d the pidfile holds %d (%v), before %d", n, newPID, err, oldPID)
	}
	if !strings.Contains(out, "pid "+strconv.Itoa(newPID)) {
		u.t.Errorf("srp upgrade #%d said %q, not naming pid %d", n, out, newPID)
	}
	// The deadline plus process exit; the test's 2 s on top is slack for a
	// loaded machine, not for srp.
	waitGone(u.t, oldPID, u.drain+2*time.Second)
	for w := range oldWorkers {
		waitGone(u.t, w, time.Second)
	}
}

// failUpgrade runs "srp upgrade" expecting it to fail, saying want, with
// the old srp still serving and still named by the pidfile.
func (u *upgrader) failUpgrade(want string) {
	u.t.Helper()
	before, _ := readPID(u.s.pidfile)
	code, out := srpCLI(u.t, "upgrade", "-pidfile", u.s.pidfile)
	u.t.Logf("srp upgrade to a broken binary: exit %d: %s", code, strings.TrimSpace(out))
	if code == 0 || !strings.Contains(out, want) {
		u.t.Errorf("srp upgrade to a broken binary: exit %d, output %q, want non-zero and %q", code, out, want)
	}
	if after, _ := readPID(u.s.pidfile); after != before || !alive(before) {
		u.t.Errorf("failed upgrade moved the pidfile from %d to %d (old alive: %v)", before, after, alive(before))
	}
}

func TestUpgradeUnderLoad(t *testing.T) {
	f := newReloadFleet(t)
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, f.config(0), "-timeout", "3s")
	u := &upgrader{t: t, s: s, drain: 3 * time.Second}
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 4, fresh: 2, pause: 2 * time.Millisecond})
	l.progress(t, 200)

	u.upgrade(1)
	u.upgrade(2)
	installBinary(t, srpBin, bin) // a new release on disk: new inode, same path
	u.upgrade(3)

	installScript(t, bin, "exit 1")
	u.failUpgrade("exit status 1")
	installScript(t, bin, "exec sleep 600")
	start := time.Now()
	u.failUpgrade("timed out")
	t.Logf("hanging binary given up after %v", time.Since(start).Round(time.Millisecond))
	installBinary(t, srpBin, bin)
	setConfig(t, s.config, `{"Services": {"x.test": {"Backend": ["127.0.0.1:1"]}}}`)
	u.failUpgrade(`unknown field "Backend"`)
	setConfig(t, s.config, f.config(0))

	u.upgrade(4)
	u.upgrade(5)
	l.progress(t, 200)
	f.checkLoad(t, l)
}

// TestSIGUSR2Upgrades upgrades by signal alone, with no "srp upgrade" to
// wait for: the pidfile moves to the new supervisor and the old one exits 0.
func TestSIGUSR2Upgrades(t *testing.T) {
	f := newReloadFleet(t)
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, f.config(0), "-timeout", "3s")
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 2, fresh: 1, pause: 2 * time.Millisecond})
	l.progress(t, 200)
	s.signal(syscall.SIGUSR2)
	s.waitLog(`msg="upgrade done, handing over"`, 20*time.Second)
	// The old supervisor's output pipe stays open in its successor, so it is
	// watched by PID and by its last log line rather than by exec's Wait.
	old := s.cmd.Process.Pid
	waitGone(t, old, 5*time.Second)
	pid, err := readPID(s.pidfile)
	if err != nil || pid == old || !alive(pid) {
		t.Fatalf("pidfile after SIGUSR2: %d, %v", pid, err)
	}
	if want := fmt.Sprintf(`level=INFO msg="supervisor stopped" role=supervisor pid=%d handed_over_to=%d`, old, pid); !strings.Contains(s.out.String(), want) {
		t.Errorf("no %q in the log", want)
	}
	l.progress(t, 200)
	f.checkLoad(t, l)
}
