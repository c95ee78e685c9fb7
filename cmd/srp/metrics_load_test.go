package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// http10Load sends HTTP/1.0 requests, one connection each: net/http
// serves those, not the fast path. It counts every answer.
type http10Load struct {
	port   int
	host   string
	stop   chan struct{}
	wg     sync.WaitGroup
	ok     atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	errs   []string
}

func startHTTP10(t testing.TB, port int, host string, clients int, pause time.Duration) *http10Load {
	h := &http10Load{port: port, host: host, stop: make(chan struct{})}
	deadline := time.Now().Add(10 * time.Minute)
	for i := range clients {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for n := 0; n < 1_000_000 && time.Now().Before(deadline); n++ {
				select {
				case <-h.stop:
					return
				default:
				}
				if err := h.get(fmt.Sprintf("/http10/%d-%d", i, n)); err != nil {
					h.failed.Add(1)
					h.mu.Lock()
					if len(h.errs) < 10 {
						h.errs = append(h.errs, err.Error())
					}
					h.mu.Unlock()
				} else {
					h.ok.Add(1)
				}
				time.Sleep(pause)
			}
		}()
	}
	t.Cleanup(func() { h.finish() })
	return h
}

func (h *http10Load) get(path string) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", h.port), 5*time.Second)
	if err != nil {
		return fmt.Errorf("HTTP/1.0 %s: dial: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, h.host); err != nil {
		return fmt.Errorf("HTTP/1.0 %s: write: %w", path, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("HTTP/1.0 %s: read response: %w", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasSuffix(string(body), ":0") {
		return fmt.Errorf("HTTP/1.0 %s: status %d body %q err %v", path, resp.StatusCode, body, err)
	}
	return nil
}

func (h *http10Load) progress(t testing.TB, n int64) {
	t.Helper()
	want := h.ok.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for h.ok.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("HTTP/1.0 load stalled at %d answers; failures:\n%s", h.ok.Load(), h.errors())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *http10Load) finish() (ok, failed int64) {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	h.wg.Wait()
	return h.ok.Load(), h.failed.Load()
}

func (h *http10Load) errors() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.errs, "\n")
}

// waitRequests scrapes srp until srp_requests_total{host} sums to want or
// d passes, and returns the last scrape. A response reaches the client
// moments before its worker counts it, so the count may trail briefly; it
// must never exceed want.
func waitRequests(t testing.TB, port int, host string, want float64, d time.Duration) []sample {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		fams := mustScrape(t, port)
		got := sumWhere(fams, "srp_requests_total", "host", host)
		if got == want || got > want || time.Now().After(deadline) {
			return fams
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// codes lists srp_requests_total{host} by code, for the test log.
func codes(ss []sample, host string) string {
	var out []string
	for _, s := range ss {
		if s.name == "srp_requests_total" && s.labels["host"] == host {
			out = append(out, fmt.Sprintf("%s=%v", s.labels["code"], s.value))
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// srp_requests_total counts every answered request exactly once through 10
// reloads (one with a 3 s request in flight, which the draining worker
// finishes), a rejected reload, 2 upgrades and a failed one, under a load
// of keep-alive, new-connection and HTTP/1.0 clients; the reload and
// upgrade counters say what happened; no counter ever goes backwards.
func TestMetricsExactAcrossReloadsAndUpgrades(t *testing.T) {
	start := time.Now()
	f := newReloadFleet(t)
	config := func(i int) string { return metricsConfig(f.sets[i%2]...) }
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	// The drain limit outlasts the 3 s request, which is also the backend
	// response-header timeout: it must finish, not time out.
	s := startLife(t, bin, config(0), "-timeout", "5s")
	u := &upgrader{t: t, s: s, drain: 5 * time.Second}

	watch := newCounterWatch()
	if got := sumWhere(watch.mustScrape(t, s.port, "at start"), "srp_requests_total", "host", "app.test"); got != 0 {
		t.Fatalf("a new srp counts %v requests for app.test", got)
	}
	sc := startScraper(t, s.port, watch, 100*time.Millisecond)
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 3, fresh: 2, pause: 2 * time.Millisecond, limit: 5 * time.Minute})
	h10 := startHTTP10(t, s.port, "app.test", 1, 2*time.Millisecond)
	l.progress(t, 100)
	h10.progress(t, 20)

	slow := make(chan error, 1)
	step := func() {
		t.Helper()
		l.progress(t, 50)
		h10.progress(t, 10)
		watch.mustScrape(t, s.port, "between steps")
	}
	reloads, upgrades := 0, 0
	reload := func() {
		t.Helper()
		reloads++
		setConfig(t, s.config, config(reloads))
		if reloads == 3 {
			go func() { slow <- slowGet(s.port) }()
			for f.lg.slow.Load() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 || !strings.Contains(out, "reloaded") {
			t.Fatalf("srp reload #%d: exit %d, output %q", reloads, code, out)
		}
		step()
	}
	upgrade := func() {
		t.Helper()
		upgrades++
		u.upgrade(upgrades)
		step()
	}

	reload()
	reload()
	reload()
	upgrade()
	// A failed upgrade: the binary on disk exits at once.
	installScript(t, bin, "exit 1")
	u.failUpgrade("exit status 1")
	installBinary(t, srpBin, bin)
	step()
	reload()
	reload()
	// A rejected reload: the config on disk does not parse.
	setConfig(t, s.config, `{"Services": {"app.test": {"Backend": ["127.0.0.1:1"]}}}`)
	if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code == 0 {
		t.Fatalf("srp reload of a bad config: exit 0, output %q", out)
	}
	setConfig(t, s.config, config(reloads))
	step()
	reload()
	reload()
	upgrade()
	reload()
	reload()
	reload()

	if err := <-slow; err != nil {
		t.Errorf("3 s request in flight across a reload: %v", err)
	}
	h10ok, h10failed := h10.finish()
	f.checkLoad(t, l) // stops the load; fails on any failed, duplicated or lost request
	sc.finish()
	if h10failed > 0 {
		t.Errorf("%d HTTP/1.0 requests failed:\n%s", h10failed, h10.errors())
	}
	if n := sc.failed.Load(); n > 0 {
		t.Errorf("%d scrapes of /metrics failed:\n%s", n, strings.Join(sc.errs, "\n"))
	}
	loadOK, loadFailed := l.finish()

	want := float64(loadOK + h10ok + 1) // and the slow request
	fams := waitRequests(t, s.port, "app.test", want, 5*time.Second)
	watch.mustScrape(t, s.port, "at the end")
	got := sumWhere(fams, "srp_requests_total", "host", "app.test")
	t.Logf("clients got %d answers (%d keep-alive/new-connection, %d failed; %d HTTP/1.0, %d failed; 1 slow); srp_requests_total{host=\"app.test\"}: %v (%s)",
		loadOK+h10ok+1, loadOK, loadFailed, h10ok, h10failed, got, codes(fams, "app.test"))
	if got != want {
		t.Errorf("srp_requests_total{host=\"app.test\"} sums to %v, clients got %v answers", got, want)
	}
	if n := sumWhere(fams, "srp_request_duration_seconds_count", "host", "app.test"); n != want {
		t.Errorf("srp_request_duration_seconds_count{host=\"app.test\"} is %v, want %v", n, want)
	}
	for _, c := range []struct {
		family, result string
		want           float64
	}{
		{"srp_config_reloads_total", "ok", 10},
		{"srp_config_reloads_total", "rejected", 1},
		{"srp_config_reloads_total", "failed", 0},
		{"srp_upgrades_total", "ok", 2},
		{"srp_upgrades_total", "failed", 1},
	} {
		if got := sumWhere(fams, c.family, "result", c.result); got != c.want {
			t.Errorf("%s{result=%q} = %v, want %v", c.family, c.result, got, c.want)
		}
	}
	if got := sumWhere(fams, "srp_worker_restarts_total"); got != 0 {
		t.Errorf("srp_worker_restarts_total = %v, want 0", got)
	}
	watch.check(t)
	t.Logf("%d reloads, %d upgrades in %v", reloads, upgrades, time.Since(start).Round(time.Millisecond))
}
