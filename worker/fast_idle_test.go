package worker

import (
	"bufio"
	"io"
	"net"
	"net/http"
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
}

// waitIdle gives both buffers back while it waits and takes a fresh read
// buffer when the client sends; a wait ended by the deadline reports so.
func TestWaitIdleReleasesBuffers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	raw, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	grown := make([]byte, 0, fastMaxSize)
	f := &fastConn{rw: server, raw: raw, buf: grown, out: make([]byte, 100)}
	go func() {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(client, "G")
	}()
	if !f.waitIdle() {
		t.Fatal("waitIdle reported false for a client that sent a byte")
	}
	if f.out != nil || len(f.buf) != 0 || cap(f.buf) != fastBufSize {
		t.Errorf("after the wait: out %d bytes, buf len %d cap %d; want no out and an empty %d-byte buf",
			len(f.out), len(f.buf), cap(f.buf), fastBufSize)
	}
	one := make([]byte, 1)
	if n, err := server.Read(one); n != 1 || one[0] != 'G' {
		t.Fatalf("the byte that ended the wait was consumed: %d %v", n, err)
	}
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if f.waitIdle() {
		t.Error("waitIdle reported true when its deadline passed")
	}
}
