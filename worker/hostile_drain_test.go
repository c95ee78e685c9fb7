package worker

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"srp/scripts/testkit"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A client that reads its answer a trickle at a time is cut once a write
// to it stalls for -timeout, which frees the backend connection.
func TestSlowReaderCannotPinBackend(t *testing.T) {
	released := make(chan error, 1)
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 1024 { // 64 MiB, far more than any socket buffer
			if _, err := w.Write(chunk); err != nil {
				released <- err
				return
			}
		}
		released <- nil
	})
	check := leakCheck(t)
	w := runGuarded(t, config(rec.addr()), func(o *Options) { o.Timeout = time.Second })
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(conn, get)
	stop := make(chan struct{})
	go func() { // one byte every 100ms: well under any sane rate
		b := make([]byte, 1)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := conn.Read(b); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-released:
		if err == nil {
			t.Fatal("the whole answer was written to a client reading a byte at a time")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("backend still pinned by a slow reader after 30s")
	}
	close(stop)
	conn.Close()
	if resps, _, _ := exchange(t, w.addr, "GET /x HTTP/1.1\r\nHost: nothing.test\r\n\r\n", 1, false); len(resps) != 1 {
		t.Fatal("no service after the slow reader")
	}
	w.stop()
	check()
}

// 1000 connections that send nothing do not stop service, and everything
// is released after the drain.
func TestSilentConnections(t *testing.T) {
	rec := newRecorder(t, nil)
	check := leakCheck(t)
	w := runGuarded(t, config(rec.addr()), nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 1000 {
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatalf("silent connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	for i := range 20 {
		if resps, _, _ := exchange(t, w.addr, get, 1, false); len(resps) != 1 || resps[0].StatusCode != 200 {
			t.Fatalf("request %d beside 1000 silent connections: %v", i, statuses(resps))
		}
	}
	w.stop() // drains: the silent connections are closed by srp
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	check()
}

// A worker that drains (a reload retires it) finishes its in-flight
// request, ends its tunnels and keep-alive connections, and leaves no
// goroutine or open file behind, backend connections included.
func TestDrainReleasesEverything(t *testing.T) {
	slowDone := make(chan struct{})
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, "slow")
		case "/stuck": // answers after srp's -timeout: a 504
			select {
			case <-slowDone:
			case <-time.After(3 * time.Second):
			}
		default:
			wsBackend(w, r)
		}
	})
	check := leakCheck(t)
	w := runGuarded(t, config(rec.addr()), func(o *Options) { o.Timeout = time.Second })

	resps, _, _ := exchange(t, w.addr, "GET /stuck HTTP/1.1\r\nHost: app.test\r\n\r\n", 1, false)
	if got := statuses(resps); !slices.Equal(got, []int{504}) {
		t.Errorf("stuck backend: %v", got)
	}
	close(slowDone)
	var keep []net.Conn
	for range 5 { // keep-alive connections left idle
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		keep = append(keep, c)
		io.WriteString(c, get)
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(ws, wsHandshake)
	wsr := bufio.NewReader(ws)
	if resp, err := http.ReadResponse(wsr, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	slow := make(chan []int, 1)
	go func() {
		resps, _, _ := exchange(t, w.addr, "GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n", 1, false)
		slow <- statuses(resps)
	}()
	testkit.WaitFor(5*time.Second, func() bool {
		for _, s := range rec.requests() {
			if s.uri == "/slow" {
				return true
			}
		}
		return false
	})
	w.stop()
	if got := <-slow; !slices.Equal(got, []int{200}) {
		t.Errorf("request in flight during the drain: %v", got)
	}
	for _, c := range append(keep, ws) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("connection not closed by the drain: %v", err)
		}
		c.Close()
	}
	check()
}

// A backend whose checks alternate between pass and fail never reaches
// two failures in a row: it stays in rotation instead of thrashing.
func TestFlappingBackendStays(t *testing.T) {
	var checks atomic.Int32
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && checks.Add(1)%2 == 0 {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "ok")
	})
	conf := fmt.Sprintf(`{"Services": {"app.test": {"HealthPath": "/health", "Backends": [%q]}}}`, rec.addr())
	w := runGuarded(t, conf, func(o *Options) { o.Health.Interval = 10 * time.Millisecond })
	for i := 0; checks.Load() < 40; i++ {
		if resps, _, _ := exchange(t, w.addr, get, 1, false); len(resps) != 1 || resps[0].StatusCode != 200 {
			t.Fatalf("request %d after %d checks: %v", i, checks.Load(), statuses(resps))
		}
	}
	if strings.Contains(w.logs.String(), "down") {
		t.Errorf("flapping backend taken out:\n%s", w.logs.String())
	}
}
