package worker

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"runtime"
	"srp/scripts/testkit"
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
	cert, roots := testkit.SelfSigned(t, "app.test")
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
			if !testkit.WaitFor(10*time.Second, func() bool { return started.Load() == s0+1 }) {
				t.Fatal("request never reached the backend")
			}
			conn.Close()
			if !testkit.WaitFor(10*time.Second, func() bool { return cancelled.Load() == c0+1 }) {
				t.Fatal("backend request not cancelled within 10s of the client leaving")
			}
		})
	}
	if !strings.Contains(w.logs.String(), "status=499") {
		t.Errorf("no 499 logged:\n%s", w.logs.String())
	}
}
