package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// newConnGet sends one GET on a new connection and checks the answer.
func newConnGet(port int) error {
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/load/x", port), nil)
	req.Host = "app.test"
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func TestWorkerKilledIsReplaced(t *testing.T) {
	f := newReloadFleet(t)
	s := startLife(t, srpBin, f.config(0))
	worker := s.workerPIDs("worker ready")[0]
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, worker, 5*time.Second)
	killed := time.Now()
	// The listening socket stays open in the supervisor: these connect at
	// once and wait in the backlog for the replacement worker.
	for i := range 20 {
		if err := newConnGet(s.port); err != nil {
			t.Fatalf("request %d after the worker was killed: %v", i, err)
		}
		if i == 0 {
			t.Logf("first request after the kill answered in %v", time.Since(killed).Round(time.Millisecond))
			if d := time.Since(killed); d > 5*time.Second {
				t.Errorf("replacement worker took %v", d)
			}
		}
	}
	want := fmt.Sprintf(`msg="worker died" role=supervisor pid=%d gen=1 worker_pid=%d status="killed by signal killed"`, s.cmd.Process.Pid, worker)
	if !strings.Contains(s.out.String(), want) {
		t.Errorf("no log line %q", want)
	}
	if pids := s.workerPIDs("worker ready"); len(pids) != 2 || pids[1] == worker {
		t.Errorf("workers ready: %v, want the killed %d and one more", pids, worker)
	}
}

func TestWorkerCrashLoopGivesUp(t *testing.T) {
	f := newReloadFleet(t)
	s := startLife(t, srpBin, f.config(0))
	for i := 1; i <= 5; i++ {
		pids := s.workerPIDs("worker ready")
		if len(pids) != i {
			t.Fatalf("crash %d: %d workers became ready, want %d", i, len(pids), i)
		}
		if err := syscall.Kill(pids[i-1], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if i < 5 {
			s.waitLogCount(`msg="worker ready"`, i+1, 10*time.Second)
		}
	}
	if code := s.wait(10 * time.Second); code == 0 {
		t.Fatal("srp exited 0 after its worker kept crashing")
	}
	out := s.out.String()
	for _, want := range []string{`in=100ms crashes=1`, `in=200ms crashes=2`, `in=400ms crashes=3`, `in=800ms crashes=4`, `worker died 5 times within 1m0s, giving up`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the log", want)
		}
	}
	if !canBind(s.port) {
		t.Error("port still bound after srp gave up")
	}
}

func TestSupervisorKilledWorkerDrains(t *testing.T) {
	f := newReloadFleet(t)
	s := startLife(t, srpBin, f.config(0))
	worker := s.workerPIDs("worker ready")[0]
	slow := make(chan error, 1)
	go func() { slow <- slowGet(s.port) }()
	for f.lg.slow.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := <-slow; err != nil {
		t.Errorf("request in flight when the supervisor was killed: %v", err)
	}
	waitGone(t, worker, 15*time.Second)
	if !canBind(s.port) {
		t.Error("port still bound after the supervisor was killed and its worker drained")
	}
	if !strings.Contains(s.out.String(), `why="supervisor gone"`) {
		t.Error("worker did not log why it drained")
	}
}

func TestNoOrphansOrZombiesAfter100Reloads(t *testing.T) {
	f := newReloadFleet(t)
	s := startLife(t, srpBin, f.config(0))
	for i := 1; i <= 100; i++ {
		setConfig(t, s.config, f.config(i))
		s.signal(syscall.SIGHUP)
		s.waitLogCount(`msg="reload done"`, i, 30*time.Second)
	}
	s.waitLogCount(`msg="worker exited"`, 100, 30*time.Second)
	kids := children(s.cmd.Process.Pid)
	if len(kids) != 1 {
		t.Errorf("supervisor has %d children after 100 reloads, want its one worker: %v", len(kids), kids)
	}
	for pid, st := range kids {
		if st == 'Z' {
			t.Errorf("zombie child %d", pid)
		}
	}
	ready := s.workerPIDs("worker ready")
	for _, pid := range ready[:len(ready)-1] {
		if alive(pid) {
			t.Errorf("retired worker %d still running", pid)
		}
	}
	if err := newConnGet(s.port); err != nil {
		t.Errorf("request after 100 reloads: %v", err)
	}
}

// TestWorkerDiesDuringFailedReload kills the serving worker while a reload
// starts its successor, then kills the successor too: the reload fails,
// and the supervisor still respawns a worker with the last good config.
func TestWorkerDiesDuringFailedReload(t *testing.T) {
	var slow atomic.Bool
	be := newBackend(t, "be", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && slow.Load() {
			time.Sleep(1500 * time.Millisecond)
		}
		fmt.Fprint(w, "ok")
	})
	s := startLife(t, srpBin, appConfig(be.addr()))
	serving := s.workerPIDs("worker ready")[0]
	slow.Store(true)
	reload := make(chan string, 1)
	go func() {
		code, out := srpCLI(t, "reload", "-pidfile", s.pidfile)
		reload <- fmt.Sprintf("exit %d: %s", code, out)
	}()
	s.waitLogCount(`msg="worker started"`, 2, 10*time.Second)
	next := s.workerPIDs("worker started")[1]
	if err := syscall.Kill(serving, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitLog(`msg="worker died"`, 5*time.Second)
	if err := syscall.Kill(next, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if got := <-reload; !strings.Contains(got, "exit 1") || !strings.Contains(got, "killed by signal killed") {
		t.Errorf("srp reload whose worker was killed: %s", got)
	}
	slow.Store(false)
	s.waitLogCount(`msg="worker ready"`, 2, 10*time.Second)
	if err := newConnGet(s.port); err != nil {
		t.Errorf("request after the respawn: %v", err)
	}
}
