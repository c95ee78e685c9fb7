//lint:file-ignore SA1019 x/net's HTTP/2 client is the one a test can point at a connection with prior knowledge, and the implementation the server is held to

package h2_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"srp/scripts/testkit"
	"srp/worker/h2"
)

// TestMain fails the run if a connection, handler or client goroutine
// outlives the tests: each test's cleanup closes what it started, so
// anything left is a leak.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if left := leftGoroutines(5 * time.Second); left != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n\n%s\n", left)
			code = 1
		}
	}
	os.Exit(code)
}

func leftGoroutines(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "srp/worker/h2.") || strings.Contains(g, "golang.org/x/net/http2.") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testServer is an h2.Server behind a listener on 127.0.0.1.
type testServer struct {
	*h2.Server
	addr     string
	roots    *x509.CertPool // trusts the server's certificate; nil without TLS
	accepted atomic.Int32
	running  atomic.Int32 // handlers under way
}

func serve(t *testing.T, h http.Handler, configure func(*h2.Server)) *testServer {
	t.Helper()
	return start(t, h, configure, false, nil)
}

// serveTLS serves over TLS with a self-signed certificate, handing the
// server only connections whose handshake chose h2.
func serveTLS(t *testing.T, h http.Handler, configure func(*h2.Server)) *testServer {
	t.Helper()
	return start(t, h, configure, true, nil)
}

// start serves h; wrap, if set, sees each accepted connection first.
// Cleanup closes the server and fails the test if a connection or a
// handler is still running seconds later.
func start(t *testing.T, h http.Handler, configure func(*h2.Server), useTLS bool, wrap func(net.Conn) net.Conn) *testServer {
	t.Helper()
	ts := &testServer{Server: &h2.Server{Log: slog.New(slog.DiscardHandler)}}
	ts.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.running.Add(1)
		defer ts.running.Add(-1)
		h.ServeHTTP(w, r)
	})
	if configure != nil {
		configure(ts.Server)
	}
	var conf *tls.Config
	if useTLS {
		var cert tls.Certificate
		cert, ts.roots = testkit.SelfSigned(t)
		conf = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if wrap != nil {
					c = wrap(c)
				}
				if conf != nil {
					if c = handshake(c, conf); c == nil {
						return
					}
				}
				ts.ServeConn(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		ts.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("connections still served 5s after Close")
		}
		if !eventually(5*time.Second, func() bool { return ts.running.Load() == 0 }) {
			t.Errorf("%d handlers still running 5s after Close", ts.running.Load())
		}
	})
	return ts
}

func handshake(c net.Conn, conf *tls.Config) net.Conn {
	tc := tls.Server(c, conf)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
		_ = c.Close()
		return nil
	}
	return tc
}

// client is an x/net HTTP/2 client of a testServer: prior knowledge over
// plain TCP, or TLS with ALPN.
type client struct {
	*http.Client
	url string // the server's origin

	mu    sync.Mutex
	local []string // local addresses of the connections dialed
}

func (ts *testServer) client(t *testing.T, configure func(*http2.Transport)) *client {
	c := &client{url: "http://" + ts.addr}
	tr := &http2.Transport{AllowHTTP: true}
	tr.DialTLSContext = func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
		var nc net.Conn
		var err error
		if ts.roots != nil {
			nc, err = (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
		} else {
			nc, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		if err == nil {
			c.mu.Lock()
			c.local = append(c.local, nc.LocalAddr().String())
			c.mu.Unlock()
		}
		return nc, err
	}
	if ts.roots != nil {
		c.url = "https://" + ts.addr
		tr.TLSClientConfig = &tls.Config{RootCAs: ts.roots}
	}
	if configure != nil {
		configure(tr)
	}
	c.Client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// singleConn is a client on one connection that waits for one of the
// server's MAX_CONCURRENT_STREAMS rather than open another. Not the
// Transport's pool: it counts requests waiting for a slot against the
// limit, and would never reach it.
func (ts *testServer) singleConn(t *testing.T) *http.Client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&http2.Transport{AllowHTTP: true, StrictMaxConcurrentStreams: true}).NewClientConn(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &http.Client{Transport: cc, Timeout: 10 * time.Second}
}

func (c *client) locals() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.local...)
}

// eventually polls cond for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// payload is n bytes that differ with seed, so a body cut, reordered or
// mixed with another shows.
func payload(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// recv waits up to d for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("no %s within %v", what, d)
		panic("unreachable")
	}
}
