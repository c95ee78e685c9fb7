package worker

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"srp/scripts/testkit"
	"sync"
	"testing"
	"time"
)

// runTLS runs a worker with an HTTPS listener serving a fixed certificate
// (no NextProtos: the worker must offer h2 and http/1.1 itself) and
// returns it with the HTTPS address and the roots to trust.
func runTLS(t *testing.T, config string) (*running, string, *x509.CertPool) {
	t.Helper()
	cert, pool := testkit.SelfSigned(t, "app.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := runGuarded(t, config, func(o *Options) {
		o.HTTPS = ln
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	return w, ln.Addr().String(), pool
}

// tlsForwarder listens in plain TCP on 127.0.0.1 and carries each
// connection's bytes over HTTP/1.1-over-TLS (SNI app.test) to target, so
// raw-byte tests written for the plain listener run over TLS unchanged.
// The client side is closed once the worker closes its side.
func tlsForwarder(t *testing.T, target string, roots *x509.CertPool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	conf := &tls.Config{RootCAs: roots, ServerName: "app.test", NextProtos: []string{"http/1.1"}}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", target, conf)
				if err != nil {
					t.Errorf("forwarder: %v", err)
					return
				}
				defer tc.Close()
				up := make(chan struct{})
				go func() {
					defer close(up)
					// Only the client's end closes the TLS side here: when
					// the worker closes first, what it sent still comes back.
					var readErr bool
					_, _ = io.Copy(tc, readerFunc(func(p []byte) (int, error) {
						n, err := c.Read(p)
						readErr = err != nil
						return n, err
					}))
					if readErr {
						tc.Close()
					}
				}()
				_, _ = io.Copy(c, tc)
				c.Close()
				<-up
			})
		}
	})
	return ln.Addr().String()
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// HTTP/1.1 over TLS gets the framing checks of the plain listener: every
// case of the table, refusals and what must keep working alike.
func TestHostileFramingTLS(t *testing.T) {
	rec := newRecorder(t, nil)
	_, addr, roots := runTLS(t, config(rec.addr()))
	runCases(t, tlsForwarder(t, addr, roots), rec, framingCases)
}

// A WebSocket over TLS is tunnelled as on the plain listener: the guard
// above TLS steps aside at the hijack, so the tunnel's bytes are never
// taken for requests.
func TestWebSocketOverTLS(t *testing.T) {
	rec := newRecorder(t, wsBackend)
	_, addr, roots := runTLS(t, config(rec.addr()))
	fwd := tlsForwarder(t, addr, roots)
	early := "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	conn, err := net.Dial("tcp", fwd)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, wsHandshake+early)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	io.WriteString(conn, "later")
	got := make([]byte, len(early)+5)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != early+"later" {
		t.Errorf("tunnel echoed %q (%v)", got, err)
	}
	if n := len(rec.requests()); n != 1 {
		t.Errorf("backend parsed %d requests, want the handshake only", n)
	}
}

// Both protocols are still negotiated over TLS, and requests on both carry
// their TLS state: the backend is told the scheme is https.
func TestTLSProtocolsKeepTLSState(t *testing.T) {
	rec := newRecorder(t, nil)
	_, addr, roots := runTLS(t, config(rec.addr()))
	for _, h2 := range []bool{false, true} {
		rec.reset()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.test"}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		req, _ := http.NewRequest("GET", "https://"+addr+"/x", nil)
		req.Host = "app.test"
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("h2 %v: %v", h2, err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
		if want := map[bool]int{false: 1, true: 2}[h2]; resp.StatusCode != 200 || resp.ProtoMajor != want {
			t.Errorf("h2 %v: %s %d, want HTTP/%d 200", h2, resp.Proto, resp.StatusCode, want)
		}
		got := rec.requests()
		if len(got) != 1 || got[0].header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("h2 %v: backend got %d requests, X-Forwarded-Proto %q", h2, len(got), got[0].header.Get("X-Forwarded-Proto"))
		}
	}
}

// A client that opens a connection and never says hello does not hold up
// another client's handshake.
func TestSilentTLSClientBlocksNoOne(t *testing.T) {
	rec := newRecorder(t, nil)
	_, addr, roots := runTLS(t, config(rec.addr()))
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.test"}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+addr+"/x", nil)
	req.Host = "app.test"
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("request behind a silent client: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// A client whose TLS handshake is under way when the drain starts gets its
// handshake and its request answered, with Connection: close, as a client
// whose request was in flight does: an upgrade or a stop under load must
// not cut it.
func TestTLSHandshakeUnderWaySurvivesDrain(t *testing.T) {
	rec := newRecorder(t, nil)
	cert, roots := testkit.SelfSigned(t, "app.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := runGuarded(t, config(rec.addr()), func(o *Options) {
		o.HTTPS = ln
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		o.Grace = 3 * time.Second
	})
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	time.Sleep(200 * time.Millisecond) // accepted; its handshake waits for the hello
	stopped := make(chan struct{})
	go func() { w.stop(); close(stopped) }()
	time.Sleep(300 * time.Millisecond) // the drain has closed the listeners
	tc := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "app.test", NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake under way when the drain began: %v", err)
	}
	io.WriteString(tc, "GET /late HTTP/1.1\r\nHost: app.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatalf("request after the handshake: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("status %d, close %v; want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not finish")
	}
}
