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

// TestReloadUpgradeCycle mixes reloads (SIGHUP and "srp reload") and
// binary upgrades under keep-alive and new-connection load, switching
// backend sets each time, and requires every request to succeed exactly
// once. With -soak it runs 200 reloads and 50 upgrades and prints totals.
func TestReloadUpgradeCycle(t *testing.T) {
	reloads, upgrades := 12, 3
	if *soak {
		reloads, upgrades = 200, 50
	}
	f := newReloadFleet(t)
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, f.config(0), "-timeout", "3s")
	u := &upgrader{t: t, s: s, drain: 3 * time.Second}
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 4, fresh: 2, pause: 2 * time.Millisecond, limit: time.Hour})
	start := time.Now()

	every := reloads / upgrades // a reload cycle between upgrades
	done, upgraded, sighup := 0, 0, 0
	for step := 1; done < reloads || upgraded < upgrades; step++ {
		if upgraded < upgrades && (done >= reloads || step%(every+1) == 0) {
			upgraded++
			u.upgrade(upgraded)
			continue
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
	ok, failed := l.finish()
	total, dups := f.lg.deliveries()
	summary := fmt.Sprintf("reload/upgrade cycle: %d reloads (%d SIGHUP, %d srp reload), %d upgrades in %v under load: %d requests ok, %d failed, %d delivered, %d duplicates",
		done, sighup, done-sighup, upgraded, elapsed.Round(time.Second), ok, failed, total, len(dups))
	t.Log(summary)
	if *soak {
		fmt.Println(summary)
	}
	if n := strings.Count(s.out.String(), `msg="worker died"`); n > 0 {
		t.Errorf("%d workers died during the cycle", n)
	}
}
