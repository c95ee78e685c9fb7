package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"srp/scripts/testkit"
)

// prometheusBin finds the Prometheus server in $PROMETHEUS_BIN or on PATH
// (see testkit.Server).
func prometheusBin(t *testing.T) string {
	t.Helper()
	return testkit.Server(t, "apt-get install prometheus, or set $PROMETHEUS_BIN", os.Getenv("PROMETHEUS_BIN"), "prometheus")
}

// promServer is a Prometheus server run on loopback for one test, with its
// own config and storage in temporary directories.
type promServer struct {
	base string // http://127.0.0.1:port
	out  *testkit.Buffer
	c    *http.Client
}

// startPrometheus runs Prometheus scraping srp's /metrics at target every
// second. It is killed, by its PID, when the test ends.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin := prometheusBin(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: srp
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, target)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	p := &promServer{base: fmt.Sprintf("http://127.0.0.1:%d", port), out: &testkit.Buffer{}, c: &http.Client{Timeout: 10 * time.Second}}
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+fmt.Sprintf("127.0.0.1:%d", port),
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID: the process this test started
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("prometheus pid %d did not exit after SIGKILL", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _, err := fetch(p.c, p.base+"/-/ready")
		if err == nil && status == http.StatusOK {
			return p
		}
		select {
		case <-done:
			t.Fatalf("prometheus exited:\n%s", p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30 s (%d, %v):\n%s", status, err, p.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// query evaluates an instant PromQL query through the HTTP API and returns
// the value of its single result; ok is false when the result is empty.
func (p *promServer) query(q string) (v float64, ok bool, err error) {
	status, body, err := fetch(p.c, p.base+"/api/v1/query?query="+url.QueryEscape(q))
	if err != nil {
		return 0, false, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, false, fmt.Errorf("query %q: status %d: %v: %q", q, status, err, body)
	}
	if r.Status != "success" || r.Data.ResultType != "vector" {
		return 0, false, fmt.Errorf("query %q: status %d %s %s: %q", q, status, r.Status, r.Error, body)
	}
	switch len(r.Data.Result) {
	case 0:
		return 0, false, nil
	case 1:
	default:
		return 0, false, fmt.Errorf("query %q: %d results, want one: %s", q, len(r.Data.Result), body)
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err = strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false, fmt.Errorf("query %q: value %q: %v", q, s, err)
	}
	return v, true, nil
}

// mustQuery is query failing the test on an error or an empty result.
func (p *promServer) mustQuery(t *testing.T, q string) float64 {
	t.Helper()
	v, ok, err := p.query(q)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("query %q: no result", q)
	}
	return v
}

// waitQuery polls q until cond holds for its value, or fails after d.
func (p *promServer) waitQuery(t *testing.T, q string, d time.Duration, what string, cond func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok, err := p.query(q)
		if err == nil && ok && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: query %q gave %v (result %v, err %v) for %v", what, q, v, ok, err, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A real Prometheus scrapes a running srp through 10 reloads and 2
// upgrades, and then reports exactly the number of requests the clients
// got answers to.
func TestPrometheusScrapesExactCounts(t *testing.T) {
	prometheusBin(t) // skip or fail before starting anything
	start := time.Now()
	f := newReloadFleet(t)
	config := func(i int) string { return metricsConfig(f.sets[i%2]...) }
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, config(0), "-timeout", "3s")
	u := &upgrader{t: t, s: s, drain: 3 * time.Second}
	prom := startPrometheus(t, fmt.Sprintf("127.0.0.1:%d", s.port))
	prom.waitQuery(t, `up{job="srp"}`, 30*time.Second, "first scrape", func(v float64) bool { return v == 1 })

	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 2, fresh: 2, pause: 2 * time.Millisecond, limit: 5 * time.Minute})
	h10 := startHTTP10(t, s.port, "app.test", 1, 2*time.Millisecond)
	l.progress(t, 100)
	reloads, upgrades := 0, 0
	for i := 1; i <= 12; i++ {
		if i == 4 || i == 9 {
			upgrades++
			u.upgrade(upgrades)
		} else {
			reloads++
			setConfig(t, s.config, config(reloads))
			if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
				t.Fatalf("srp reload #%d: exit %d, output %q", reloads, code, out)
			}
		}
		l.progress(t, 50)
		h10.progress(t, 5)
	}
	h10ok, h10failed := h10.finish()
	f.checkLoad(t, l)
	loadOK, loadFailed := l.finish()
	if h10failed > 0 {
		t.Errorf("%d HTTP/1.0 requests failed:\n%s", h10failed, h10.errors())
	}
	sent := float64(loadOK + h10ok)

	// srp counts a request just after its answer is written: once its own
	// /metrics shows them all, a scrape that starts later must too.
	fams := waitRequests(t, s.port, "app.test", sent, 5*time.Second)
	if got := sumWhere(fams, "srp_requests_total", "host", "app.test"); got != sent {
		t.Fatalf("srp's /metrics counts %v requests for app.test, clients got %v answers", got, sent)
	}
	counted := time.Now()
	prom.waitQuery(t, `timestamp(up{job="srp"})`, 15*time.Second, "a scrape after the last request",
		func(ts float64) bool { return ts > float64(counted.UnixMilli())/1000 })

	got := prom.mustQuery(t, `sum(srp_requests_total{host="app.test"})`)
	t.Logf("clients got %v answers (%d keep-alive/new-connection, %d failed; %d HTTP/1.0, %d failed); Prometheus: sum(srp_requests_total{host=\"app.test\"}) = %v",
		sent, loadOK, loadFailed, h10ok, h10failed, got)
	if got != sent {
		t.Errorf(`Prometheus: sum(srp_requests_total{host="app.test"}) = %v, clients got %v answers`, got, sent)
	}
	for q, want := range map[string]float64{
		`sum(srp_config_reloads_total{result="ok"})`: float64(reloads),
		`sum(srp_upgrades_total{result="ok"})`:       float64(upgrades),
		// Prometheus' own view: no counter reset, no failed scrape.
		`sum(resets(srp_requests_total[10m]))`: 0,
		`min_over_time(up{job="srp"}[10m])`:    1,
	} {
		if got := prom.mustQuery(t, q); got != want {
			t.Errorf("Prometheus: %s = %v, want %v", q, got, want)
		}
	}
	scrapes := prom.mustQuery(t, `count_over_time(up{job="srp"}[10m])`)
	t.Logf("%d reloads, %d upgrades, %v scrapes by Prometheus in %v", reloads, upgrades, scrapes, time.Since(start).Round(time.Millisecond))
}
