package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// exchangeRaw sends raw on a new connection to srp and reads up to n
// answers, or until srp closes the connection.
func exchangeRaw(t *testing.T, port int, raw string, n int) []int {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var got []int
	for len(got) < n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	return got
}

// workerFDs counts the open files of srp's worker processes.
func workerFDs(t *testing.T, p *proc) int {
	t.Helper()
	n := 0
	for _, pid := range procTree(p.cmd.Process.Pid)[1:] {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Skipf("no /proc/%d/fd: %v", pid, err)
		}
		n += len(entries)
	}
	if n == 0 {
		t.Fatal("srp has no worker process")
	}
	return n
}

// Hostile bytes against the real binary: refused with 4xx, nothing reaches
// the backend, srp keeps serving, and the worker's open files come back to
// where they were after many hostile, silent and abandoned connections.
func TestHostileBytesThroughBinary(t *testing.T) {
	b := newBackend(t, "app", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			wsEcho(w, r)
			return
		}
		io.WriteString(w, "app")
	})
	port, p := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`, "-timeout", "2s")
	good := "GET /ok HTTP/1.1\r\nHost: app.test\r\n\r\n"
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"
	cases := []struct {
		name, raw string
		want      []int
	}{
		{"CL+TE", "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"TE+CL", "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"duplicate CL", "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n" + smuggled, []int{400}},
		{"TE gzip", "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", []int{400}},
		{"bare LF", "GET / HTTP/1.1\nHost: app.test\n\n", []int{400}},
		{"obsolete folding", "GET / HTTP/1.1\r\nHost: app.test\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n", []int{400}},
		{"NUL", "GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\x00b\r\n\r\n", []int{400}},
		{"space before colon", "GET / HTTP/1.1\r\nHost : app.test\r\n\r\n", []int{400}},
		{"userinfo target", "GET http://u:p@app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n", []int{400}},
		{"CONNECT", "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n", []int{405}},
		{"oversize head", "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("x", 100<<10) + "\r\n\r\n", []int{431}},
	}
	for _, tc := range cases {
		got := exchangeRaw(t, port, good+tc.raw, 1+len(tc.want))
		if want := append([]int{200}, tc.want...); !slices.Equal(got, want) {
			t.Errorf("%s: statuses %v, want %v", tc.name, got, want)
		}
	}
	for _, r := range b.requests() {
		if r.URL.Path != "/ok" && r.URL.Path != "/ws" {
			t.Errorf("backend got %s %s", r.Method, r.URL)
		}
	}
	if n := len(b.requests()); n != len(cases) {
		t.Errorf("backend got %d requests, want the %d good ones", n, len(cases))
	}

	// A WebSocket frame sent in the same write as the handshake is echoed.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var first bytes.Buffer
	first.WriteString("GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	wsWrite(&first, 1, []byte("early"), true)
	conn.Write(first.Bytes())
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	if op, msg, err := wsRead(br); err != nil || op != 1 || string(msg) != "early" {
		t.Errorf("early frame came back as %d %q %v", op, msg, err)
	}
	conn.Close()

	// Open files of the worker before and after: hostile, silent and
	// abandoned connections, and 1000 idle ones at once.
	start := time.Now()
	base := workerFDs(t, p)
	for i := range 200 {
		exchangeRaw(t, port, cases[i%len(cases)].raw, 1)
	}
	var silent []net.Conn
	for i := range 1000 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("silent connection %d: %v", i, err)
		}
		// One byte of a head, then nothing: the listener defers accept
		// until a client sends, so a client that sends nothing at all
		// would wait in the kernel, not in the worker this test is about.
		if _, err := io.WriteString(c, "G"); err != nil {
			t.Fatalf("silent connection %d: %v", i, err)
		}
		silent = append(silent, c)
	}
	t.Logf("hostile connections took %v", time.Since(start))
	for i := range 20 {
		if got := exchangeRaw(t, port, good, 1); !slices.Equal(got, []int{200}) {
			t.Fatalf("request %d beside 1000 silent connections: %v", i, got)
		}
	}
	t.Logf("silent connections took %v", time.Since(start))
	for _, c := range silent {
		c.Close()
	}
	for range 50 { // requests abandoned half-way
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nhalf")
		c.Close()
	}
	var now int
	deadline := time.Now().Add(20 * time.Second)
	for now = workerFDs(t, p); now > base && time.Now().Before(deadline); now = workerFDs(t, p) {
		time.Sleep(50 * time.Millisecond)
	}
	if now > base {
		t.Errorf("worker open files: %d before, %d after", base, now)
	}
	t.Logf("worker open files: %d before, %d after", base, now)
	if got := exchangeRaw(t, port, good, 1); !slices.Equal(got, []int{200}) {
		t.Errorf("after it all: %v", got)
	}
}

// A client reading its answer a trickle at a time through the binary is
// cut after -timeout without progress, which frees the backend.
func TestSlowReaderThroughBinary(t *testing.T) {
	released := make(chan error, 1)
	b := newBackend(t, "app", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 1024 {
			if _, err := w.Write(chunk); err != nil {
				released <- err
				return
			}
		}
		released <- nil
	})
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`, "-timeout", "1s")
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n")
	done := make(chan struct{})
	defer close(done)
	go func() {
		one := make([]byte, 1)
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := conn.Read(one); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-released:
		if err == nil {
			t.Fatal("64 MiB written to a client reading a byte at a time")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("backend still pinned by a slow reader after 30s")
	}
}
