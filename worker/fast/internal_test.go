package fast

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"srp/scripts/testkit"
	"srp/worker/guard"
	"srp/worker/upstream"
)

// waitIdle gives both buffers back while it waits and takes a fresh read
// buffer when the client sends; a wait ended by the deadline reports so.
func TestWaitIdleReleasesBuffers(t *testing.T) {
	client, server := testkit.Pair(t)
	raw, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	grown := make([]byte, 0, maxHeld)
	f := &conn{rw: server, raw: raw, buf: grown, out: make([]byte, 100)}
	go func() {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(client, "G")
	}()
	if !f.waitIdle() {
		t.Fatal("waitIdle reported false for a client that sent a byte")
	}
	if f.out != nil || len(f.buf) != 0 || cap(f.buf) != readBufSize {
		t.Errorf("after the wait: out %d bytes, buf len %d cap %d; want no out and an empty %d-byte buf",
			len(f.out), len(f.buf), cap(f.buf), readBufSize)
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

// Kept backend connections that their backend closed, or that sat idle
// too long, are closed by the sweep rather than kept until the worker
// ends.
func TestBackendSweep(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := ln.Addr().String()
	b := newBackends([]string{addr})
	var conns []*backendConn
	for range 3 {
		c, _, err := b.get(context.Background(), addr, true)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		b.put(c)
	}
	conns[0].used = time.Now().Add(-2 * upstream.IdleTimeout) // idle too long
	first := <-accepted
	defer first.Close()
	(<-accepted).Close() // the backend closes the second
	third := <-accepted
	defer third.Close()
	if !testkit.WaitFor(5*time.Second, func() bool { return !conns[1].alive() }) {
		t.Fatal("the backend's close never arrived")
	}
	b.sweep()
	ic := b.idle[addr]
	if len(ic.conns) != 1 {
		t.Fatalf("%d connections kept after the sweep, want 1", len(ic.conns))
	}
	if ic.conns[0] != conns[2] {
		t.Error("the sweep kept the wrong connection")
	}
	for _, c := range conns[:2] {
		if _, err := c.Write([]byte("x")); err == nil {
			t.Errorf("connection %p still open after the sweep", c)
		}
	}
}

// A request read by the fast path but refused by net/http (shut down for
// the drain) gets a 503, not silence.
func TestFastHandoffAfterShutdown(t *testing.T) {
	client, server := testkit.Pair(t)
	g := &guard.Conn{Conn: server}
	f := &conn{c: g, guard: g, rw: server, buf: []byte("GET / HTTP/1.0\r\n\r\n")}
	hand := NewHandoff(server.LocalAddr())
	hand.Close()
	if f.handoff(hand) {
		t.Fatal("handoff to a closed listener reported success")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
		t.Errorf("got %d (close %v), want 503 with Connection: close", resp.StatusCode, resp.Close)
	}
}
