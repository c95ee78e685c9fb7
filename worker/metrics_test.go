package worker

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"srp/scripts/testkit"
	"srp/supervisor/counters"
)

// scrape reads GET /metrics from the worker at addr with the Prometheus
// project's parser and returns each counter and gauge by its series.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out, err := testkit.ParseMetrics(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Requests on both paths, answered or failed, count once each; so do the
// backend attempts and a retry; two worker generations sharing a region
// add up.
func TestMetricsBothPaths(t *testing.T) {
	ok := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	dead := refusedAddr(t)
	region := counters.Local()
	conf := fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}, "dead.test": {"Backends": [%q]}}, "API": {"Subnet": "127.0.0.0/8"}}`, ok.addr(), dead)
	for gen, fastPath := range []bool{true, false} {
		w := runGuarded(t, conf, func(o *Options) { o.Counters, o.noFastPath = region, !fastPath })
		for _, raw := range []string{
			"GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n",  // the fast path, where on
			"GET /b HTTP/1.0\r\nHost: app.test\r\n\r\n",  // net/http
			"GET /c HTTP/1.1\r\nHost: dead.test\r\n\r\n", // 502 after one refused dial
			"GET /d HTTP/1.1\r\nHost: nobody.test\r\n\r\n",
		} {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprint(c, raw)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			c.Close()
		}
		got := scrape(t, w.addr)
		n := float64(gen + 1)
		for series, want := range map[string]float64{
			"srp_requests_total{host=app.test,code=200}":                                   2 * n,
			"srp_requests_total{host=dead.test,code=502}":                                  n,
			"srp_requests_total{host=,code=404}":                                           n,
			"srp_request_duration_seconds{host=app.test}count":                             2 * n,
			"srp_backend_requests_total{host=app.test,backend=" + ok.addr() + ",code=200}": 2 * n,
			"srp_backend_errors_total{host=dead.test,backend=" + dead + ",reason=refused}": n,
			"srp_backend_up{host=app.test,backend=" + ok.addr() + "}":                      1,
		} {
			if got[series] != want {
				t.Errorf("generation %d: %s = %v, want %v", gen, series, got[series], want)
			}
		}
		if got["srp_connections_total{listener=http}"] < 4*n {
			t.Errorf("generation %d: %v connections counted, want at least %v", gen, got["srp_connections_total{listener=http}"], 4*n)
		}
		w.stop()
	}
}
