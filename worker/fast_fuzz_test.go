package worker

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"srp/worker/upstream"
)

// The fast path is checked against net/http: the same bytes go to a worker
// with the fast path and to one without it (noFastPath), each in front of
// its own recording backend, and what the client and the backend see must
// agree, apart from the differences views documents.

// fastCase is a client's bytes; parts, when set, are written one at a time
// with a pause between them. fast is how many of its requests the fast
// path serves itself: the others are handed to net/http, which keeps the
// connection from then on. bug names a known fault the case shows.
type fastCase struct {
	name  string
	raw   string
	parts []string
	fast  int
	bug   string
}

func (c fastCase) bytes() string {
	if c.parts != nil {
		return strings.Join(c.parts, "")
	}
	return c.raw
}

// req returns a request to app.test with the given header lines.
func req(line string, headers ...string) string {
	return line + "\r\nHost: app.test\r\n" + strings.Join(append(headers, ""), "\r\n") + "\r\n"
}

func fastCases() []fastCase {
	big := strings.Repeat("b", 20<<10)
	return []fastCase{
		{name: "GET", raw: get, fast: 1},
		{name: "GET with query", raw: req("GET /a/b?x=1&y=%20z HTTP/1.1"), fast: 1},
		{name: "POST with body", raw: post("Content-Length: 5", "Content-Type: text/plain") + "hello", fast: 1},
		{name: "PUT empty body", raw: req("PUT /p HTTP/1.1", "Content-Length: 0"), fast: 1},
		{name: "GET with body", raw: req("GET /ok HTTP/1.1", "Content-Length: 3") + "abc", fast: 1},
		{name: "CL with zeros and spaces", raw: post("Content-Length:  003 ") + "abc", fast: 1},
		{name: "pipelined", raw: get + post("Content-Length: 3") + "abc" + get, fast: 3},
		{name: "pipelined five", raw: strings.Repeat(get, 5), fast: 5},
		{name: "Connection close", raw: req("GET /1 HTTP/1.1", "Connection: close") + req("GET /2 HTTP/1.1"), fast: 1},
		{name: "Connection keep-alive", raw: req("GET /1 HTTP/1.1", "Connection: keep-alive") + get, fast: 2},
		{name: "Connection names X-Foo", raw: req("GET /c HTTP/1.1", "Connection: X-Foo", "X-Foo: secret", "X-Bar: kept"), fast: 1},
		{name: "Connection names X-Forwarded-For", raw: req("GET /c HTTP/1.1", "Connection: X-Forwarded-For", "X-Forwarded-For: 10.0.0.1"), fast: 1},
		{name: "Connection names Content-Length", raw: post("Connection: Content-Length", "Content-Length: 3") + "abc" + get, fast: 2},
		{name: "Connection names Host", raw: req("GET /c HTTP/1.1", "Connection: Host") + get, fast: 2},
		{name: "Connection names X-Request-Id", raw: req("GET /c HTTP/1.1", "Connection: X-Request-Id", "X-Request-Id: abc-123"), fast: 1},
		{name: "Connection close and X-Foo", raw: req("GET /c HTTP/1.1", "Connection: close, X-Foo", "X-Foo: 1"), fast: 1},
		{name: "Connection nine tokens", raw: req("GET /c HTTP/1.1", "Connection: a, b, c, d, e, f, g, h, X-Foo", "X-Foo: 1", "A: 1") + get, fast: 2},
		{name: "Connection seventeen tokens", raw: req("GET /c HTTP/1.1", "Connection: a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, X-Foo", "X-Foo: 1", "A: 1") + get, fast: 0},
		{name: "semicolon in query", raw: req("GET /p;x=1?q=1 HTTP/1.1") + req("GET /a?x=1;y=2 HTTP/1.1") + req("GET /a?b=2&a=1;c HTTP/1.1"), fast: 1},
		{name: "Connection two lines", raw: req("GET /c HTTP/1.1", "Connection: X-A", "Connection: X-B", "X-A: 1", "X-B: 2", "X-C: 3"), fast: 1},
		{name: "request ID sane", raw: req("GET /id HTTP/1.1", "X-Request-Id: abc-123_4.5:6+7/8="), fast: 1},
		{name: "request ID insane", raw: req("GET /id HTTP/1.1", "X-Request-Id: bad id!"), fast: 1},
		{name: "request ID duplicate", raw: req("GET /id HTTP/1.1", "X-Request-Id: a", "X-Request-Id: b"), fast: 1},
		{name: "request ID too long", raw: req("GET /id HTTP/1.1", "X-Request-Id: "+strings.Repeat("a", 129)), fast: 1},
		{name: "request ID empty", raw: req("GET /id HTTP/1.1", "X-Request-Id:"), fast: 1},
		{name: "request ID lower case", raw: req("GET /id HTTP/1.1", "x-request-id: lower"), fast: 1},
		{name: "X-Forwarded-For chain", raw: req("GET /x HTTP/1.1", "X-Forwarded-For: 10.0.0.1, 10.0.0.2", "X-Forwarded-For: 10.0.0.3"), fast: 1},
		{name: "X-Forwarded-For empty", raw: req("GET /x HTTP/1.1", "X-Forwarded-For:"), fast: 1},
		{name: "forged proxy headers", raw: req("GET /x HTTP/1.1", "X-Real-Ip: 10.0.0.2", "X-Forwarded-Host: admin.test", "X-Forwarded-Proto: https"), fast: 1},
		{name: "Forwarded", raw: req("GET /x HTTP/1.1", "Forwarded: for=10.0.0.3;proto=https"), fast: 1},
		{name: "TE trailers", raw: req("GET /x HTTP/1.1", "TE: trailers"), fast: 1},
		{name: "TE gzip", raw: req("GET /x HTTP/1.1", "TE: gzip"), fast: 1},
		{name: "TE list with trailers", raw: req("GET /x HTTP/1.1", "Te: deflate, trailers"), fast: 1},
		{name: "hop-by-hop request headers", raw: req("GET /x HTTP/1.1", "Keep-Alive: timeout=5", "Proxy-Connection: keep-alive", "Proxy-Authorization: Basic eA=="), fast: 1},
		{name: "Trailer header with a length", raw: post("Trailer: X-T", "Content-Length: 3") + "abc", fast: 1},
		{name: "percent escapes", raw: req("GET /a%2Fb%41%2e%00?q=%2F HTTP/1.1"), fast: 1},
		{name: "percent invalid", raw: req("GET /a%zz HTTP/1.1"), fast: 0},
		{name: "percent short", raw: req("GET /a%4 HTTP/1.1"), fast: 0},
		{name: "percent invalid in query", raw: req("GET /a?q=%zz HTTP/1.1"), fast: 0},
		{name: "sub-delims", raw: req("GET /a'b(c)*!$;x=y,z/~u/@h:p HTTP/1.1"), fast: 1},
		{name: "pipe in path", raw: req("GET /a|b HTTP/1.1") + get, fast: 0},
		{name: "caret backtick braces", raw: req("GET /a^b`c{d} HTTP/1.1"), fast: 0},
		{name: "quote and backslash", raw: req("GET /a\"b\\c HTTP/1.1"), fast: 0},
		{name: "fragment", raw: req("GET /a?b#c HTTP/1.1"), fast: 0},
		{name: "double slash", raw: req("GET //x/../y HTTP/1.1"), fast: 1},
		{name: "query marks", raw: req("GET /a?b?c HTTP/1.1") + req("GET /a? HTTP/1.1"), fast: 2},
		{name: "8-bit target", raw: req("GET /\xc3\xa9 HTTP/1.1"), fast: 0},
		{name: "HEAD", raw: req("HEAD /h HTTP/1.1") + get, fast: 2},
		{name: "OPTIONS", raw: req("OPTIONS /o HTTP/1.1"), fast: 1},
		{name: "OPTIONS star", raw: req("OPTIONS * HTTP/1.1"), fast: 0},
		{name: "lower-case method", raw: req("get /m HTTP/1.1"), fast: 1},
		{name: "extension method", raw: req("PURGE /m HTTP/1.1"), fast: 1},
		{name: "CONNECT", raw: req("CONNECT app.test:443 HTTP/1.1"), fast: 0},
		{name: "lower-case header names", raw: "POST /l HTTP/1.1\r\nhost: app.test\r\nx-foo: a\r\ncontent-length: 3\r\nconnection: x-foo\r\n\r\nabc", fast: 1},
		{name: "duplicate headers", raw: req("GET /d HTTP/1.1", "X-A: 1", "X-A: 2", "Accept: a", "Accept: b", "Cookie: a=1", "Cookie: b=2"), fast: 1},
		{name: "header whitespace", raw: req("GET /w HTTP/1.1", "X-A:   spaced  \t", "X-B:\tx", "X-Empty:"), fast: 1},
		{name: "8-bit header value", raw: req("GET /v HTTP/1.1", "X-A: \xff\xfe"), fast: 1},
		{name: "underscore header", raw: req("GET /u HTTP/1.1", "X_Under: 1", "x-dash-lower: 2"), fast: 1},
		{name: "head just under 4 KiB", raw: req("GET /big HTTP/1.1", "X-Big: "+strings.Repeat("h", 4000)), fast: 1},
		{name: "head over 4 KiB", raw: req("GET /big HTTP/1.1", "X-Big: "+strings.Repeat("h", 5000)) + get, fast: 0},
		{name: "head of 60 KiB", raw: req("GET /big HTTP/1.1", "X-Big: "+strings.Repeat("h", 60<<10)) + get, fast: 0},
		{name: "body of 16 KiB", raw: post("Content-Length: 16000") + strings.Repeat("a", 16000) + get, fast: 2},
		{name: "body over 16 KiB", raw: post("Content-Length: 20480") + big + get, fast: 0},
		{name: "body split across writes", parts: []string{post("Content-Length: 10"), "01234", "56789", get}, fast: 2},
		{name: "head split across writes", parts: []string{"GET /split HTTP/1.1\r\nHo", "st: app.test\r\n", "\r\n"}, fast: 1},
		{name: "large body split", parts: []string{post("Content-Length: 20480") + big[:8000], big[8000:], get}, fast: 0},
		{name: "HTTP/1.0", raw: "GET /10 HTTP/1.0\r\nHost: app.test\r\n\r\n", fast: 0},
		{name: "HTTP/1.0 keep-alive", raw: "GET /10 HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n" + get, fast: 0},
		{name: "absolute-form", raw: "GET http://app.test/abs?q=1 HTTP/1.1\r\nHost: app.test\r\n\r\n" + get, fast: 0},
		{name: "Host case port dot", raw: "GET /h HTTP/1.1\r\nHost: APP.Test.:80\r\n\r\n", fast: 1},
		{name: "Host with port", raw: "GET /h HTTP/1.1\r\nHost: app.test:3000\r\n\r\n", fast: 1},
		{name: "Host unknown", raw: "GET /h HTTP/1.1\r\nHost: other.test\r\n\r\n" + get, fast: 0},
		{name: "Host redirect", raw: "GET /h?q HTTP/1.1\r\nHost: old.test\r\n\r\n" + get, fast: 0},
		{name: "Host IPv6", raw: "GET /h HTTP/1.1\r\nHost: [::1]\r\n\r\n", fast: 0},
		{name: "Host twice", raw: "GET /h HTTP/1.1\r\nHost: app.test\r\nHost: app.test\r\n\r\n", fast: 0},
		{name: "no Host", raw: "GET /h HTTP/1.1\r\n\r\n", fast: 0},
		{name: "Expect", raw: post("Expect: 100-continue", "Content-Length: 3") + "abc" + get, fast: 0},
		{name: "Upgrade h2c", raw: req("GET /up HTTP/1.1", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"), fast: 0},
		{name: "chunked body", raw: post("Transfer-Encoding: chunked") + "3\r\nabc\r\n0\r\n\r\n" + get, fast: 0},
		{name: "CL+TE", raw: post("Content-Length: 5", "Transfer-Encoding: chunked") + "0\r\n\r\n" + get, fast: 0},
		{name: "bare LF", raw: "GET /ok HTTP/1.1\nHost: app.test\n\n", fast: 0},
		{name: "fast then refused", raw: get + "GET /x HTTP/1.1\r\nHost: app.test\r\nX: a\x00b\r\n\r\n" + get, fast: 1},
		{name: "fast then handoff then fast-eligible", raw: get + req("GET /a|b HTTP/1.1") + get, fast: 1},
	}
}

// fastPair is a worker with the fast path and one without, each in front
// of its own recorder, serving app.test and a redirect from old.test.
type fastPair struct {
	fast, slow       *running
	fastRec, slowRec *recorder
	fastTap, slowTap *tap
}

func newFastPair(tb testing.TB, then http.HandlerFunc, tweak func(*Options)) *fastPair {
	tb.Helper()
	answer := func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/__probe":
			io.WriteString(w, probeAnswer)
		case then != nil:
			then(w, r)
		default:
			io.WriteString(w, "ok")
		}
	}
	p := &fastPair{fastRec: newRecorder(tb, answer), slowRec: newRecorder(tb, answer)}
	p.fastTap, p.slowTap = tapped(tb, p.fastRec), tapped(tb, p.slowRec)
	conf := func(backend string) string {
		return fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]},
			"old.test": {"Redirect": {"URL": "https://app.test", "Permanent": true}}}}`, backend)
	}
	p.fast = runGuarded(tb, conf(p.fastTap.Addr().String()), tweak)
	p.slow = runGuarded(tb, conf(p.slowTap.Addr().String()), func(o *Options) {
		if tweak != nil {
			tweak(o)
		}
		o.noFastPath = true
	})
	return p
}

// clientView is what a client saw on one connection.
type clientView struct {
	statuses []int
	bodies   []string
	backend  int  // answers that came from the backend
	closed   bool // after the last answer: the server closed, or ignored a further request
	err      string
}

func (v clientView) String() string {
	return fmt.Sprintf("statuses %v closed %v bodies %q %s", v.statuses, v.closed, v.bodies, v.err)
}

// probe is sent after a case, to learn whether the server still serves
// the connection; the pair's backends answer it with probeAnswer and
// views leaves it out.
const (
	probe       = "GET /__probe HTTP/1.1\r\nHost: app.test\r\n\r\n"
	probeAnswer = "probe"
)

// quiet is how long send waits for answers beyond those it expects.
const quiet = 10 * time.Millisecond

// readable returns the methods of the requests net/http reads whole from
// raw, and how many bytes they take.
func readable(raw []byte) (methods []string, size int) {
	cr := &countingReader{r: bytes.NewReader(raw)}
	br := bufio.NewReader(cr)
	for len(methods) < 64 {
		req, err := http.ReadRequest(br)
		if err != nil {
			break
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			break
		}
		methods = append(methods, req.Method)
		size = cr.n - br.Buffered()
	}
	return methods, size
}

// send writes parts to addr, pausing between them, and reads the answers.
// When the bytes are whole requests (always, with withProbe), it then
// sends probe and reads up to its answer, so every answer the server gives
// is seen; otherwise it reads as many answers as net/http reads requests
// from the bytes, then any more that come before the server closes or
// stays quiet for a moment.
func send(addr string, parts []string, limit time.Duration, withProbe bool) clientView {
	var v clientView
	raw := strings.Join(parts, "")
	methods, size := readable([]byte(raw))
	withProbe = withProbe || size == len(raw)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		v.err = err.Error()
		return v
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(limit))
	if withProbe {
		parts = append(slices.Clip(parts), probe)
	}
	go func() { // the server may answer, or close, before reading it all
		for i, p := range parts {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := io.WriteString(conn, p); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(conn)
	for {
		extra := !withProbe && len(v.statuses) >= len(methods)
		if extra {
			conn.SetReadDeadline(time.Now().Add(quiet))
		}
		method := "GET"
		if n := len(v.statuses); n < len(methods) {
			method = methods[n]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			switch {
			case !upstream.IsTimeout(err):
				v.closed = true
			case !extra:
				v.err = "timed out waiting for an answer"
			}
			return v
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 200 {
			continue
		}
		if withProbe && string(body) == probeAnswer && resp.Header.Get("X-Backend") != "" {
			return v
		}
		if err != nil {
			v.err = "body: " + err.Error()
		}
		if resp.Header.Get("X-Backend") != "" {
			v.backend++
		}
		v.statuses, v.bodies = append(v.statuses, resp.StatusCode), append(v.bodies, string(body))
	}
}

// backendView is a request as the backend parsed it, with the headers that
// legitimately differ between the two paths removed or reduced.
type backendView struct {
	method, uri, host, body string
	header                  http.Header
}

func views(rec *recorder) []backendView {
	var out []backendView
	for _, s := range rec.requests() {
		// A body that broke on the way was streamed by net/http (the
		// fast path holds whole bodies only) as far as it got by then.
		if s.uri == "/__probe" || s.bodyErr != nil {
			continue
		}
		h := s.header.Clone()
		// Generated IDs differ by their counter; a kept one must be equal.
		if id := h.Values("X-Request-Id"); len(id) == 1 && strings.HasPrefix(id[0], idPrefix) && upstream.SaneRequestID(id[0]) {
			h["X-Request-Id"] = []string{"generated"}
		}
		// The fast path passes the client's Content-Length line as it
		// came ("003", or 0 on a GET); net/http writes the length it
		// parsed and none for an empty GET. The body is compared instead.
		h.Del("Content-Length")
		// ReverseProxy drops Trailer with the hop-by-hop headers because
		// it re-frames bodies; the fast path forwards a body as it is
		// framed, so it forwards Trailer too (it means nothing without
		// chunks, and chunked requests go to net/http).
		h.Del("Trailer")
		out = append(out, backendView{s.method, s.uri, s.host, string(s.body), h})
	}
	return out
}

// diffViews describes how two backends' views differ, or returns "".
func diffViews(fast, slow []backendView) string {
	var b strings.Builder
	if len(fast) != len(slow) {
		fmt.Fprintf(&b, "fast path's backend got %d requests, net/http's %d\n", len(fast), len(slow))
	}
	for i := range min(len(fast), len(slow)) {
		f, s := fast[i], slow[i]
		if f.method != s.method || f.uri != s.uri || f.host != s.host || f.body != s.body {
			fmt.Fprintf(&b, "request %d: fast %q %q %q body %q; net/http %q %q %q body %q\n",
				i, f.method, f.uri, f.host, f.body, s.method, s.uri, s.host, s.body)
		}
		for _, k := range unionKeys(f.header, s.header) {
			if !slices.Equal(f.header[k], s.header[k]) {
				fmt.Fprintf(&b, "request %d header %s: fast %q, net/http %q\n", i, k, f.header[k], s.header[k])
			}
		}
	}
	return b.String()
}

func unionKeys(a, b http.Header) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// compare sends the same case to both workers at once and returns what
// each client saw.
func (p *fastPair) compare(parts []string, limit time.Duration, withProbe bool) (fast, slow clientView) {
	var wg sync.WaitGroup
	wg.Go(func() { fast = send(p.fast.addr, parts, limit, withProbe) })
	wg.Go(func() { slow = send(p.slow.addr, parts, limit, withProbe) })
	wg.Wait()
	return fast, slow
}

func (p *fastPair) reset() {
	p.fastRec.reset()
	p.slowRec.reset()
	p.fastTap.reset()
	p.slowTap.reset()
}
