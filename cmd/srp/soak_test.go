package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var soak = flag.Bool("soak", false, "run TestReloadUpgradeCycle as a soak: 200 reloads and 50 upgrades under load")

// TestReloadUpgradeCycle mixes reloads (SIGHUP and "srp reload"), binary
// upgrades, failed upgrades (a release whose worker exits, one that hangs)
// and workers told to stop behind the supervisor's back, under keep-alive
// and new-connection load, switching backend sets each time, and requires
// every request to succeed exactly once. With -soak it runs 200 reloads,
// 50 upgrades and 5 of each fault and prints totals.
func TestReloadUpgradeCycle(t *testing.T) {
	reloads, upgrades, faults := 12, 3, 1
	if *soak {
		reloads, upgrades, faults = 200, 50, 5
	}
	f := newReloadFleet(t)
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, f.config(0), "-timeout", "3s")
	u := &upgrader{t: t, s: s, drain: 3 * time.Second}
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 4, fresh: 2, pause: 2 * time.Millisecond, limit: time.Hour})
	start := time.Now()

	every := reloads / upgrades // a reload cycle between upgrades
	faultEvery := reloads / faults
	done, upgraded, sighup, failed, killed := 0, 0, 0, 0, 0
	var lastKill time.Time
	for step := 1; done < reloads || upgraded < upgrades; step++ {
		if upgraded < upgrades && (done >= reloads || step%(every+1) == 0) {
			upgraded++
			u.upgrade(upgraded)
			continue
		}
		if done%faultEvery == faultEvery/2 && failed < 2*faults {
			failed += 2
			installFault(t, bin, "worker-exit")
			u.failUpgrade("exit status 3")
			if failed%4 == 2 {
				installScript(t, bin, "exec sleep 600")
				u.failUpgrade("timed out")
			} else {
				installFault(t, bin, "worker-hang")
				u.failUpgrade("not ready within")
			}
			installBinary(t, srpBin, bin)
			// Five worker deaths a minute make srp give up: keep well below.
			if wait := 15*time.Second - time.Since(lastKill); killed > 0 && wait > 0 {
				time.Sleep(wait)
			}
			killed++
			lastKill = time.Now()
			s.stopWorker()
		}
		done++
		setConfig(t, s.config, f.config(done))
		if done%2 == 0 {
			if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
				t.Fatalf("srp reload %d: exit %d: %s", done, code, out)
			}
		} else {
			// The serving supervisor changes with each upgrade.
			pid, err := readPID(s.pidfile)
			if err != nil {
				t.Fatal(err)
			}
			sighup++
			before := s.logCount(`msg="reload done"`)
			if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			s.waitLogCount(`msg="reload done"`, before+1, 30*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.checkSwitched(t, done)
	elapsed := time.Since(start)
	f.checkLoad(t, l)
	ok, lost := l.finish()
	total, dups := f.lg.deliveries()
	summary := fmt.Sprintf("reload/upgrade cycle: %d reloads (%d SIGHUP, %d srp reload), %d upgrades, %d failed upgrades, %d workers stopped in %v under load: %d requests ok, %d failed, %d delivered, %d duplicates",
		done, sighup, done-sighup, upgraded, failed, killed, elapsed.Round(time.Second), ok, lost, total, len(dups))
	t.Log(summary)
	if *soak {
		fmt.Println(summary)
	}
	if n := strings.Count(s.out.String(), `msg="worker died"`); n != killed {
		t.Errorf("%d workers died during the cycle, %d were stopped", n, killed)
	}
}

// stopWorker sends SIGTERM to the serving worker, as an operator's stray
// kill would, and waits for its replacement. The worker drains, so no
// request fails; the supervisor sees a worker it did not retire die.
func (s *lifeSRP) stopWorker() {
	s.t.Helper()
	pids := s.workerPIDs("worker ready")
	if err := syscall.Kill(pids[len(pids)-1], syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	s.waitLogCount(`msg="worker ready"`, len(pids)+1, 30*time.Second)
}
