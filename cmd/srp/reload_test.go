package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// reloadFleet is two backend sets to switch between, each with one backend
// that fails its health check and so must never see a load request.
type reloadFleet struct {
	lg   *ledger
	sets [2][]string // backend addresses
	live [2][]string // names of the healthy ones
	down [2]string   // name of the unhealthy one
}

func newReloadFleet(t testing.TB) *reloadFleet {
	f := &reloadFleet{lg: newLedger()}
	for i, p := range []string{"a", "b"} {
		f.sets[i] = []string{f.lg.backend(t, p+"1", true), f.lg.backend(t, p+"2", true), f.lg.backend(t, p+"-down", false)}
		f.live[i] = []string{p + "1", p + "2"}
		f.down[i] = p + "-down"
	}
	return f
}

func (f *reloadFleet) config(i int) string { return appConfig(f.sets[i%2]...) }

// checkLoad fails the test on any failed, duplicated or lost request and
// on any request sent to a backend failing its health check.
func (f *reloadFleet) checkLoad(t testing.TB, l *load) {
	t.Helper()
	ok, failed := l.finish()
	total, dups := f.lg.deliveries()
	counts := f.lg.counts()
	t.Logf("load: %d ok, %d failed; backends received %d (%v)", ok, failed, total, counts)
	if failed > 0 {
		t.Errorf("%d requests failed:\n%s", failed, l.errors())
	}
	if len(dups) > 0 {
		t.Errorf("%d requests delivered more than once: %v", len(dups), dups[:min(len(dups), 10)])
	}
	if int64(total) != ok {
		t.Errorf("backends received %d requests, clients got %d answers", total, ok)
	}
	if ok < 100 {
		t.Errorf("only %d requests succeeded: the load did not run", ok)
	}
	for _, d := range f.down {
		if counts[d] > 0 {
			t.Errorf("%d requests reached %s, which fails its health check", counts[d], d)
		}
	}
}

// checkSwitched checks that traffic now goes to set i only.
func (f *reloadFleet) checkSwitched(t testing.TB, i int) {
	t.Helper()
	time.Sleep(2 * time.Second) // let keep-alive clients move: "within seconds"
	before := f.lg.counts()
	time.Sleep(time.Second)
	after := f.lg.counts()
	for _, name := range f.live[(i+1)%2] {
		if after[name] != before[name] {
			t.Errorf("old backend %s still got %d requests 2 s after the last reload", name, after[name]-before[name])
		}
	}
	for _, name := range f.live[i%2] {
		if after[name] == before[name] {
			t.Errorf("new backend %s got no requests 2 s after the last reload", name)
		}
	}
}

func TestReloadUnderLoad(t *testing.T) {
	f := newReloadFleet(t)
	s := startLife(t, srpBin, f.config(0))
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 4, fresh: 2, pause: 2 * time.Millisecond})

	slow := make(chan error, 1)
	n := 0
	for i := 1; i <= 20; i++ {
		setConfig(t, s.config, f.config(i))
		if i == 3 {
			go func() { slow <- slowGet(s.port) }()
			for f.lg.slow.Load() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		s.signal(syscall.SIGHUP)
		n++
		s.waitLogCount(`msg="reload done"`, n, 30*time.Second)
		l.progress(t, 100) // traffic between any two reloads
	}
	for i := 21; i <= 30; i++ {
		setConfig(t, s.config, f.config(i))
		code, out := srpCLI(t, "reload", "-pidfile", s.pidfile)
		if code != 0 || !strings.Contains(out, "reloaded") {
			t.Fatalf("srp reload #%d: exit %d, output %q", i-20, code, out)
		}
		l.progress(t, 100) // traffic between any two reloads
	}
	f.checkSwitched(t, 30)
	f.checkLoad(t, l)
	if err := <-slow; err != nil {
		t.Errorf("3 s request in flight across a reload: %v", err)
	}
	if got := s.logCount(`msg="worker exited"`); got < 29 {
		t.Errorf("%d old workers exited after 30 reloads", got)
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

func TestReloadInvalidConfig(t *testing.T) {
	f := newReloadFleet(t)
	s := startLife(t, srpBin, f.config(0))
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 3, fresh: 1, pause: 2 * time.Millisecond})
	l.progress(t, 200)

	bad := `{"Services": {"x.test": {"Backend": ["127.0.0.1:1"]}, "y.test": {"Backends": []}, "": {"Backends": ["127.0.0.1:2"]}}, "API": {"Subnet": "nonsense"}}`
	setConfig(t, s.config, bad)
	code, out := srpCLI(t, "reload", "-pidfile", s.pidfile)
	if code == 0 {
		t.Fatalf("srp reload of an invalid config exited 0: %q", out)
	}
	// Every problem, each on its own line, as "srp check" prints them.
	_, checkOut := srpCLI(t, "check", "-c", s.config)
	problems := strings.Split(strings.TrimSpace(checkOut), "\n")
	if len(problems) < 4 {
		t.Fatalf("srp check found only %d problems: %q", len(problems), checkOut)
	}
	for _, p := range problems {
		if !strings.Contains(out, p) {
			t.Errorf("srp reload output lacks problem %q:\n%s", p, out)
		}
	}
	// SIGHUP with the same file: logged, old worker kept.
	s.signal(syscall.SIGHUP)
	s.waitLogCount(`msg="reload rejected, old config still serving"`, 2, 10*time.Second)
	if got := s.logCount(`msg="worker started"`); got != 1 {
		t.Errorf("%d workers started; an invalid config must not start one", got)
	}
	l.progress(t, 200)
	f.checkLoad(t, l)
	counts := f.lg.counts()
	if counts["b1"]+counts["b2"] > 0 {
		t.Errorf("backends of no valid config got requests: %v", counts)
	}

	// A valid config afterwards still reloads.
	setConfig(t, s.config, f.config(1))
	if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
		t.Fatalf("srp reload after fixing the config: exit %d: %s", code, out)
	}
}

// TestReloadsCoalesce sends reload requests while a reload runs: they are
// served by one follow-up reload, and every "srp reload" waiting for it
// gets its result.
func TestReloadsCoalesce(t *testing.T) {
	// Each worker's first health round takes 1.5 s, so a reload does too:
	// time for the requests below to arrive while it runs.
	slowHealth := newBackend(t, "slow-health", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			time.Sleep(1500 * time.Millisecond)
		}
		fmt.Fprint(w, "ok")
	})
	s := startLife(t, srpBin, appConfig(slowHealth.addr()))
	s.signal(syscall.SIGHUP)
	s.waitLogCount(`msg="reload started"`, 1, 10*time.Second)
	for range 5 {
		s.signal(syscall.SIGHUP)
	}
	var wg sync.WaitGroup
	codes := make([]int, 3)
	for i := range codes {
		wg.Go(func() { codes[i], _ = srpCLI(t, "reload", "-pidfile", s.pidfile) })
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Errorf("srp reload %d waiting behind a reload: exit %d", i, c)
		}
	}
	s.waitLogCount(`msg="reload done"`, 2, 10*time.Second)
	if got := s.logCount(`msg="reload started"`); got != 2 {
		t.Errorf("%d reloads ran for 6 signals and 3 srp reload during one reload, want 2", got)
	}
}
