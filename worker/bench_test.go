package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"srp/scripts/testkit"
	"srp/worker"
	"srp/worker/accesslog"
	"srp/worker/h2"
)

// BenchmarkProxyRaw measures the worker's request path alone: the client
// and the backend speak HTTP/1.1 straight on their sockets and allocate
// nothing per request, so allocs/op and most of a CPU profile belong to the
// proxy. 64 keep-alive connections, as scripts/bench drives srp.
//
// cpu-ns/op is the process's CPU time (user+system) per request: on a
// machine shared with other work it varies far less than sec/op.
func BenchmarkProxyRaw(b *testing.B) {
	benchProxyRaw(b, func(testing.TB) worker.Options { return worker.Options{} })
}

// BenchmarkProxyRawAccessLog is BenchmarkProxyRaw with the access log on,
// JSON lines written to /dev/null: the difference between the two is what
// a line costs on the request path (formatting, the lock, the write).
func BenchmarkProxyRawAccessLog(b *testing.B) {
	benchProxyRaw(b, func(tb testing.TB) worker.Options {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { f.Close() })
		return worker.Options{AccessLog: accesslog.New(accesslog.JSON, f)}
	})
}

func benchProxyRaw(b *testing.B, opts func(testing.TB) worker.Options) {
	for _, size := range []int{64, 16 << 10} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			backend := rawBackend(b, size)
			base := startWorker(b, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}}}`, backend), opts(b))
			addr := strings.TrimPrefix(base, "http://")
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			cpu0 := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				req := []byte("GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n")
				for pb.Next() {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					if err := readRawResponse(r, size); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkProxyNewConn is a new client connection per request, on the
// fast path: what accepting, setting up and closing a connection costs
// beside the request. The client's own work is in cpu-ns/op too.
func BenchmarkProxyNewConn(b *testing.B) {
	backend := rawBackend(b, 64)
	base := startWorker(b, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}}}`, backend), worker.Options{})
	addr := strings.TrimPrefix(base, "http://")
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	cpu0 := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		req := []byte("GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
		for pb.Next() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				c.Close()
				return
			}
			err = readRawResponse(bufio.NewReader(c), 64)
			c.Close()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkProxyH2 is HTTP/2 over TLS, how browsers reach srp in HTTPS
// mode: 64 requests at a time over 4 client connections, 64-byte answers,
// through srp's HTTP/2 server and ReverseProxy. The client's own work is
// in cpu-ns/op too.
func BenchmarkProxyH2(b *testing.B) {
	backend := rawBackend(b, 64)
	cert, roots := testkit.SelfSigned(b, "app.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	startWorker(b, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}}}`, backend),
		worker.Options{HTTPS: ln, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	benchH2(b, ln.Addr().String(), roots)
}

// BenchmarkH2Floor is BenchmarkProxyH2's load on srp's HTTP/2 server
// answering from memory: no proxy, no backend. BenchmarkProxyH2's cost
// above it is the proxy's.
func BenchmarkH2Floor(b *testing.B) {
	cert, roots := testkit.SelfSigned(b, "app.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	body := bytes.Repeat([]byte("a"), 64)
	srv := &h2.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Header()["Content-Length"] = []string{"64"}
		_, _ = w.Write(body)
	})}
	b.Cleanup(srv.Close)
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, conf)
				if tc.Handshake() == nil {
					srv.ServeConn(tc)
				}
				tc.Close()
			}()
		}
	}()
	benchH2(b, ln.Addr().String(), roots)
}

func benchH2(b *testing.B, addr string, roots *x509.CertPool) {
	clients := make([]*http.Client, 4)
	for i := range clients {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.test"}, ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}
		b.Cleanup(tr.CloseIdleConnections)
		clients[i] = &http.Client{Transport: tr}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	cpu0 := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		c := clients[next.Add(1)%int64(len(clients))]
		for pb.Next() {
			resp, err := c.Get("https://app.test/x")
			if err != nil {
				b.Error(err)
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || n != 64 || resp.ProtoMajor != 2 {
				b.Errorf("%s %d, %d bytes, %v", resp.Proto, resp.StatusCode, n, err)
				return
			}
		}
	})
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time this process has used so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawBackend answers every request head it reads with a size-byte body.
func rawBackend(tb testing.TB, size int) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n")
	resp = append(resp, bytes.Repeat([]byte("a"), size)...)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if err := skipHead(r); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func skipHead(r *bufio.Reader) error {
	_, err := readHead(r)
	return err
}

// readHead reads one message head and returns the Content-Length it named.
func readHead(r *bufio.Reader) (int, error) {
	n := -1
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			return n, nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, err = strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return 0, err
			}
		}
	}
}

// readRawResponse reads one 200 response with a want-byte body.
func readRawResponse(r *bufio.Reader, want int) error {
	status, err := r.Peek(12)
	if err != nil {
		return err
	}
	if !bytes.Equal(status[9:12], []byte("200")) {
		return fmt.Errorf("status %q", status)
	}
	n, err := readHead(r)
	if err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("Content-Length %d, want %d", n, want)
	}
	_, err = r.Discard(n)
	return err
}
