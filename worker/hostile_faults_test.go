package worker

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"srp/scripts/testkit"
	"srp/worker/upstream"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A client that goes away cancels its backend request: logged as 499,
// not retried on another backend, and the backend stays in rotation.
func TestClientGoneCancelsBackend(t *testing.T) {
	var started, cancelled atomic.Int32
	hold := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hold" {
			io.WriteString(w, "ok")
			return
		}
		started.Add(1)
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(20 * time.Second):
		}
	}
	a, b := newRecorder(t, hold), newRecorder(t, hold)
	check := leakCheck(t)
	w := runGuarded(t, config(a.addr(), b.addr()), nil)
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET /hold HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if !testkit.WaitFor(10*time.Second, func() bool { return started.Load() == 1 }) {
		t.Fatal("request never reached a backend")
	}
	conn.Close()
	if !testkit.WaitFor(10*time.Second, func() bool { return cancelled.Load() == 1 }) {
		t.Fatal("backend request not cancelled after the client left")
	}
	if !testkit.WaitFor(5*time.Second, func() bool { return strings.Contains(w.logs.String(), "status=499") }) {
		t.Errorf("no 499 logged:\n%s", w.logs.String())
	}
	if n := len(a.requests()) + len(b.requests()); n != 1 || started.Load() != 1 {
		t.Errorf("backends got %d requests, want 1: retried after the client left", n)
	}
	for i := range 4 { // both backends still serve
		if resps, _, _ := exchange(t, w.addr, get, 1, false); len(resps) != 1 || resps[0].StatusCode != 200 {
			t.Fatalf("request %d after the disconnect: %v", i, statuses(resps))
		}
	}
	if len(a.requests()) < 2 || len(b.requests()) < 2 {
		t.Errorf("rotation after the disconnect: %d and %d requests", len(a.requests()), len(b.requests()))
	}
	w.stop()
	check()
}

// Broken request bodies are the client's fault: 400, never retried, and
// the backend stays healthy and in rotation.
func TestClientBodyErrorsAre4xx(t *testing.T) {
	a, b := newRecorder(t, nil), newRecorder(t, nil)
	conf := fmt.Sprintf(`{"Services": {"app.test": {"HealthPath": "/health", "Backends": [%q, %q]}}, "API": {"Subnet": "127.0.0.0/8"}}`, a.addr(), b.addr())
	w := runGuarded(t, conf, func(o *Options) { o.Health.Interval = 20 * time.Millisecond })
	for i := range 10 {
		resps, _, closed := exchange(t, w.addr, post("Transfer-Encoding: chunked")+"3\r\nabc\r\nzz\r\n", 1, true)
		if got := statuses(resps); len(got) != 1 || got[0] != 400 || !closed {
			t.Fatalf("bad body %d: statuses %v closed %v", i, got, closed)
		}
	}
	proxied := func(rec *recorder) (n int) {
		for _, s := range rec.requests() {
			if s.uri != "/health" {
				n++
			}
		}
		return n
	}
	if n := proxied(a) + proxied(b); n > 10 {
		t.Errorf("10 broken bodies reached backends %d times: retried", n)
	}
	for _, s := range append(a.requests(), b.requests()...) {
		if s.uri != "/health" && s.bodyErr == nil {
			t.Errorf("backend got a broken body whole: %q", s.body)
		}
	}
	// Health checks keep passing; both backends stay listed and used.
	time.Sleep(100 * time.Millisecond) // several check rounds
	resps, bodies, _ := exchange(t, w.addr, "GET /services HTTP/1.1\r\nHost: srp.test\r\n\r\n", 1, false)
	if len(resps) != 1 || !strings.Contains(bodies[0], a.addr()) || !strings.Contains(bodies[0], b.addr()) {
		t.Errorf("API after client errors: %v %q", statuses(resps), bodies)
	}
}

// Expect: 100-continue: the client is told to go on, its body arrives whole.
func TestExpectContinue(t *testing.T) {
	rec := newRecorder(t, nil)
	w := runGuarded(t, config(rec.addr()), nil)
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, post("Content-Length: 5", "Expect: 100-continue"))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("before the body: %v %v", resp, err)
	}
	io.WriteString(conn, "hello")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the body: %v %v", resp, err)
	}
	if got := rec.requests(); len(got) != 1 || string(got[0].body) != "hello" || got[0].header.Get("Expect") != "" {
		t.Fatalf("backend got %+v", got)
	}
}

// readAndReset is a backend that reads the start of a request and then
// resets the connection, counting the connections that carried request
// bytes: a backend that may have started on the request.
func readAndReset(t *testing.T, got *atomic.Int32) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _ := c.Read(make([]byte, 16)); n > 0 {
				got.Add(1)
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// refusedAddr is a 127.0.0.1 address that refuses connections: a socket
// bound to it and never listening, so no other test can take the port.
func refusedAddr(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// Retries: a GET is offered to at most 3 backends; a POST whose backend
// may have seen it is never sent again; a failed dial is retried with the
// whole body.
func TestRetryBounds(t *testing.T) {
	var accepted atomic.Int32
	var dead []string
	for range 5 {
		dead = append(dead, readAndReset(t, &accepted))
	}
	w := runGuarded(t, config(dead...), nil)
	resps, _, _ := exchange(t, w.addr, get, 1, false)
	if got := statuses(resps); len(got) != 1 || got[0] != 502 {
		t.Errorf("GET to 5 failing backends: %v", got)
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("GET offered to %d backends, want 3", n)
	}
	accepted.Store(0)
	resps, _, _ = exchange(t, w.addr, post("Content-Length: 3")+"abc", 1, false)
	if got := statuses(resps); len(got) != 1 || got[0] != 502 {
		t.Errorf("POST to failing backends: %v", got)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("POST sent to %d backends after the first may have seen it", n)
	}
	w.stop()

	rec := newRecorder(t, nil)
	w = runGuarded(t, config(refusedAddr(t), refusedAddr(t), rec.addr()), nil)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: streamed, not buffered
	for i := range 3 {
		rec.reset()
		resps, _, _ := exchange(t, w.addr, post(fmt.Sprintf("Content-Length: %d", len(body)))+string(body), 1, false)
		if got := statuses(resps); len(got) != 1 || got[0] != 200 {
			t.Fatalf("POST %d after refused dials: %v", i, got)
		}
		got := rec.requests()
		if len(got) != 1 || sha256.Sum256(got[0].body) != sha256.Sum256(body) {
			t.Fatalf("POST %d: backend got %d requests, first body %d bytes", i, len(got), len(got[0].body))
		}
	}
}

// A backend that takes the body and then fails is not offered the request
// again, nor is any other.
func TestNoSecondDelivery(t *testing.T) {
	var delivered atomic.Int32
	reset := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		delivered.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	})
	ok := newRecorder(t, nil)
	w := runGuarded(t, config(reset.addr(), ok.addr()), nil)
	fails := 0
	for i := range 6 {
		resps, _, _ := exchange(t, w.addr, post("Content-Length: 3")+"abc", 1, false)
		if len(resps) != 1 {
			t.Fatalf("POST %d: no answer", i)
		}
		if resps[0].StatusCode == 502 {
			fails++
		}
	}
	if fails == 0 || int(delivered.Load()) != fails || len(ok.requests())+fails != 6 {
		t.Errorf("6 POSTs: %d failed, %d reached the failing backend, %d the good one", fails, delivered.Load(), len(ok.requests()))
	}
}

// With every backend down, answers are fast and never hang: 502 when the
// checks took them out, 504 at -timeout when they accept and never answer.
func TestAllBackendsDown(t *testing.T) {
	down := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	conf := fmt.Sprintf(`{"Services": {"app.test": {"HealthPath": "/health", "Backends": [%q]}}}`, down.addr())
	w := runGuarded(t, conf, nil)
	down.reset()
	for range 5 {
		if resps, _, _ := exchange(t, w.addr, get, 1, false); len(resps) != 1 || resps[0].StatusCode != 502 {
			t.Fatalf("all unhealthy: %v", statuses(resps))
		}
	}
	if n := len(down.requests()); n != 0 {
		t.Errorf("unhealthy backend got %d requests", n)
	}
	w.stop()

	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts (backlog), never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	w = runGuarded(t, config(silent.Addr().String()), func(o *Options) { o.Timeout = 300 * time.Millisecond })
	done := make(chan []int, 1)
	go func() {
		resps, _, _ := exchange(t, w.addr, get, 1, false)
		done <- statuses(resps)
	}()
	select {
	case got := <-done:
		if len(got) != 1 || got[0] != 504 {
			t.Errorf("silent backend: %v, want 504", got)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("request to a silent backend hung")
	}
}

// A failed request's one log line names the request ID on both paths: the
// client's, or the one srp made for it, even when no backend was reached.
func TestFailureLogNamesRequestID(t *testing.T) {
	idField := regexp.MustCompile(`msg="proxy error".* request_id=(\S*)`)
	for _, fastPath := range []bool{true, false} {
		w := runGuarded(t, config(refusedAddr(t)), func(o *Options) { o.noFastPath = !fastPath })
		for _, clientID := range []string{"", "client-id-7"} {
			raw := get
			if clientID != "" {
				raw = "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: " + clientID + "\r\n\r\n"
			}
			before := w.logs.String()
			if resps, _, _ := exchange(t, w.addr, raw, 1, false); len(resps) != 1 || resps[0].StatusCode != 502 {
				t.Fatalf("fast path %v: %v, want 502", fastPath, statuses(resps))
			}
			var m []string
			testkit.WaitFor(5*time.Second, func() bool {
				m = idField.FindStringSubmatch(strings.TrimPrefix(w.logs.String(), before))
				return m != nil
			})
			switch {
			case m == nil:
				t.Fatalf("fast path %v: no failure logged:\n%s", fastPath, w.logs.String())
			case clientID != "" && m[1] != clientID:
				t.Errorf("fast path %v: logged request_id=%s, want the client's %s", fastPath, m[1], clientID)
			case clientID == "" && (m[1] == `""` || !upstream.SaneRequestID(m[1])):
				t.Errorf("fast path %v: logged request_id=%s, want a generated ID", fastPath, m[1])
			}
		}
		w.stop()
	}
}
