package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsConfig is appConfig with the API, and so GET /metrics, open to
// loopback clients.
func metricsConfig(backends ...string) string {
	return fmt.Sprintf(`{"API": {"Subnet": "127.0.0.0/8"}, "Services": {"app.test": {"HealthPath": "/health", "Backends": ["%s"]}}}`,
		strings.Join(backends, `", "`))
}

// sample is one series of a scrape, named as Prometheus stores it: a
// histogram gives its _bucket (with le), _sum and _count series.
type sample struct {
	name    string
	labels  map[string]string
	value   float64
	counter bool // may only grow: a counter or part of a histogram
}

// key is the series' name with its labels, sorted.
func (s sample) key() string {
	var ls []string
	for k, v := range s.labels {
		ls = append(ls, k+"="+v)
	}
	sort.Strings(ls)
	return s.name + "{" + strings.Join(ls, ",") + "}"
}

// scrapeMetrics gets /metrics from srp on a new connection, with the Host
// a scraper sends (the address, which no service is named), and parses it
// with the Prometheus project's own parser.
func scrapeMetrics(port int) ([]sample, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /metrics: status %d: %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); expfmt.ResponseFormat(resp.Header).FormatType() != expfmt.TypeTextPlain {
		return nil, fmt.Errorf("GET /metrics: Content-Type %q is not the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	var out []sample
	for name, f := range fams {
		typ := f.GetType().String()
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			with := func(k, v string) map[string]string {
				c := maps.Clone(labels)
				c[k] = v
				return c
			}
			switch typ {
			case "COUNTER":
				out = append(out, sample{name, labels, m.GetCounter().GetValue(), true})
			case "GAUGE":
				out = append(out, sample{name, labels, m.GetGauge().GetValue(), false})
			case "UNTYPED":
				out = append(out, sample{name, labels, m.GetUntyped().GetValue(), false})
			case "HISTOGRAM":
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					out = append(out, sample{name + "_bucket", with("le", le), float64(b.GetCumulativeCount()), true})
				}
				out = append(out, sample{name + "_count", labels, float64(h.GetSampleCount()), true},
					sample{name + "_sum", labels, h.GetSampleSum(), true})
			default:
				return nil, fmt.Errorf("parse /metrics: %s is a %s", name, typ)
			}
		}
	}
	return out, nil
}

// mustScrape is scrapeMetrics failing the test on error.
func mustScrape(t testing.TB, port int) []sample {
	t.Helper()
	ss, err := scrapeMetrics(port)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// sumWhere sums the series called name whose labels include every
// name=value pair of match.
func sumWhere(ss []sample, name string, match ...string) float64 {
	var sum float64
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(match); i += 2 {
			if s.labels[match[i]] != match[i+1] {
				continue next
			}
		}
		sum += s.value
	}
	return sum
}

// counterWatch checks that no counter srp exposes ever goes backwards from
// one scrape to the next. A series may be absent from a scrape (counters
// at zero are not written, and a backend leaves the output when a reload
// drops it); when it comes back it must not be lower than last seen.
type counterWatch struct {
	// scraping is held from a scrape's start to its observation, so that
	// scrapes are observed in the order srp answered them.
	scraping sync.Mutex
	mu       sync.Mutex
	last     map[string]float64
	scrapes  int
	back     []string // the first counters seen going backwards
}

func newCounterWatch() *counterWatch { return &counterWatch{last: map[string]float64{}} }

func (w *counterWatch) observe(ss []sample, when string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scrapes++
	cur := map[string]float64{}
	for _, s := range ss {
		if s.counter {
			cur[s.key()] = s.value
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		if prev, ok := w.last[k]; ok && cur[k] < prev && len(w.back) < 20 {
			w.back = append(w.back, fmt.Sprintf("%s: %v then %v (%s, scrape %d)", k, prev, cur[k], when, w.scrapes))
		}
		w.last[k] = max(w.last[k], cur[k])
	}
}

// scrape scrapes srp and observes the result, one scrape at a time.
func (w *counterWatch) scrape(port int, when string) ([]sample, error) {
	w.scraping.Lock()
	defer w.scraping.Unlock()
	fams, err := scrapeMetrics(port)
	if err == nil {
		w.observe(fams, when)
	}
	return fams, err
}

// mustScrape is scrape failing the test on error.
func (w *counterWatch) mustScrape(t testing.TB, port int, when string) []sample {
	t.Helper()
	fams, err := w.scrape(port, when)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func (w *counterWatch) check(t testing.TB) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.back) > 0 {
		t.Errorf("counters went backwards between scrapes:\n%s", strings.Join(w.back, "\n"))
	}
	t.Logf("%d scrapes, %d counter series: none went backwards", w.scrapes, len(w.last))
}

// scraper scrapes srp every interval until stopped, feeding a counterWatch.
// A scrape that fails is a failed request like any other.
type scraper struct {
	stop   chan struct{}
	done   chan struct{}
	failed atomic.Int64
	mu     sync.Mutex
	errs   []string
}

func startScraper(t testing.TB, port int, w *counterWatch, interval time.Duration) *scraper {
	s := &scraper{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-s.stop:
				return
			case <-time.After(interval):
			}
			if _, err := w.scrape(port, "during the run"); err != nil {
				s.failed.Add(1)
				s.mu.Lock()
				if len(s.errs) < 10 {
					s.errs = append(s.errs, err.Error())
				}
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(s.finish)
	return s
}

func (s *scraper) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

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
