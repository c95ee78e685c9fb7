package worker

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"srp/scripts/testkit"
	"sync/atomic"
	"testing"
	"time"
)

// A keep-alive client quiet for longer than the request-head limit waits
// without buffers (waitIdle); its next request is served as before, and
// it is closed at the idle limit counted from its last response.
func TestFastPathLongIdleConnection(t *testing.T) {
	a := newRecorder(t, nil)
	check := leakCheck(t)
	w := runGuarded(t, config(a.addr()), func(o *Options) {
		o.headTimeout = 100 * time.Millisecond
		o.idleTimeout = 1500 * time.Millisecond
	})
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	get := func(i int) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "GET /idle HTTP/1.1\r\nHost: app.test\r\n\r\n"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: status %d, close %v", i, resp.StatusCode, resp.Close)
		}
	}
	for i := range 3 {
		get(i)
		time.Sleep(400 * time.Millisecond) // past the head limit, within the idle limit
	}
	if n := len(a.requests()); n != 3 {
		t.Fatalf("backend got %d requests, want 3", n)
	}
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF at the idle limit", err)
	}
	// The idle limit counts from the last response, not from the wake-ups.
	if waited := time.Since(start) + 400*time.Millisecond; waited < 1200*time.Millisecond {
		t.Errorf("closed after %v idle, want about 1.5s", waited)
	}
	conn.Close()
	w.stop()
	check()
}

// The drain closes a connection waiting without buffers, as any idle one.
func TestFastPathLongIdleClosedByDrain(t *testing.T) {
	a := newRecorder(t, nil)
	w := runGuarded(t, config(a.addr()), func(o *Options) { o.headTimeout = 100 * time.Millisecond })
	resps, _, _ := exchange(t, w.addr, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n", 1, false)
	if len(resps) != 1 || resps[0].StatusCode != 200 {
		t.Fatalf("statuses %v", statuses(resps))
	}
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	time.Sleep(300 * time.Millisecond) // into waitIdle
	stopped := make(chan struct{})
	go func() { w.stop(); close(stopped) }()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read %v, want EOF from the drain", err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not finish")
	}
	if n := w.logs.Count("level=ERROR"); n > 0 {
		t.Errorf("the drain logged %d errors:\n%s", n, w.logs)
	}
}

// Idle connections past the request-head limit hold no goroutine, plain
// or over TLS: 200 of them leave the goroutine count where it was, and
// each is served again when its client speaks.
func TestFastPathParkedConnectionsHoldNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking uses epoll")
	}
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[useTLS], func(t *testing.T) {
			a := newRecorder(t, nil)
			dial := parkingWorker(t, a, useTLS, nil)
			const n = 200
			conns := make([]net.Conn, n)
			readers := make([]*bufio.Reader, n)
			get := func(i int) {
				t.Helper()
				if err := getOn(conns[i], readers[i]); err != nil {
					t.Fatalf("conn %d: %v", i, err)
				}
			}
			base := runtime.NumGoroutine()
			for i := range conns {
				c := dial()
				defer c.Close()
				conns[i], readers[i] = c, bufio.NewReader(c)
				get(i)
			}
			// Each served connection may leave a serving goroutine idle for 5s
			// beside the fast path's own few; parked connections add none.
			var g int
			if !testkit.WaitFor(10*time.Second, func() bool { g = runtime.NumGoroutine(); return g < base+n/4 }) {
				t.Fatalf("%d idle connections: %d goroutines, %d before them", n, g, base)
			}
			t.Logf("%d idle connections: %d goroutines, %d before them", n, g, base)
			for i := range conns {
				get(i)
			}
			if got := len(a.requests()); got != 2*n {
				t.Errorf("backend got %d requests, want %d", got, 2*n)
			}
		})
	}
}

// A TLS record the client sends in two parts, the second after the
// connection was parked with the first: crypto/tls holds the first part,
// and the rest, from the socket, wakes the connection. The request is
// served as any other.
func TestFastPathParkedTLSPartialRecord(t *testing.T) {
	a := newRecorder(t, nil)
	var split splitWrites
	dial := parkingWorker(t, a, true, &split)
	c := dial()
	defer c.Close()
	br := bufio.NewReader(c)
	if err := getOn(c, br); err != nil {
		t.Fatal(err)
	}
	// At once: the first 10 bytes reach crypto/tls within the 100ms head
	// limit the last request started, the read times out holding them, and
	// the connection parks; the rest comes 300ms later.
	split.pause.Store(int64(300 * time.Millisecond))
	if err := getOn(c, br); err != nil {
		t.Fatalf("request split across the park: %v", err)
	}
	if got := len(a.requests()); got != 2 {
		t.Errorf("backend got %d requests, want 2", got)
	}
}

// splitWrites, while pause is set, writes the first 10 bytes of each write
// to the connection, waits pause and writes the rest.
type splitWrites struct{ pause atomic.Int64 }

type splitConn struct {
	net.Conn
	s *splitWrites
}

func (c splitConn) Write(p []byte) (int, error) {
	d := time.Duration(c.s.pause.Load())
	if d == 0 || len(p) <= 10 {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:10])
	if err != nil {
		return n, err
	}
	time.Sleep(d)
	m, err := c.Conn.Write(p[10:])
	return n + m, err
}

// parkingWorker runs a worker that parks connections idle for 100ms, and
// returns how to open a keep-alive connection to it, plain or over TLS;
// split, if not nil, shapes the client's writes below TLS.
func parkingWorker(t *testing.T, a *recorder, useTLS bool, split *splitWrites) func() net.Conn {
	cert, roots := testkit.SelfSigned(t, "app.test")
	var tlsAddr string
	w := runGuarded(t, config(a.addr()), func(o *Options) {
		o.headTimeout = 100 * time.Millisecond
		o.idleTimeout = 30 * time.Second
		if useTLS {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			tlsAddr = ln.Addr().String()
			o.HTTPS, o.TLS = ln, &tls.Config{Certificates: []tls.Certificate{cert}}
		}
	})
	return func() net.Conn {
		t.Helper()
		if !useTLS {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		raw, err := net.Dial("tcp", tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		var under net.Conn = raw
		if split != nil {
			under = splitConn{raw, split}
		}
		c := tls.Client(under, &tls.Config{RootCAs: roots, ServerName: "app.test", NextProtos: []string{"http/1.1"}})
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// getOn asks for /park on c and reads the answer: a 200 that keeps the
// connection open.
func getOn(c net.Conn, br *bufio.Reader) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /park HTTP/1.1\r\nHost: app.test\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		return fmt.Errorf("status %d, close %v", resp.StatusCode, resp.Close)
	}
	return nil
}
