package worker

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"srp/registry"
	"srp/scripts/testkit"
	"srp/worker/guard"
)

// parsed is one request as an HTTP parser saw it.
type parsed struct {
	method, uri, host string
	body              []byte
}

func (p parsed) same(q parsed) bool {
	return p.method == q.method && p.uri == q.uri && p.host == q.host && bytes.Equal(p.body, q.body)
}

// reference parses raw as net/http reads requests off a connection, and
// returns the methods of the requests it reads whole, the ones srp may
// route to app.test, and the index at which a request framed two ways
// (which no proxy may pass on) starts among those, or len(routed).
func reference(raw []byte) (methods []string, routed []parsed, hostile int) {
	cr := &countingReader{r: bytes.NewReader(raw)}
	br := bufio.NewReader(cr)
	for len(methods) < 64 {
		at := cr.n - br.Buffered()
		if ambiguous(raw[at:]) {
			return methods, routed, len(routed)
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			break
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			break
		}
		methods = append(methods, req.Method)
		if registry.NormalizeHost(req.Host) == "app.test" && req.Method != http.MethodConnect && req.URL.User == nil {
			routed = append(routed, parsed{req.Method, req.URL.RequestURI(), req.Host, body})
		}
	}
	return methods, routed, len(routed)
}

// ambiguous reports whether the request head at the start of b frames its
// body in a way two parsers may disagree on: both Content-Length and
// Transfer-Encoding, several Content-Lengths, or chunks before HTTP/1.1.
func ambiguous(b []byte) bool {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	line, err := tp.ReadLine()
	if err != nil {
		return false
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return false
	}
	cl, te := h["Content-Length"], h["Transfer-Encoding"]
	return len(cl) > 0 && len(te) > 0 || len(cl) > 1 || len(te) > 0 && !strings.HasSuffix(line, " HTTP/1.1")
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// fuzzBackend records what it parsed, per input, and answers with X-Backend.
type fuzzBackend struct {
	gen      atomic.Int64
	inflight atomic.Int64
	mu       sync.Mutex // guards got
	got      []struct {
		gen   int64
		req   parsed
		whole bool
	}
}

func (b *fuzzBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	gen := b.gen.Load()
	body, err := io.ReadAll(r.Body)
	b.mu.Lock()
	b.got = append(b.got, struct {
		gen   int64
		req   parsed
		whole bool
	}{gen, parsed{r.Method, r.RequestURI, r.Host, body}, err == nil})
	b.mu.Unlock()
	w.Header().Set("X-Backend", "1")
	io.WriteString(w, "ok")
}

// received returns the requests of generation gen that arrived whole.
func (b *fuzzBackend) received(gen int64) []parsed {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []parsed
	keep := b.got[:0]
	for _, g := range b.got {
		if g.gen == gen && g.whole {
			out = append(out, g.req)
		}
		if g.gen > gen {
			keep = append(keep, g)
		}
	}
	b.got = keep
	return out
}

// FuzzRawRequest sends raw bytes through a real worker (guard, server,
// router, proxy) to a recording backend and checks that what the backend
// parsed is what net/http parsed from the client, request by request, that
// no request is delivered twice, that nothing at or after an ambiguously
// framed request is delivered, and that srp answers every request it read.
func FuzzRawRequest(f *testing.F) {
	for _, tc := range framingCases {
		f.Add([]byte(tc.raw))
	}
	f.Add([]byte(get + post("Content-Length: 3") + "abc" + "GET http://app.test/x HTTP/1.1\r\nHost: other\r\n\r\n"))
	f.Add([]byte(post("Transfer-Encoding: chunked") + "3\r\nabc\r\n0\r\n\r\n" + get))

	backend := &fuzzBackend{}
	srv := &http.Server{Handler: backend}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(bln)
	f.Cleanup(func() { srv.Close() })
	// Refusals are logged once each: millions of them would fill memory.
	w := runGuarded(f, config(bln.Addr().String()), func(o *Options) { o.Logger = discardLogger() })

	f.Fuzz(func(t *testing.T, raw []byte) {
		gen := backend.gen.Add(1)
		methods, routed, hostile := reference(raw)

		conn, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		go conn.Write(raw) // srp may close before reading it all
		br := bufio.NewReader(conn)
		answers, fromBackend := 0, 0
		for answers < len(methods) {
			resp, err := http.ReadResponse(br, &http.Request{Method: methods[answers]})
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("srp answered %d of the %d requests net/http reads from %q", answers, len(methods), raw)
				}
				break // srp closed: it refused a request
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 200 {
				continue
			}
			answers++
			if resp.Header.Get("X-Backend") != "" {
				fromBackend++
			}
		}
		conn.Close()
		testkit.WaitFor(5*time.Second, func() bool { return backend.inflight.Load() == 0 })

		got := backend.received(gen)
		if fromBackend > len(got) {
			t.Fatalf("%d answers from the backend, %d requests received whole", fromBackend, len(got))
		}
		j := 0
		for i, g := range got {
			for j < hostile && !routed[j].same(g) {
				j++
			}
			if j == hostile {
				t.Fatalf("backend request %d %+v is not one srp read in order before any ambiguous one: %+v (input %q)", i, g, routed[:hostile], raw)
			}
			j++
		}
	})
}

// memConn is a client connection that sends fixed bytes and then EOF.
type memConn struct {
	net.Conn // nil: only what the guard uses is implemented
	r        io.Reader
}

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// readAll parses requests from r as the server does, until one fails.
func readAll(r io.Reader) []parsed {
	br := bufio.NewReader(r)
	var out []parsed
	for len(out) < 64 {
		req, err := http.ReadRequest(br)
		if err != nil {
			break
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			break
		}
		out = append(out, parsed{req.Method, req.RequestURI, req.Host, body})
	}
	return out
}

// FuzzGuardFraming checks the guard against net/http itself, without a
// network: the requests net/http reads through the guard are the ones it
// reads from the raw bytes, in order, up to where the guard refuses, and
// never one at or after an ambiguously framed head.
func FuzzGuardFraming(f *testing.F) {
	for _, tc := range framingCases {
		f.Add([]byte(tc.raw))
	}
	log := discardLogger()
	f.Fuzz(func(t *testing.T, raw []byte) {
		direct := readAll(bytes.NewReader(raw))
		g := guard.NewConn(&memConn{r: bytes.NewReader(raw)}, 0, log)
		guarded := readAll(g)
		if len(guarded) > len(direct) {
			t.Fatalf("through the guard %d requests, directly %d: %q", len(guarded), len(direct), raw)
		}
		for i := range guarded {
			if !guarded[i].same(direct[i]) {
				t.Fatalf("request %d through the guard %+v, directly %+v: %q", i, guarded[i], direct[i], raw)
			}
		}
		// Count the heads net/http reads before an ambiguous one.
		cr := &countingReader{r: bytes.NewReader(raw)}
		br := bufio.NewReader(cr)
		for n := 0; n < len(guarded); n++ {
			if ambiguous(raw[cr.n-br.Buffered():]) {
				t.Fatalf("request %d is framed ambiguously and passed the guard: %q", n, raw)
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				t.Fatalf("request %d passed the guard but not net/http: %v", n, err)
			}
			io.Copy(io.Discard, req.Body)
		}
	})
}
