package worker

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A client that leaves while its request waits for a backend is noticed
// well before -timeout, on the fast path over plain HTTP (with a request
// pipelined behind, so bytes are still queued) and over TLS (whose client
// sends close_notify before its FIN).
func TestFastClientLeavesWhileBackendWorks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux sees a shutdown behind queued bytes")
	}
	var started, cancelled atomic.Int32
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hold" {
			return
		}
		started.Add(1)
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(25 * time.Second):
		}
	})
	cert, roots := selfSigned(t)
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := runGuarded(t, config(rec.addr()), func(o *Options) {
		o.Timeout = 30 * time.Second // far beyond what the test waits
		o.HTTPS = tlsLn
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	dialers := map[string]func() (net.Conn, error){
		"plain, request pipelined behind": func() (net.Conn, error) { return net.Dial("tcp", w.addr) },
		"TLS": func() (net.Conn, error) {
			return tls.Dial("tcp", tlsLn.Addr().String(), &tls.Config{ServerName: "app.test", RootCAs: roots, NextProtos: []string{"http/1.1"}})
		},
	}
	for name, dial := range dialers {
		t.Run(name, func(t *testing.T) {
			s0, c0 := started.Load(), cancelled.Load()
			conn, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(conn, "GET /hold HTTP/1.1\r\nHost: app.test\r\n\r\nGET /next HTTP/1.1\r\n")
			if !waitFor(10*time.Second, func() bool { return started.Load() == s0+1 }) {
				t.Fatal("request never reached the backend")
			}
			conn.Close()
			if !waitFor(10*time.Second, func() bool { return cancelled.Load() == c0+1 }) {
				t.Fatal("backend request not cancelled within 10s of the client leaving")
			}
		})
	}
	if !strings.Contains(w.logs.String(), "status=499") {
		t.Errorf("no 499 logged:\n%s", w.logs.String())
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
	conns[0].used = time.Now().Add(-2 * backendIdleTimeout) // idle too long
	first := <-accepted
	defer first.Close()
	(<-accepted).Close() // the backend closes the second
	third := <-accepted
	defer third.Close()
	if !waitFor(5*time.Second, func() bool { return !conns[1].alive() }) {
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
	g := &guardConn{Conn: server}
	f := &fastConn{c: g, guard: g, rw: server, buf: []byte("GET / HTTP/1.0\r\n\r\n")}
	hand := newHandoff(ln.Addr())
	hand.Close()
	if f.handoff(hand) {
		t.Fatal("handoff to a closed listener reported success")
	}
	if g.countedAlready() {
		t.Error("connection still marked as handed over")
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
