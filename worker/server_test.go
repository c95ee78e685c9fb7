package worker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"srp/registry"
)

// A keep-alive connection left idle is closed by srp, so idle clients
// cannot pile up connections forever.
func TestIdleKeepAliveClosed(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	snap, err := registry.Parse("t.json", []byte(fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}}}`, backend.Listener.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Snapshot: snap, HTTP: ln, Logger: discardLogger(), idleTimeout: 200 * time.Millisecond},
			func() { close(ready) })
	}()
	defer func() { cancel(); <-done }()
	<-ready

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	for i := range 2 { // the connection is reused while it is busy
		fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
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
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %q, %v; want the server to close it", n, err)
	}
}
