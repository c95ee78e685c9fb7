package metrics

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"

	"srp/scripts/testkit"
	"srp/supervisor/counters"
	"srp/worker/observe"
)

var testServices = []Service{{Name: "app.test", Backends: []string{"127.0.0.1:3001", "127.0.0.1:3002"}}}

// parse reads s's exposition as Prometheus does.
func parse(t *testing.T, s *Set) map[string]float64 {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Write(&buf); err != nil {
		t.Fatal(err)
	}
	out, err := testkit.ParseMetrics(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Two worker generations counting into one region, as an old worker
// draining beside its successor does, add up exactly.
func TestCountsAcrossGenerations(t *testing.T) {
	region := counters.Local()
	old := New(region, testServices, Extra{Version: "v1"})
	cur := New(region, testServices, Extra{Version: "v1", BackendUp: func(_, b string) bool { return b == "127.0.0.1:3001" }})
	for i := range 10 {
		s := old
		if i%2 == 1 {
			s = cur
		}
		s.Request(&observe.Request{Service: "app.test", Status: 200, Duration: 20 * time.Millisecond, Retries: 1})
		s.Attempt("app.test", "127.0.0.1:3002", false, 0, observe.Refused)
		s.Attempt("app.test", "127.0.0.1:3001", true, 200, "")
	}
	cur.Request(&observe.Request{Status: 404})
	cur.Request(&observe.Request{Service: "app.test", Status: 999, Duration: time.Minute})
	cur.Conn("http", 1)
	cur.Conn("http", 1)
	cur.Conn("http", -1)
	got := parse(t, cur)
	for series, want := range map[string]float64{
		"srp_requests_total{host=app.test,code=200}":                                    10,
		"srp_requests_total{host=app.test,code=other}":                                  1,
		"srp_requests_total{host=,code=404}":                                            1,
		"srp_request_duration_seconds{host=app.test}count":                              11,
		"srp_request_duration_seconds{host=app.test}le=0.025":                           10,
		"srp_request_duration_seconds{host=app.test}le=10":                              10,
		"srp_request_duration_seconds{host=app.test}le=+Inf":                            11,
		"srp_request_duration_seconds{host=app.test}sum":                                60.2,
		"srp_backend_retries_total{host=app.test}":                                      10,
		"srp_backend_requests_total{host=app.test,backend=127.0.0.1:3001,code=200}":     10,
		"srp_backend_errors_total{host=app.test,backend=127.0.0.1:3002,reason=refused}": 10,
		"srp_backend_up{host=app.test,backend=127.0.0.1:3001}":                          1,
		"srp_backend_up{host=app.test,backend=127.0.0.1:3002}":                          0,
		"srp_connections_open{listener=http}":                                           1,
		"srp_connections_total{listener=http}":                                          2,
		"srp_build_info{version=v1,goversion=" + goVersion() + "}":                      1,
	} {
		if g, ok := got[series]; !ok || g != want {
			t.Errorf("%s = %v (present %v), want %v", series, g, ok, want)
		}
	}
}

// The request path counts with no allocation once a series has counted.
func TestRequestPathDoesNotAllocate(t *testing.T) {
	s := New(counters.Local(), testServices, Extra{})
	r := &observe.Request{Service: "app.test", Status: 200, Duration: time.Millisecond}
	s.Request(r)
	s.Attempt("app.test", "127.0.0.1:3001", false, 200, "")
	if n := testing.AllocsPerRun(1000, func() {
		s.Request(r)
		s.Attempt("app.test", "127.0.0.1:3001", false, 200, "")
	}); n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

// Labels come only from the config and fixed sets: a request for a host
// no service has counts under "", and an unknown backend counts nowhere.
func TestNoSeriesFromClients(t *testing.T) {
	s := New(counters.Local(), testServices, Extra{})
	s.Request(&observe.Request{Service: "evil.test", Host: "evil.test", Status: 200})
	s.Attempt("app.test", "10.9.9.9:1", false, 200, "")
	s.Attempt("evil.test", "127.0.0.1:3001", false, 200, "")
	for series := range parse(t, s) {
		if strings.Contains(series, "evil") || strings.Contains(series, "10.9.9.9") {
			t.Errorf("a client made series %s", series)
		}
	}
}

func BenchmarkRequest(b *testing.B) {
	s := New(counters.Local(), testServices, Extra{})
	r := &observe.Request{Service: "app.test", Status: 200, Duration: 3 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		s.Request(r)
		s.Attempt("app.test", "127.0.0.1:3001", false, 200, "")
	}
}

func goVersion() string { return runtime.Version() }

func TestSnapshotAndQuantile(t *testing.T) {
	s := New(counters.Local(), testServices, Extra{BackendUp: func(_, b string) bool { return b == "127.0.0.1:3001" }})
	for i := range 100 {
		s.Request(&observe.Request{Service: "app.test", Status: 200, Duration: time.Duration(i+1) * time.Millisecond})
	}
	s.Attempt("app.test", "127.0.0.1:3002", false, 0, observe.Timeout)
	snap := s.Snapshot()
	if len(snap.Services) != 2 || snap.Services[0].Name != "" || snap.Services[1].Name != "app.test" {
		t.Fatalf("services %+v", snap.Services)
	}
	app := snap.Services[1]
	if app.Requests[200-100] != 100 || len(app.Backends) != 2 || !app.Backends[0].Up || app.Backends[1].Up || app.Backends[1].Errors != 1 {
		t.Fatalf("app.test %+v", app)
	}
	// 1..100 ms: the median falls in the 25-50 ms bucket, p99 in 50-100 ms.
	if p50 := Quantile(0.5, app.Buckets); p50 < 25*time.Millisecond || p50 > 50*time.Millisecond {
		t.Errorf("p50 %v", p50)
	}
	if p99 := Quantile(0.99, app.Buckets); p99 < 50*time.Millisecond || p99 > 100*time.Millisecond {
		t.Errorf("p99 %v", p99)
	}
	if q := Quantile(0.5, [len(Buckets) + 1]uint64{}); q != 0 {
		t.Errorf("quantile of nothing %v", q)
	}
}
