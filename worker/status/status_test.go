package status

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"srp/worker/metrics"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// source is a fake metrics source: each call returns the next snapshot
// set, or the last one again.
type source struct {
	mu    sync.Mutex // guards snaps
	snaps []metrics.Snapshot
}

func (s *source) next() metrics.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.snaps[0]
	if len(s.snaps) > 1 {
		s.snaps = s.snaps[1:]
	}
	return n
}

// svc builds a service snapshot: ok answers of 200 and bad of 502, all in
// bucket b, and the backends given.
func svc(name string, ok, bad uint64, b int, backends ...metrics.BackendSnapshot) metrics.ServiceSnapshot {
	s := metrics.ServiceSnapshot{Name: name, Backends: backends}
	s.Requests[200-100] = ok
	s.Requests[502-100] = bad
	s.Buckets[b] = ok + bad
	return s
}

// render runs the handler with the snapshots given: the first is sampled
// into the ring, the second is the page's own.
func render(t *testing.T, o Options, old, cur metrics.Snapshot) string {
	t.Helper()
	src := &source{snaps: []metrics.Snapshot{old, cur}}
	o.Snapshot = src.next
	if o.Started.IsZero() {
		o.Started = old.At
	}
	h := New(o)
	h.Sample()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/status", nil))
	if w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	return w.Body.String()
}

func TestRatesAndPercentilesOverTheWindow(t *testing.T) {
	old := metrics.Snapshot{At: t0, Services: []metrics.ServiceSnapshot{
		svc("", 5, 0, 0),
		svc("app.test", 100, 0, 9, // all slow before the window
			metrics.BackendSnapshot{Addr: "10.0.0.1:80", Up: true, Answers: 100},
			metrics.BackendSnapshot{Addr: "10.0.0.2:80", Up: true}),
	}}
	cur := metrics.Snapshot{At: t0.Add(50 * time.Second), Services: []metrics.ServiceSnapshot{
		svc("", 55, 0, 0),
		svc("app.test", 600, 50, 0,
			metrics.BackendSnapshot{Addr: "10.0.0.1:80", Up: true, Answers: 650, Errors: 25},
			metrics.BackendSnapshot{Addr: "10.0.0.2:80", Up: false}),
	}}
	cur.Services[1].Buckets[0] = 550
	cur.Services[1].Buckets[9] = 100 // the slow ones stay counted
	v := build(cur, old, true, t0, "v1", false, nil)
	if v.Window != "last 50 s" || v.Unrouted != "1.0/s" {
		t.Errorf("window %q, unrouted %q", v.Window, v.Unrouted)
	}
	if len(v.Services) != 1 {
		t.Fatalf("services %+v; the unrouted one belongs in the footer", v.Services)
	}
	s := v.Services[0]
	// 550 requests in 50 s; errors are 50 502s plus 25 failed attempts.
	if s.Req != "11.0/s" || s.Err != "1.5/s" {
		t.Errorf("req %q err %q, want 11.0/s and 1.5/s", s.Req, s.Err)
	}
	// All 550 of the window are in the first bucket (up to 5 ms): the
	// slow ones before it must not count.
	var win [len(metrics.Buckets) + 1]uint64
	win[0] = 550
	p99 := latency(metrics.Quantile(.99, win), 550)
	if s.Latency != "last 50 s" || s.P50 != "2.5 ms" || s.P99 != p99 || !strings.HasSuffix(p99, " ms") {
		t.Errorf("latency over %q: p50 %q p99 %q, want 2.5 ms and %s", s.Latency, s.P50, s.P99, p99)
	}
	if s.State != "degraded" || s.Summary != "1 of 2 backends up" {
		t.Errorf("state %q summary %q", s.State, s.Summary)
	}
	b := s.Backends[0]
	if b.State != "up" || b.Req != "11.5/s" || b.Err != "0.5/s" {
		t.Errorf("backend 1: %+v, want up, 11.5/s attempts, 0.5/s failed", b)
	}
	if b := s.Backends[1]; b.State != "down" || b.Label != "DOWN" || b.Req != "0/s" {
		t.Errorf("backend 2: %+v, want DOWN with no attempts", b)
	}
}

func TestPercentilesFallBackToTheRun(t *testing.T) {
	old := metrics.Snapshot{At: t0, Services: []metrics.ServiceSnapshot{svc("app.test", 100, 0, 9)}}
	cur := metrics.Snapshot{At: t0.Add(30 * time.Second), Services: []metrics.ServiceSnapshot{svc("app.test", 103, 0, 9)}}
	s := build(cur, old, true, t0, "", false, nil).Services[0]
	want := latency(metrics.Quantile(.5, cur.Services[0].Buckets), 103)
	if s.Latency != "all time" || s.P50 != want || s.P50 == "–" {
		t.Errorf("3 requests in the window: latency over %q, p50 %q, want all time and %q", s.Latency, s.P50, want)
	}
	if s.State != "none" || s.Label != "NO BACKENDS" {
		t.Errorf("service without backends: %q %q", s.State, s.Label)
	}
}

func TestNoWindowYet(t *testing.T) {
	cur := metrics.Snapshot{At: t0, Services: []metrics.ServiceSnapshot{svc("app.test", 10, 0, 2,
		metrics.BackendSnapshot{Addr: "10.0.0.1:80", Up: true, Answers: 10})}}
	for _, tc := range []struct {
		name    string
		old     metrics.Snapshot
		haveOld bool
	}{
		{"no sample", metrics.Snapshot{}, false},
		{"sample too recent", metrics.Snapshot{At: t0.Add(-100 * time.Millisecond), Services: cur.Services}, true},
	} {
		s := build(cur, tc.old, tc.haveOld, t0, "", false, nil).Services[0]
		if s.Req != "–" || s.Err != "–" || s.Backends[0].Req != "–" {
			t.Errorf("%s: rates %q %q %q, want none", tc.name, s.Req, s.Err, s.Backends[0].Req)
		}
		if s.P50 == "–" || s.Latency != "all time" || s.State != "up" {
			t.Errorf("%s: p50 %q over %q, state %q", tc.name, s.P50, s.Latency, s.State)
		}
	}
}

func TestPage(t *testing.T) {
	old := metrics.Snapshot{At: t0, Services: []metrics.ServiceSnapshot{
		svc("app.test", 0, 0, 0, metrics.BackendSnapshot{Addr: "10.0.0.1:80", Up: true}),
		svc("down.test", 0, 0, 0, metrics.BackendSnapshot{Addr: "10.0.0.9:80"}),
	}}
	cur := old
	cur.At = t0.Add(3*time.Hour + 5*time.Minute)
	body := render(t, Options{Version: "1.2.3"}, old, cur)
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`<section class="service" data-service="app.test" data-state="up">`,
		`<section class="service" data-service="down.test" data-state="down">`,
		`data-backend="10.0.0.1:80" data-state="up"><span class="mark">▲ UP</span>`,
		`data-backend="10.0.0.9:80" data-state="down"><span class="mark">▼ DOWN</span>`,
		`<span id="version">1.2.3</span>`,
		`<span id="uptime">3 h 5 min</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	for _, bad := range []string{"<script", "<link", "src=", "id=\"certs\""} {
		if strings.Contains(body, bad) {
			t.Errorf("page has %s", bad)
		}
	}
}

func TestNamesAreEscaped(t *testing.T) {
	evil := `<script>alert("x")</script>`
	snap := metrics.Snapshot{At: t0, Services: []metrics.ServiceSnapshot{
		svc(evil, 0, 0, 0, metrics.BackendSnapshot{Addr: `"><img src=x>`, Up: true}),
	}}
	body := render(t, Options{CertExpiry: func() map[string]time.Time { return map[string]time.Time{evil: t0} }}, snap, snap)
	if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
		t.Fatalf("a name reached the page unescaped:\n%s", body)
	}
	if !strings.Contains(body, `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`) {
		t.Fatalf("escaped name missing:\n%s", body)
	}
}

func TestCertificates(t *testing.T) {
	snap := metrics.Snapshot{At: t0}
	exp := map[string]time.Time{
		"a.test": t0.Add(60 * 24 * time.Hour),
		"b.test": t0.Add(3 * 24 * time.Hour),
		"c.test": t0.Add(-time.Hour),
	}
	body := render(t, Options{CertExpiry: func() map[string]time.Time { return exp }}, snap, snap)
	for _, want := range []string{
		`<tr class="cert" data-cert="a.test" data-state="ok"><td>a.test</td><td class="left">in 60 days</td>`,
		`<tr class="cert" data-cert="b.test" data-state="soon"><td>b.test</td><td class="left">RENEW SOON: in 3 days</td>`,
		`<tr class="cert" data-cert="c.test" data-state="expired"><td>c.test</td><td class="left">EXPIRED</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s\n%s", want, body)
		}
	}
	body = render(t, Options{CertExpiry: func() map[string]time.Time { return nil }}, snap, snap)
	if !strings.Contains(body, "No certificate held yet.") {
		t.Error("HTTPS mode with no certificate: section missing")
	}
}

func TestHeaders(t *testing.T) {
	snap := metrics.Snapshot{At: t0}
	h := New(Options{Snapshot: func() metrics.Snapshot { return snap }})
	for _, method := range []string{"GET", "HEAD"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "/status", nil))
		hd := w.Header()
		if ct := hd.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", method, ct)
		}
		if csp := hd.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", method, csp)
		}
		if hd.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", method, hd.Get("Cache-Control"))
		}
		if (w.Body.Len() == 0) != (method == http.MethodHead) {
			t.Errorf("%s: body of %d bytes", method, w.Body.Len())
		}
	}
}

func TestSamplerKeepsTheWindowAndStops(t *testing.T) {
	var mu sync.Mutex // guards n
	n := 0
	h := New(Options{Interval: time.Millisecond, Window: 5 * time.Millisecond, Snapshot: func() metrics.Snapshot {
		mu.Lock()
		defer mu.Unlock()
		n++
		return metrics.Snapshot{At: t0.Add(time.Duration(n) * time.Millisecond)}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		taken := n
		mu.Unlock()
		if taken >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d samples in 10 s", taken)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ring) != h.keep || h.keep != 6 {
		t.Fatalf("ring holds %d, keep %d; want 6 (5 ms back at 1 ms)", len(h.ring), h.keep)
	}
	if first, last := h.ring[0].At, h.ring[len(h.ring)-1].At; last.Sub(first) != 5*time.Millisecond {
		t.Fatalf("ring spans %v, want the newest 5 ms", last.Sub(first))
	}
}
