package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slowFleetConfig adds to the fleet's set i a backend whose health check
// answers 500 after 1.5 s: every new worker's first health round takes
// that long, and the backend never gets a request.
func slowFleetConfig(t testing.TB, f *reloadFleet, i int) string {
	t.Helper()
	slow := newBackend(t, "slow-down", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
		w.WriteHeader(http.StatusInternalServerError)
	})
	return appConfig(append(append([]string(nil), f.sets[i%2]...), slow.addr())...)
}

// waitServing waits until the pidfile names a live srp other than old and
// returns its PID.
func (s *lifeSRP) waitServing(t testing.TB, bin string, old int, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if pid, err := readPID(s.pidfile); err == nil && pid != old && s.ours(bin, pid) {
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid, err := readPID(s.pidfile)
	t.Fatalf("no srp serving after %v: pidfile holds %d (%v, alive %v)", d, pid, err, alive(pid))
	return 0
}

// TestOldSupervisorKilledMidUpgrade kills the old supervisor with SIGKILL
// at several points of an upgrade under load: the new srp carries on, the
// port keeps answering and the pidfile names the supervisor left running.
func TestOldSupervisorKilledMidUpgrade(t *testing.T) {
	f := newReloadFleet(t)
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, slowFleetConfig(t, f, 0), "-timeout", "3s")
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 3, fresh: 1, pause: 2 * time.Millisecond})
	l.progress(t, 100)
	for i, after := range []time.Duration{0, 200 * time.Millisecond, 800 * time.Millisecond, 1400 * time.Millisecond} {
		old, err := readPID(s.pidfile)
		if err != nil {
			t.Fatal(err)
		}
		// Counted from the new binary's first line: killing the old one
		// before it has started anything is no upgrade at all.
		takeovers := s.logCount(`takeover=true`)
		if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		s.waitLogCount(`takeover=true`, takeovers+1, 10*time.Second)
		time.Sleep(after)
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitGone(t, old, 5*time.Second)
		pid := s.waitServing(t, bin, old, 20*time.Second)
		t.Logf("kill %d, %v after the new binary started: pid %d serving", i+1, after, pid)
		l.progress(t, 100)
	}
	// The survivor still reloads and upgrades.
	if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
		t.Fatalf("srp reload: exit %d: %s", code, out)
	}
	(&upgrader{t: t, s: s, drain: 3 * time.Second}).upgrade(1)
	l.progress(t, 100)
	f.checkLoad(t, l)
}

// TestWorkerCrashDuringUpgradeRespawns kills the serving worker while an
// upgrade waits for a new binary that hangs: the worker is replaced at
// once, not when the upgrade gives up.
func TestWorkerCrashDuringUpgradeRespawns(t *testing.T) {
	f := newReloadFleet(t)
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, f.config(0), "-timeout", "3s")
	u := &upgrader{t: t, s: s, drain: 3 * time.Second}
	installScript(t, bin, "exec sleep 600")
	failed := make(chan struct{})
	go func() {
		defer close(failed)
		u.failUpgrade("timed out")
	}()
	s.waitLog(`msg="upgrade started"`, 10*time.Second)
	worker := s.workerPIDs("worker ready")[0]
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := newConnGet(s.port); err != nil {
		t.Errorf("request after the worker was killed: %v", err)
	}
	if d := time.Since(killed); d > 3*time.Second {
		t.Errorf("a worker killed during an upgrade was replaced after %v", d.Round(time.Millisecond))
	}
	<-failed
	if pids := s.workerPIDs("worker ready"); len(pids) != 2 {
		t.Errorf("workers ready: %v, want the killed one and its replacement", pids)
	}
}

// TestQueuedBehindUpgrade queues reloads behind an upgrade that succeeds:
// none runs in the retiring supervisor, a caller waiting for one is told
// where srp went, and the new srp runs the reload.
func TestQueuedBehindUpgrade(t *testing.T) {
	f := newReloadFleet(t)
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, slowFleetConfig(t, f, 0), "-timeout", "3s")
	old := s.cmd.Process.Pid
	upgraded := make(chan string, 1)
	go func() {
		code, out := srpCLI(t, "upgrade", "-pidfile", s.pidfile)
		upgraded <- fmt.Sprintf("exit %d: %s", code, out)
	}()
	s.waitLog(`msg="upgrade started"`, 10*time.Second)
	reloaded := make(chan string, 1)
	go func() {
		code, out := srpCLI(t, "reload", "-pidfile", s.pidfile)
		reloaded <- fmt.Sprintf("exit %d: %s", code, out)
	}()
	s.waitLog(`msg="request queued behind running operation" role=supervisor pid=`+fmt.Sprint(old)+` op=reload`, 10*time.Second)
	s.signal(syscall.SIGHUP)
	if got := <-upgraded; !strings.HasPrefix(got, "exit 0") {
		t.Fatalf("srp upgrade: %s", got)
	}
	pid := s.waitServing(t, bin, old, 10*time.Second)
	got := <-reloaded
	t.Logf("srp reload queued behind the upgrade: %s", strings.TrimSpace(got))
	if !strings.HasPrefix(got, "exit 0") && !strings.Contains(got, fmt.Sprintf("pid %d", pid)) {
		t.Errorf("srp reload queued behind the upgrade to %d: %s", pid, got)
	}
	s.waitLog(fmt.Sprintf(`msg="reload done" role=supervisor pid=%d`, pid), 20*time.Second)
	waitGone(t, old, 10*time.Second)
	if ran := fmt.Sprintf(`msg="reload started" role=supervisor pid=%d`, old); strings.Contains(s.out.String(), ran) {
		t.Errorf("the retiring supervisor ran a queued reload: %q in the log", ran)
	}
}
