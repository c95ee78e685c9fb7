package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
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

// rawRequest sends req verbatim on a new connection and reads the answer.
func rawRequest(t *testing.T, port int, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestRequestHeadersToBackend(t *testing.T) {
	b := newBackend(t, "app", nil)
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	resp, _ := rawRequest(t, port, "GET /a?b=c HTTP/1.1\r\n"+
		"Host: app.test\r\n"+
		"X-Forwarded-For: 203.0.113.9\r\n"+
		"X-Forwarded-For: 198.51.100.4\r\n"+
		"X-Real-IP: 6.6.6.6\r\n"+
		"X-Forwarded-Proto: https\r\n"+
		"X-Forwarded-Host: evil.test\r\n"+
		"X-Request-ID: trace-42.abc_DEF:9/x+y=\r\n"+
		// The client names srp's own headers as hop-by-hop to get them stripped.
		"Connection: keep-alive, X-Forwarded-For, X-Real-IP, X-Forwarded-Proto, X-Forwarded-Host, X-Request-ID, X-Hop\r\n"+
		"X-Hop: secret\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Upgrade: h2c\r\n"+
		"X-Kept: yes\r\n"+
		"\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := b.requests()[0]
	for name, want := range map[string]string{
		"X-Forwarded-For":   "203.0.113.9, 198.51.100.4, 127.0.0.1",
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "app.test",
		"X-Request-Id":      "trace-42.abc_DEF:9/x+y=",
		"X-Kept":            "yes",
	} {
		if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("backend got %s %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Upgrade"} {
		if v := r.Header.Values(name); len(v) > 0 {
			t.Errorf("hop-by-hop %s reached the backend: %q", name, v)
		}
	}
	if c := r.Header.Get("Connection"); strings.Contains(strings.ToLower(c), "x-") {
		t.Errorf("backend got Connection %q", c)
	}
	if r.Host != "app.test" || r.URL.RequestURI() != "/a?b=c" {
		t.Errorf("backend got Host %q URI %q", r.Host, r.URL.RequestURI())
	}
}

func TestRequestIDKeptOrGenerated(t *testing.T) {
	b := newBackend(t, "app", nil)
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	long := strings.Repeat("a", 129)
	for _, tc := range []struct{ header, kept string }{
		{"X-Request-ID: 0af7651916cd43dd8448eb211c80319c\r\n", "0af7651916cd43dd8448eb211c80319c"},
		{"", ""},
		{"X-Request-ID: \r\n", ""},
		{"X-Request-ID: has space\r\n", ""},
		{"X-Request-ID: <script>\r\n", ""},
		{"X-Request-ID: a\"b\r\n", ""},
		{"X-Request-ID: " + long + "\r\n", ""},
		{"X-Request-ID: one\r\nX-Request-ID: two\r\n", ""},
	} {
		rawRequest(t, port, "GET / HTTP/1.1\r\nHost: app.test\r\n"+tc.header+"\r\n")
	}
	reqs := b.requests()
	seen := map[string]bool{}
	for i, r := range reqs {
		ids := r.Header.Values("X-Request-Id")
		if len(ids) != 1 || ids[0] == "" {
			t.Errorf("request %d: backend got X-Request-Id %q, want exactly one", i, ids)
			continue
		}
		id := ids[0]
		if i == 0 && id != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("sane X-Request-Id replaced by %q", id)
		}
		if i > 0 && (strings.ContainsAny(id, " <>\"") || len(id) > 128 || id == "one" || id == "two") {
			t.Errorf("request %d: unsafe X-Request-Id %q passed on", i, id)
		}
		if seen[id] {
			t.Errorf("X-Request-Id %q generated twice", id)
		}
		seen[id] = true
	}
}

func TestResponseHopByHopRemoved(t *testing.T) {
	b := newBackend(t, "app", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "X-Internal")
		h.Set("X-Internal", "backend secret")
		h.Set("Keep-Alive", "timeout=99")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "foo/1")
		h.Set("X-App", "kept")
		fmt.Fprint(w, "body")
	})
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	resp, body := rawRequest(t, port, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp.StatusCode != 200 || body != "body" || resp.Header.Get("X-App") != "kept" {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	for _, name := range []string{"X-Internal", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v := resp.Header.Values(name); len(v) > 0 {
			t.Errorf("hop-by-hop %s reached the client: %q", name, v)
		}
	}
	if c := resp.Header.Get("Connection"); strings.Contains(strings.ToLower(c), "internal") {
		t.Errorf("client got Connection %q", c)
	}
}

func TestHeaderSizeLimit(t *testing.T) {
	b := newBackend(t, "app", nil)
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	resp, _ := rawRequest(t, port, "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: "+strings.Repeat("x", 200<<10)+"\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("200 KiB of headers: status %d, want 431", resp.StatusCode)
	}
	if len(b.requests()) != 0 {
		t.Fatal("oversized request reached the backend")
	}
	// A large but reasonable header set still passes.
	resp, _ = rawRequest(t, port, "GET / HTTP/1.1\r\nHost: app.test\r\nCookie: "+strings.Repeat("c", 16<<10)+"\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("16 KiB cookie: status %d", resp.StatusCode)
	}
}

func TestRedirects(t *testing.T) {
	port, _ := serveSRP(t, `{"Services": {
		"perm.test": {"Redirect": {"URL": "https://new.test", "Permanent": true}},
		"temp.test": {"Redirect": {"URL": "https://new.test/base/"}},
		"gone.test": {"Redirect": {"URL": "https://new.test/landing", "DiscardPath": true, "Permanent": true}}}}`)
	c := newClient(t)
	for _, tc := range []struct {
		method, host, path string
		status             int
		location           string
	}{
		{"GET", "perm.test", "/a/b?x=1&y=%20", 308, "https://new.test/a/b?x=1&y=%20"},
		{"POST", "perm.test", "/form", 308, "https://new.test/form"},
		{"GET", "perm.test", "/", 308, "https://new.test/"},
		{"GET", "temp.test", "/a?q=1", 307, "https://new.test/base/a?q=1"},
		{"HEAD", "TEMP.test:3000", "/", 307, "https://new.test/base/"},
		{"GET", "gone.test", "/a/b?x=1", 308, "https://new.test/landing"},
	} {
		status, _, h := send(t, c, port, tc.method, tc.host, tc.path, nil)
		if status != tc.status || h.Get("Location") != tc.location {
			t.Errorf("%s %s%s: %d %q, want %d %q", tc.method, tc.host, tc.path, status, h.Get("Location"), tc.status, tc.location)
		}
	}
}

func TestInternalAPI(t *testing.T) {
	up := newBackend(t, "up", healthAnswers(200, "up"))
	down := newBackend(t, "down", healthAnswers(503, "down"))
	own := newBackend(t, "own", nil)
	services := fmt.Sprintf(`"Services": {
		"app.test": {"HealthPath": "/health", "Backends": [%q, %q]},
		"own.test": {"Backends": [%q]},
		"old.test": {"Redirect": {"URL": "https://app.test"}}}`, up.addr(), down.addr(), own.addr())

	t.Run("inside", func(t *testing.T) {
		port, _ := serveSRP(t, `{`+services+`, "API": {"Subnet": "127.0.0.0/8"}}`)
		c := newClient(t)
		status, body, h := send(t, c, port, "GET", fmt.Sprintf("127.0.0.1:%d", port), "/services", nil)
		if status != 200 || h.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /services: %d %q", status, body)
		}
		var got map[string]struct {
			HealthPath string
			Backends   []string
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		if len(got) != 2 || got["app.test"].HealthPath != "/health" ||
			fmt.Sprint(got["app.test"].Backends) != fmt.Sprint([]string{up.addr()}) ||
			fmt.Sprint(got["own.test"].Backends) != fmt.Sprint([]string{own.addr()}) {
			t.Fatalf("GET /services = %s, want app.test with only %s and own.test, no redirect", body, up.addr())
		}
		// A configured service's own /services is its backend's, never the API's.
		status, body, _ = send(t, c, port, "GET", "own.test", "/services", nil)
		if status != 200 || body != "own" {
			t.Fatalf("own.test/services: %d %q, want the backend's answer", status, body)
		}
	})

	t.Run("outside", func(t *testing.T) {
		port, _ := serveSRP(t, `{`+services+`, "API": {"Subnet": "10.0.0.0/24"}}`)
		c := newClient(t)
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/services", port), nil)
		req.Header.Set("X-Forwarded-For", "10.0.0.5")
		req.Header.Set("X-Real-IP", "10.0.0.5")
		req.Header.Set("Forwarded", "for=10.0.0.5")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantBareError(t, "API from outside the subnet", resp.StatusCode, string(body), 404)
	})
}

// The checks that run before serving decide the first routing: a backend
// that is down when srp starts never gets a request, even the very first.
func TestDownAtStartGetsNothing(t *testing.T) {
	down := newBackend(t, "down", healthAnswers(503, "down"))
	up := newBackend(t, "up", healthAnswers(200, "up"))
	port := freePort(t)
	p := startSRP(t, "-c", writeConfig(t, fmt.Sprintf(`{"Services": {"app.test": {"HealthPath": "/health", "Backends": [%q, %q]}}}`,
		down.addr(), up.addr())), "-p", fmt.Sprint(port))
	stopOnCleanup(t, p)
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Fire from the moment the port exists: no waiting for srp to look ready.
	served := 0
	for served < 20 && ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = "app.test"
		resp, err := c.Do(req)
		if err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "up" {
			t.Fatalf("request %d: %d %q", served, resp.StatusCode, body)
		}
		served++
	}
	if served < 20 || proxied(down) != 0 {
		t.Fatalf("served %d; down backend got %d requests, want 0", served, proxied(down))
	}
}
