package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// serveSRP starts srp on a free port with config and waits until it serves.
func serveSRP(t *testing.T, config string, args ...string) (int, *proc) {
	t.Helper()
	port := freePort(t)
	p := startSRP(t, append([]string{"-c", writeConfig(t, config), "-p", fmt.Sprint(port)}, args...)...)
	stopOnCleanup(t, p)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 15*time.Second)
	// waitHTTP polls through the default transport; its idle connection
	// would hold the drain at the end of the test.
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	return port, p
}

// stopOnCleanup stops p with SIGTERM when the test ends, before startSRP's
// kill: a graceful stop ends the worker too, and is quick once the test's
// clients have closed their idle connections.
func stopOnCleanup(t *testing.T, p *proc) {
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		if code := p.wait(30 * time.Second); code != 0 {
			t.Errorf("srp exited %d after SIGTERM", code)
		}
	})
}

// proxied counts the requests a backend got that were not health checks.
func proxied(b *backend) int {
	n := 0
	for _, r := range b.requests() {
		if r.URL.Path != "/health" {
			n++
		}
	}
	return n
}

// healthAnswers returns a backend handler whose /health answers status and
// whose other paths answer the backend's name.
func healthAnswers(status int, name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.WriteHeader(status)
			return
		}
		fmt.Fprint(w, name)
	}
}

// deadAddr is a 127.0.0.1 address that refuses connections.
func deadAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// send makes one request to srp as host and returns status, body and headers.
func send(t *testing.T, c *http.Client, port int, method, host, path string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s%s: read body: %v", method, host, path, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// newClient returns a keep-alive client that follows no redirects and
// closes its idle connections when the test ends.
func newClient(t *testing.T) *http.Client {
	c := &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// wantBareError checks an error answer is exactly the status text: no
// backend address, Go error or other internals.
func wantBareError(t *testing.T, what string, status int, body string, want int) {
	t.Helper()
	if status != want || body != http.StatusText(want)+"\n" {
		t.Errorf("%s: got %d %q, want %d %q", what, status, body, want, http.StatusText(want)+"\n")
	}
}

func TestEvenSpreadOverHealthyBackends(t *testing.T) {
	for _, down := range []int{-1, 1} {
		t.Run(fmt.Sprintf("down=%d", down), func(t *testing.T) {
			var bs []*backend
			var addrs []string
			for i := range 3 {
				status := 200
				if i == down {
					status = 503
				}
				b := newBackend(t, fmt.Sprint(i), healthAnswers(status, fmt.Sprint(i)))
				bs = append(bs, b)
				addrs = append(addrs, fmt.Sprintf("%q", b.addr()))
			}
			port, _ := serveSRP(t, `{"Services": {"app.test": {"HealthPath": "/health", "Backends": [`+strings.Join(addrs, ",")+`]}}}`)
			c := newClient(t)
			for range 300 {
				if status, _, _ := send(t, c, port, "GET", "app.test", "/", nil); status != 200 {
					t.Fatalf("status %d", status)
				}
			}
			for i, b := range bs {
				want := 100
				if down >= 0 {
					want = 150
				}
				if i == down {
					// Down from the first round on: the proxy started serving
					// only after it knew, so not one request may reach it.
					want = 0
				}
				if got := proxied(b); got != want {
					t.Errorf("backend %d got %d of 300 requests, want %d", i, got, want)
				}
			}
		})
	}
}

// Host keys match case-insensitively, without port or trailing dot, and the
// backend sees the Host exactly as the client sent it.
func TestHostMatchingAndHostPreserved(t *testing.T) {
	b := newBackend(t, "app", nil)
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	c := newClient(t)
	hosts := []string{"app.test", "APP.Test", "app.test:8080", "app.test.", "App.Test.:3000"}
	for _, h := range hosts {
		if status, body, _ := send(t, c, port, "GET", h, "/", nil); status != 200 || body != "app" {
			t.Errorf("Host %q: %d %q", h, status, body)
		}
	}
	for i, r := range b.requests() {
		if r.Host != hosts[i] {
			t.Errorf("backend saw Host %q, client sent %q", r.Host, hosts[i])
		}
	}
	status, body, _ := send(t, c, port, "GET", "other.test", "/", nil)
	wantBareError(t, "unknown host", status, body, 404)
}

func TestDialFailureRetriedElsewhere(t *testing.T) {
	live := newBackend(t, "live", func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, _ := io.Copy(sum, r.Body)
		fmt.Fprintf(w, "%d %x", n, sum.Sum(nil))
	})
	port, _ := serveSRP(t, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q, %q, %q]}}}`,
		deadAddr(t), live.addr(), deadAddr(t)))
	c := newClient(t)
	for i := range 12 {
		status, body, _ := send(t, c, port, "GET", "app.test", "/", nil)
		if status != 200 || !strings.HasPrefix(body, "0 ") {
			t.Fatalf("GET %d: %d %q", i, status, body)
		}
	}
	// A POST whose first backend refused the connection arrives whole.
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	want := fmt.Sprintf("%d %x", len(payload), sha256.Sum256(payload))
	for i := range 12 {
		status, body, _ := send(t, c, port, "POST", "app.test", "/upload", bytes.NewReader(payload))
		if status != 200 || body != want {
			t.Fatalf("POST %d: %d %q, want 200 %q", i, status, body, want)
		}
	}
	if got := proxied(live); got != 24 {
		t.Fatalf("live backend got %d requests, want 24", got)
	}
}

// resetBackend accepts HTTP/1.1 requests, reads each one whole, counts it and
// resets the connection instead of answering: the request reached a backend
// that may have acted on it.
func resetBackend(t *testing.T) (addr string, delivered *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	delivered = new(atomic.Int32)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				if _, err := io.Copy(io.Discard, req.Body); err != nil {
					return
				}
				delivered.Add(1)
				conn.(*net.TCPConn).SetLinger(0) // close with RST
			}()
		}
	}()
	return ln.Addr().String(), delivered
}

func TestFailureAfterDeliveryRetriedOnlyWhenSafe(t *testing.T) {
	resetAddr, resets := resetBackend(t)
	live := newBackend(t, "live", nil)
	port, _ := serveSRP(t, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q, %q]}}}`, resetAddr, live.addr()))
	c := newClient(t)

	// GET, HEAD and OPTIONS without a body may be sent again.
	for _, m := range []string{"GET", "GET", "HEAD", "HEAD", "OPTIONS", "OPTIONS"} {
		if status, _, _ := send(t, c, port, m, "app.test", "/", nil); status != 200 {
			t.Fatalf("%s: status %d, want 200 from the live backend", m, status)
		}
	}
	if resets.Load() == 0 || proxied(live) != 6 {
		t.Fatalf("reset backend got %d, live got %d: retries never exercised", resets.Load(), proxied(live))
	}

	// A POST the backend read must never be sent twice.
	resets.Store(0)
	before := proxied(live)
	const posts = 6
	failed := 0
	for range posts {
		status, body, _ := send(t, c, port, "POST", "app.test", "/pay", strings.NewReader("amount=100"))
		switch status {
		case 200:
		case 502:
			wantBareError(t, "POST to a resetting backend", status, body, 502)
			failed++
		default:
			t.Fatalf("POST: status %d", status)
		}
	}
	if got := int(resets.Load()) + proxied(live) - before; got != posts {
		t.Fatalf("%d POSTs were delivered %d times", posts, got)
	}
	if failed == 0 || failed != int(resets.Load()) {
		t.Fatalf("%d POSTs failed, reset backend got %d: each must fail with 502, not be retried", failed, resets.Load())
	}

	// Nor a GET whose body the backend consumed.
	resets.Store(0)
	before = proxied(live)
	gets := 0
	for range 4 {
		status, _, _ := send(t, c, port, "GET", "app.test", "/", strings.NewReader("query body"))
		if status == 502 {
			gets++
		}
	}
	if gets == 0 || gets != int(resets.Load()) || proxied(live)-before != 4-gets {
		t.Fatalf("GET with body: %d failed, %d reset, %d live", gets, resets.Load(), proxied(live)-before)
	}
}

// Four backends that accept connections and reset them at once: a request is
// offered to three of them and no more, then answered 502.
func TestTriesBoundedToThree(t *testing.T) {
	var accepted atomic.Int32
	var addrs []any
	for range 4 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
		}()
		addrs = append(addrs, ln.Addr().String())
	}
	port, _ := serveSRP(t, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q, %q, %q, %q]}}}`, addrs...))
	c := newClient(t)
	for i := range 4 {
		accepted.Store(0)
		status, body, _ := send(t, c, port, "GET", "app.test", "/", nil)
		wantBareError(t, "GET to resetting backends", status, body, 502)
		if n := accepted.Load(); n != 3 {
			t.Fatalf("request %d reached %d backends, want 3 tries", i, n)
		}
	}
}

func TestNoBackendAnswers502Fast(t *testing.T) {
	down := newBackend(t, "down", healthAnswers(500, "down"))
	port, _ := serveSRP(t, fmt.Sprintf(`{"Services": {
		"down.test": {"HealthPath": "/health", "Backends": [%q]},
		"dead.test": {"Backends": [%q, %q, %q, %q]}}}`,
		down.addr(), deadAddr(t), deadAddr(t), deadAddr(t), deadAddr(t)))
	c := newClient(t)
	for _, host := range []string{"down.test", "dead.test"} {
		start := time.Now()
		status, body, _ := send(t, c, port, "GET", host, "/", nil)
		wantBareError(t, host, status, body, 502)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: 502 took %v; no backend must fail fast, not wait for -timeout", host, d)
		}
	}
	if proxied(down) != 0 {
		t.Fatal("a backend down since the first round got a request")
	}
}

func TestSlowBackendAnswers504(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	a, b := newBackend(t, "a", slow), newBackend(t, "b", slow)
	port, _ := serveSRP(t, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q, %q]}}}`, a.addr(), b.addr()),
		"-timeout", "300ms")
	start := time.Now()
	status, body, _ := send(t, newClient(t), port, "GET", "app.test", "/", nil)
	wantBareError(t, "slow backend", status, body, 504)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("504 after %v with -timeout 300ms", d)
	}
	// A slow backend is not retried: that would only multiply the wait.
	if n := proxied(a) + proxied(b); n != 1 {
		t.Errorf("slow request delivered %d times, want 1", n)
	}
}
