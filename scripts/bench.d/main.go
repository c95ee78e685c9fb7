// Command bench.d is the helper scripts/bench runs: a sample backend with
// fixed-size answers, the baseline Go reverse proxy, a holder of idle
// keep-alive connections that reports what they cost a server in memory,
// a free-port finder, and for the TLS modes a certificate maker and a load
// client that opens a new TLS connection per request.
//
//	bench.d backend -addr 127.0.0.1:9001   answers /64 with 64 bytes, /16k with 16 KiB
//	bench.d goproxy -addr A -backends B1,B2 [-cert C -key K]  httputil.ReverseProxy with a tuned pool
//	bench.d idle -addr A -host H -n 1000 -pid P [-tls [-h2]]
//	bench.d ports -n 6                     prints n free loopback ports
//	bench.d cert -dir D -name bench.test   a self-signed ECDSA P-256 certificate, in every server's format
//	bench.d tlsload -addr A -name N -c 64 -d 5s [-resume]  a TLS handshake per request
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench.d: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: bench.d backend|goproxy|idle|ports|cert|tlsload [flags]")
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "backend":
		err = backend(args)
	case "goproxy":
		err = goproxy(args)
	case "idle":
		err = idle(args)
	case "ports":
		err = ports(args)
	case "cert":
		err = cert(args)
	case "tlsload":
		err = tlsload(args)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

// backend answers with bodies of fixed sizes, so every proxy moves the same
// bytes and the backend's own cost per request stays constant.
func backend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:9001", "listen `address`")
	_ = fs.Parse(args)
	small := bytes.Repeat([]byte("a"), 63)
	small = append(small, '\n')
	large := bytes.Repeat([]byte("b"), 16<<10-1)
	large = append(large, '\n')
	bodies := map[string][]byte{"/64": small, "/16k": large}
	smallLen, largeLen := []string{"64"}, []string{strconv.Itoa(len(large))}
	text := []string{"text/plain"}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		hd := w.Header()
		hd["Content-Type"] = text
		hd["Content-Length"] = smallLen
		if len(body) != 64 {
			hd["Content-Length"] = largeLen
		}
		_, _ = w.Write(body)
	})
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// idle opens n keep-alive connections, each with one request answered,
// so the server holds them as idle HTTP connections, and prints the server
// process's resident memory before and after as "before_kib after_kib".
// With -settle, it then waits that long and opens n more, and prints the
// memory after those too: a server that gives back what its long-idle
// connections held serves the second lot from it, so their growth is
// what an idle connection costs it once settled. With -tls the
// connections are HTTPS (HTTP/1.1, or with -h2 HTTP/2), Host naming the
// server too.
func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "server `address`")
	host := fs.String("host", "localhost", "Host header")
	path := fs.String("path", "/64", "request path")
	n := fs.Int("n", 1000, "connections to hold")
	pid := fs.Int("pid", 0, "server process whose VmRSS to report")
	settle := fs.Duration("settle", 0, "then wait this long and open n more")
	useTLS := fs.Bool("tls", false, "HTTPS")
	h2 := fs.Bool("h2", false, "HTTP/2 (with -tls)")
	_ = fs.Parse(args)
	req := "GET " + *path + " HTTP/1.1\r\nHost: " + *host + "\r\n\r\n"
	dial := func() (io.Closer, error) {
		c, err := openIdle(*addr, req)
		if c == nil {
			return nil, err // not a typed nil: the holder closes what is not nil
		}
		return c, err
	}
	if *useTLS {
		dial = func() (io.Closer, error) { return openIdleTLS(*addr, *host, *path, *h2) }
	}
	before, err := vmRSS(*pid)
	if err != nil {
		return err
	}
	var conns []io.Closer
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	open := func() error {
		batch := make([]io.Closer, *n)
		defer func() { conns = append(conns, batch...) }()
		var wg sync.WaitGroup
		errs := make(chan error, *n)
		sem := make(chan struct{}, 64) // a burst the size of the load test's, not a SYN flood
		for i := range batch {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				c, err := dial()
				batch[i] = c
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return fmt.Errorf("%d of %d connections failed, first: %w", len(errs)+1, *n, err)
		}
		return nil
	}
	if err := open(); err != nil {
		return err
	}
	after, err := vmRSS(*pid)
	if err != nil {
		return err
	}
	if *settle <= 0 {
		fmt.Println(before, after)
		return nil
	}
	time.Sleep(*settle)
	if err := open(); err != nil {
		return err
	}
	settled, err := vmRSS(*pid)
	if err != nil {
		return err
	}
	fmt.Println(before, after, settled)
	return nil
}

func openIdle(addr, req string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return c, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && (resp.StatusCode != 200 || resp.Close) {
		err = fmt.Errorf("status %d, close %v", resp.StatusCode, resp.Close)
	}
	_ = c.SetDeadline(time.Time{})
	return c, err
}

func vmRSS(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, errors.New("no VmRSS for process " + strconv.Itoa(pid))
}

// ports prints n distinct loopback ports that were free a moment ago.
func ports(args []string) error {
	fs := flag.NewFlagSet("ports", flag.ExitOnError)
	n := fs.Int("n", 1, "how many")
	_ = fs.Parse(args)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range *n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// goproxy is the Go baseline: httputil.ReverseProxy as a careful Go user
// would set it up (round robin, a keep-alive pool as large as the load, a
// buffer pool, the same forwarding headers as the other proxies). With
// -cert and -key it serves HTTPS instead, HTTP/2 and HTTP/1.1, as net/http
// sets TLS up by default.
func goproxy(args []string) error {
	fs := flag.NewFlagSet("goproxy", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:9000", "listen `address`")
	list := fs.String("backends", "", "comma-separated backend `addresses`")
	certFile := fs.String("cert", "", "certificate PEM `file`: serve HTTPS")
	keyFile := fs.String("key", "", "private key PEM `file`")
	_ = fs.Parse(args)
	backends := strings.Split(*list, ",")
	var next, ids atomic.Uint64
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = backends[next.Add(1)%uint64(len(backends))]
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			ip, _, _ := net.SplitHostPort(pr.In.RemoteAddr)
			pr.Out.Header.Set("X-Real-Ip", ip)
			pr.Out.Header.Set("X-Request-Id", strconv.FormatUint(ids.Add(1), 16))
		},
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256,
			IdleConnTimeout: 90 * time.Second, DisableCompression: true},
		BufferPool: &bufPool{p: sync.Pool{New: func() any { return new([32 << 10]byte) }}},
	}
	srv := &http.Server{Addr: *addr, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	if *certFile != "" {
		return srv.ListenAndServeTLS(*certFile, *keyFile)
	}
	return srv.ListenAndServe()
}

type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte  { return b.p.Get().(*[32 << 10]byte)[:] }
func (b *bufPool) Put(v []byte) { b.p.Put((*[32 << 10]byte)(v)) }
