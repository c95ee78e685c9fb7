package worker

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"srp/scripts/testkit"
	"strings"
	"testing"
	"time"
)

// client is one keep-alive client connection for sequential requests.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func dialClient(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// do sends one request with body (a POST when body is not empty) and
// returns the answer's status and body, or an error.
func (c *client) do(method, path, body string) (int, string, error) {
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: app.test\r\n", method, path)
	if body != "" {
		head += fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}
	if _, err := io.WriteString(c.conn, head+"\r\n"+body); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), err
}

// Sequential keep-alive requests, GETs and POSTs, all go over one backend
// connection.
func TestFastBackendConnReused(t *testing.T) {
	be := newScripted(t, func(int, *http.Request) (string, bool) { return okAnswer, false })
	w := runGuarded(t, config(be.Addr().String()), nil)
	c := dialClient(t, w.addr)
	for i := range 100 {
		method, body := "GET", ""
		if i%2 == 1 {
			method, body = "POST", "payload"
		}
		if status, got, err := c.do(method, "/r", body); status != 200 || got != "ok" || err != nil {
			t.Fatalf("request %d: %d %q %v", i, status, got, err)
		}
	}
	if conns, reqs := be.count(); conns != 1 || reqs != 100 {
		t.Errorf("100 sequential requests took %d backend connections (%d requests); want 1", conns, reqs)
	}
}

// failures sends n requests, GETs and POSTs in turn, on one keep-alive
// connection with pause between them, and counts those not answered 200 "ok".
func failures(t *testing.T, addr string, n int, pause time.Duration) (failed int) {
	t.Helper()
	c := dialClient(t, addr)
	for i := range n {
		method, body := "GET", ""
		if i%2 == 1 {
			method, body = "POST", "payload"
		}
		status, got, err := c.do(method, "/r", body)
		if status != 200 || got != "ok" || err != nil {
			failed++
			t.Logf("request %d (%s): %d %q %v", i, method, status, got, err)
			if err != nil {
				c = dialClient(t, addr)
			}
		}
		time.Sleep(pause)
	}
	return failed
}

// A backend that closes each kept connection right after its answer,
// without saying so: the pool sees it closed before reusing it, or a
// request that may go twice goes again on a new connection; no request
// fails.
func TestFastBackendClosesAfterEachAnswer(t *testing.T) {
	be := newScripted(t, func(int, *http.Request) (string, bool) { return okAnswer, true })
	w := runGuarded(t, config(be.Addr().String()), nil)
	if n := failures(t, w.addr, 200, 5*time.Millisecond); n != 0 {
		t.Errorf("%d of 200 requests failed", n)
	}
	if conns, reqs := be.count(); conns != 200 || reqs != 200 {
		t.Errorf("backend saw %d requests on %d connections, want 200 on 200", reqs, conns)
	}
}

// A backend that closes keep-alive connections idle for 5ms, with
// requests 30ms apart: every kept connection is gone by the next request,
// and no request fails.
func TestFastBackendClosesIdle(t *testing.T) {
	rec := newRecorder(t, nil)
	be := httptest.NewUnstartedServer(rec.Config.Handler)
	be.Config.IdleTimeout = 5 * time.Millisecond
	be.Start()
	t.Cleanup(be.Close)
	w := runGuarded(t, config(be.Listener.Addr().String()), nil)
	if n := failures(t, w.addr, 60, 30*time.Millisecond); n != 0 {
		t.Errorf("%d of 60 requests failed", n)
	}
	if n := len(rec.requests()); n != 60 {
		t.Errorf("backend got %d requests, want 60", n)
	}
}

// A kept connection that the backend closes just as the next request
// reaches it (it reads the request and closes without answering): a
// request that may be sent twice goes again on a new connection, as
// net/http's Transport does; one that may not fails with a 502 on both
// paths.
func TestFastStaleConnection(t *testing.T) {
	for _, tc := range []struct {
		method, body string
		want         int
	}{
		{"GET", "", 200},
		{"HEAD", "", 200},
		{"OPTIONS", "", 200},
		{"DELETE", "", 502},
		{"POST", "", 502},
		{"POST", "payload", 502},
	} {
		// A backend and workers of its own: no connection kept from another case.
		be := newScripted(t, func(n int, r *http.Request) (string, bool) {
			if n > 0 {
				return "", true
			}
			if r.Method == http.MethodHead {
				return strings.TrimSuffix(okAnswer, "ok"), false
			}
			return okAnswer, false
		})
		fast := runGuarded(t, config(be.Addr().String()), nil)
		slow := runGuarded(t, config(be.Addr().String()), func(o *Options) { o.noFastPath = true })
		for _, w := range []*running{fast, slow} {
			c := dialClient(t, w.addr)
			// The same kind of request first: on net/http's path, those
			// with a body and those without go over connections of their own.
			if status, _, err := c.do(tc.method, "/first", tc.body); status != 200 || err != nil {
				t.Fatalf("first request: %d %v", status, err)
			}
			status, _, err := c.do(tc.method, "/second", tc.body)
			if status != tc.want || err != nil {
				path := map[*running]string{fast: "fast path", slow: "net/http"}[w]
				t.Errorf("%s %s on a connection the backend drops: %d %v, want %d", path, tc.method, status, err, tc.want)
			}
		}
	}
}

// Bytes a backend sends after its answer is over (a stray answer, or the
// body a buggy backend sends after a HEAD answer) are never taken for the
// answer to the next request on that connection: that would hand every
// later client the answer meant for the one before.
func TestFastLateBytesNotAnAnswer(t *testing.T) {
	echo := func(path string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(path), path)
	}
	be := newScripted(t, func(n int, r *http.Request) (string, bool) {
		switch r.URL.Path {
		case "/stray":
			return echo("/stray") + pause + echo("/stray again"), false
		case "/head-body":
			return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + pause + "head-body!", false
		}
		return echo(r.URL.Path), false
	})
	for _, noFast := range []bool{false, true} {
		w := runGuarded(t, config(be.Addr().String()), func(o *Options) { o.noFastPath = noFast })
		c := dialClient(t, w.addr)
		for i, path := range []string{"/stray", "/a", "/b", "/head-body", "/c", "/d", "/stray", "/e"} {
			method, want := "GET", path
			if path == "/head-body" {
				method, want = "HEAD", ""
			}
			status, body, err := c.do(method, path, "")
			if status != 200 || body != want || err != nil {
				t.Errorf("noFastPath %v: request %d %s %s: %d %q %v", noFast, i, method, path, status, body, err)
			}
			if path == "/stray" || path == "/head-body" {
				time.Sleep(30 * time.Millisecond) // the late bytes arrive meanwhile
			}
		}
	}
}

// HTTP/1.1 over TLS is served on the fast path too: the backend is told
// the scheme is https, and a request whose Host is not the name the
// connection was opened for gets 421 from net/http, after which the
// connection goes on there.
func TestFastTLS(t *testing.T) {
	rec := newRecorder(t, nil)
	tp := tapped(t, rec)
	be := tp.Addr().String()
	_, addr, roots := runTLS(t, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}, "other.test": {"Backends": [%q]}}}`, be, be))
	dial := func(sni string) *client {
		conf := &tls.Config{ServerName: sni, RootCAs: roots, NextProtos: []string{"http/1.1"}, InsecureSkipVerify: sni != "app.test"}
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		return &client{t: t, conn: tc, br: bufio.NewReader(tc)}
	}
	request := func(c *client, host, method, path, body string) int {
		t.Helper()
		c.conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c.conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", method, path, host, len(body), body)
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("%s %s Host %s: %v", method, path, host, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	c := dial("app.test")
	for i, host := range []string{"app.test", "APP.test.:443", "app.test"} {
		if status := request(c, host, "POST", fmt.Sprintf("/%d", i), "payload"); status != 200 {
			t.Errorf("request %d Host %s: %d", i, host, status)
		}
	}
	if n := tp.fastHeads(); n != 3 {
		t.Errorf("the fast path served %d of 3 requests over TLS", n)
	}
	for _, s := range rec.requests() {
		if got := s.header.Get("X-Forwarded-Proto"); got != "https" || string(s.body) != "payload" {
			t.Errorf("%s: X-Forwarded-Proto %q, body %q", s.uri, got, s.body)
		}
	}

	rec.reset()
	tp.reset()
	c = dial("other.test")
	if status := request(c, "app.test", "GET", "/misdirected", ""); status != http.StatusMisdirectedRequest {
		t.Errorf("SNI other.test, Host app.test: %d, want 421", status)
	}
	if status := request(c, "other.test", "GET", "/right", ""); status != 200 {
		t.Errorf("then Host other.test on the same connection: %d", status)
	}
	if got := rec.requests(); len(got) != 1 || got[0].uri != "/right" {
		t.Errorf("backend got %+v, want /right alone", got)
	}
	if n := tp.fastHeads(); n != 0 {
		t.Errorf("the fast path served %d requests after handing the connection over", n)
	}
}

// The drain on the fast path: a request in flight completes with
// Connection: close, a keep-alive client that sends a request within the
// grace period is served with Connection: close, idle connections are
// closed once the grace period is over, and nothing is left behind.
func TestFastDrain(t *testing.T) {
	release := make(chan struct{})
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	tp := tapped(t, rec)
	check := leakCheck(t)
	w := runGuarded(t, config(tp.Addr().String()), func(o *Options) { o.Grace = 2 * time.Second })

	busy, idle, late := dialClient(t, w.addr), dialClient(t, w.addr), dialClient(t, w.addr)
	for _, c := range []*client{idle, late} {
		if status, _, err := c.do("GET", "/first", ""); status != 200 || err != nil {
			t.Fatalf("first request: %d %v", status, err)
		}
	}
	busy.conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(busy.conn, "GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if !testkit.WaitFor(5*time.Second, func() bool { return len(rec.requests()) == 3 }) {
		t.Fatal("the slow request never reached the backend")
	}

	stopped := make(chan struct{})
	go func() { w.stop(); close(stopped) }()
	if !testkit.WaitFor(5*time.Second, func() bool {
		c, err := net.Dial("tcp", w.addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	}) {
		t.Fatal("the worker still accepts after the drain began")
	}

	// Within the grace period a keep-alive client is still served, and
	// told to go.
	late.conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(late.conn, "GET /late HTTP/1.1\r\nHost: app.test\r\n\r\n")
	readClose := func(c *client, what string) {
		t.Helper()
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !resp.Close || string(b) != "ok" || err != nil {
			t.Errorf("%s: %d close %v body %q %v; want 200 ok with Connection: close", what, resp.StatusCode, resp.Close, b, err)
		}
	}
	readClose(late, "request during the grace period")
	close(release)
	readClose(busy, "request in flight at the drain")
	for name, c := range map[string]*client{"busy": busy, "idle": idle, "late": late} {
		c.conn.SetDeadline(time.Now().Add(10 * time.Second))
		if n, err := io.Copy(io.Discard, c.br); n != 0 || err != nil {
			t.Errorf("%s connection: read %d bytes, %v; want the drain to close it", name, n, err)
		}
		c.conn.Close()
	}
	<-stopped
	if n := tp.fastHeads(); n != 4 {
		t.Errorf("the fast path served %d of the 4 requests", n)
	}
	check()
}
