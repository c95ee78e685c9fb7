package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"srp/health"
	"srp/registry"
	"srp/worker"
)

// startWorker runs a worker for config on a 127.0.0.1 listener until the
// test ends, and returns its base URL once it is ready.
func startWorker(tb testing.TB, config string, o worker.Options) string {
	tb.Helper()
	snap, err := registry.Parse("test.json", []byte(config))
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	o.Snapshot, o.HTTP = snap, ln
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, o, func() { close(ready) }) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("worker.Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		tb.Fatalf("worker.Run returned before ready: %v", err)
	}
	return "http://" + ln.Addr().String()
}

func getHost(tb testing.TB, c *http.Client, base, host string) (int, string) {
	tb.Helper()
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// A backend that starts failing its checks leaves the rotation, and comes
// back once it passes again.
func TestHealthFlipsChangeRotation(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	flappy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && !healthy.Load() {
			w.WriteHeader(503)
			return
		}
		fmt.Fprint(w, "flappy")
	}))
	defer flappy.Close()
	steady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "steady") }))
	defer steady.Close()
	base := startWorker(t, fmt.Sprintf(`{"Services": {"app.test": {"HealthPath": "/health", "Backends": [%q, %q]}}}`,
		flappy.Listener.Addr(), steady.Listener.Addr()),
		worker.Options{Health: health.Options{Interval: 20 * time.Millisecond, Rise: 2, Fall: 2}})
	c := &http.Client{Timeout: 10 * time.Second}

	// seen sends n requests and counts the answers from each backend.
	seen := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			status, body := getHost(t, c, base, "app.test")
			if status != 200 {
				t.Fatalf("status %d %q", status, body)
			}
			got[body]++
		}
		return got
	}
	// waitRotation polls until the rotation is want (nil: steady alone).
	waitRotation := func(both bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			got := seen(4)
			if (got["flappy"] > 0) == both {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("rotation never became both=%v", both)
	}
	if got := seen(10); got["flappy"] != 5 || got["steady"] != 5 {
		t.Fatalf("both healthy: %v", got)
	}
	healthy.Store(false)
	waitRotation(false)
	if got := seen(20); got["flappy"] != 0 {
		t.Fatalf("unhealthy backend still got requests: %v", got)
	}
	healthy.Store(true)
	waitRotation(true)
	if got := seen(10); got["flappy"] != 5 || got["steady"] != 5 {
		t.Fatalf("after recovery: %v", got)
	}
}

// Without HealthPath every backend is in rotation, and one that refuses
// connections costs a retry, not an error.
func TestNoHealthPathAllBackendsUsed(t *testing.T) {
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "live") }))
	defer live.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	base := startWorker(t, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q, %q]}}}`, dead, live.Listener.Addr()), worker.Options{})
	c := &http.Client{Timeout: 10 * time.Second}
	for range 10 {
		if status, body := getHost(t, c, base, "app.test"); status != 200 || body != "live" {
			t.Fatalf("%d %q", status, body)
		}
	}
}

func BenchmarkProxySmallGET(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello from the backend\n")
	}))
	defer backend.Close()
	base := startWorker(b, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}}}`, backend.Listener.Addr()), worker.Options{})
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	req, _ := http.NewRequest("GET", base+"/small", nil)
	req.Host = "app.test"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
