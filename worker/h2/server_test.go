package h2_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"srp/worker/h2"
)

// requestView is what a handler saw of its request.
type requestView struct {
	method, path, rawQuery, requestURI, host, proto string
	protoMajor, protoMinor                          int
	header                                          http.Header
	cookies                                         []string
	contentLength                                   int64
	noBody                                          bool
	body                                            string
	bodyErr                                         error
	remoteAddr                                      string
	tls                                             *tls.ConnectionState
}

func viewOf(r *http.Request) requestView {
	v := requestView{method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery, requestURI: r.RequestURI,
		host: r.Host, proto: r.Proto, protoMajor: r.ProtoMajor, protoMinor: r.ProtoMinor, header: r.Header.Clone(),
		contentLength: r.ContentLength, noBody: r.Body == http.NoBody, remoteAddr: r.RemoteAddr, tls: r.TLS}
	for _, ck := range r.Cookies() {
		v.cookies = append(v.cookies, ck.String())
	}
	b, err := io.ReadAll(r.Body)
	v.body, v.bodyErr = string(b), err
	return v
}

func TestRequestFields(t *testing.T) {
	seen := make(chan requestView, 1)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- viewOf(r) }), nil)
	c := ts.client(t, nil)
	do := func(t *testing.T, req *http.Request) requestView {
		t.Helper()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return recv(t, seen, time.Second, "request seen by the handler")
	}

	t.Run("head and body", func(t *testing.T) {
		req, _ := http.NewRequest("PATCH", c.url+"/p/a%20th?q=1&x=y", strings.NewReader("hello"))
		req.Host = "example.test:8443"
		req.Header.Set("X-Custom-Thing", "v")
		req.Header["x-weird-NAME"] = []string{"w"}
		req.Header.Set("Accept-Language", "en")
		req.Header.Set("Cookie", "a=1; b=2") // the client splits it into two fields
		v := do(t, req)
		if v.method != "PATCH" || v.path != "/p/a th" || v.rawQuery != "q=1&x=y" || v.requestURI != "/p/a%20th?q=1&x=y" {
			t.Errorf("method %q, path %q, query %q, RequestURI %q", v.method, v.path, v.rawQuery, v.requestURI)
		}
		if v.host != "example.test:8443" {
			t.Errorf("Host %q, want :authority example.test:8443", v.host)
		}
		if v.proto != "HTTP/2.0" || v.protoMajor != 2 || v.protoMinor != 0 {
			t.Errorf("Proto %q %d.%d", v.proto, v.protoMajor, v.protoMinor)
		}
		for k := range v.header {
			if k != http.CanonicalHeaderKey(k) {
				t.Errorf("header key %q not canonical", k)
			}
		}
		if got := v.header["X-Custom-Thing"]; !slices.Equal(got, []string{"v"}) {
			t.Errorf("X-Custom-Thing %q", got)
		}
		if got := v.header["X-Weird-Name"]; !slices.Equal(got, []string{"w"}) {
			t.Errorf("X-Weird-Name %q (header %v)", got, v.header)
		}
		if got := v.header["Accept-Language"]; !slices.Equal(got, []string{"en"}) {
			t.Errorf("Accept-Language %q", got)
		}
		if got := v.header["Cookie"]; !slices.Equal(got, []string{"a=1; b=2"}) {
			t.Errorf("Cookie %q, want one field a=1; b=2", got)
		}
		if v.contentLength != 5 || v.body != "hello" || v.bodyErr != nil {
			t.Errorf("ContentLength %d, body %q, %v", v.contentLength, v.body, v.bodyErr)
		}
		if l := c.locals(); len(l) != 1 || v.remoteAddr != l[0] {
			t.Errorf("RemoteAddr %q, client's connections from %q", v.remoteAddr, l)
		}
		if v.tls != nil {
			t.Errorf("TLS state %+v on a plain connection", v.tls)
		}
	})

	t.Run("unknown length", func(t *testing.T) {
		req, _ := http.NewRequest("POST", c.url+"/", io.NopCloser(strings.NewReader("abc")))
		if v := do(t, req); v.contentLength != -1 || v.body != "abc" || v.bodyErr != nil {
			t.Errorf("ContentLength %d, body %q, %v; want -1, abc", v.contentLength, v.body, v.bodyErr)
		}
	})

	t.Run("no body", func(t *testing.T) {
		req, _ := http.NewRequest("GET", c.url+"/", nil)
		if v := do(t, req); v.contentLength != 0 || !v.noBody || v.body != "" || v.bodyErr != nil {
			t.Errorf("ContentLength %d, NoBody %v, body %q, %v", v.contentLength, v.noBody, v.body, v.bodyErr)
		}
	})

	// The fields exactly as a client may send them: cookies in several
	// fields, which net/http's handlers expect as one line.
	t.Run("cookie fields", func(t *testing.T) {
		rc := dialRaw(t, ts.addr, true)
		rc.request(1, "GET", "/raw", true, "cookie", "a=1", "x-lower", "l", "cookie", "b=2")
		if r := rc.response(1); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		v := recv(t, seen, time.Second, "request seen by the handler")
		if got := v.header["Cookie"]; !slices.Equal(got, []string{"a=1; b=2"}) {
			t.Errorf("Cookie %q, want [a=1; b=2]", got)
		}
		if !slices.Equal(v.cookies, []string{"a=1", "b=2"}) {
			t.Errorf("Cookies() %q", v.cookies)
		}
		if got := v.header["X-Lower"]; !slices.Equal(got, []string{"l"}) || v.host != "example.test" {
			t.Errorf("X-Lower %q, Host %q", got, v.host)
		}
		if v.remoteAddr != rc.nc.LocalAddr().String() {
			t.Errorf("RemoteAddr %q, want %q", v.remoteAddr, rc.nc.LocalAddr())
		}
	})
}

func TestRequestTLS(t *testing.T) {
	seen := make(chan requestView, 1)
	ts := serveTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- viewOf(r) }), nil)
	c := ts.client(t, nil)
	resp, err := c.Get(c.url + "/secure")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	v := recv(t, seen, time.Second, "request seen by the handler")
	if v.tls == nil {
		t.Fatal("r.TLS is nil over TLS")
	}
	if !v.tls.HandshakeComplete || v.tls.NegotiatedProtocol != "h2" || v.tls.Version < tls.VersionTLS12 {
		t.Errorf("TLS state: handshake complete %v, protocol %q, version %x", v.tls.HandshakeComplete, v.tls.NegotiatedProtocol, v.tls.Version)
	}
	if v.proto != "HTTP/2.0" || v.path != "/secure" {
		t.Errorf("Proto %q, path %q", v.proto, v.path)
	}
	if l := c.locals(); len(l) != 1 || v.remoteAddr != l[0] {
		t.Errorf("RemoteAddr %q, client's connections from %q", v.remoteAddr, l)
	}
}

// slowSum reads a body in small pieces with pauses, so the client fills
// the windows between reads.
func slowSum(r io.Reader) (string, int, error) {
	h := sha256.New()
	buf := make([]byte, 8<<10)
	n := 0
	time.Sleep(30 * time.Millisecond)
	for {
		m, err := r.Read(buf)
		h.Write(buf[:m])
		if n/(256<<10) != (n+m)/(256<<10) {
			time.Sleep(2 * time.Millisecond)
		}
		n += m
		if err == io.EOF {
			return fmt.Sprintf("%x", h.Sum(nil)), n, nil
		}
		if err != nil {
			return "", n, err
		}
	}
}

// Bodies past the stream's (256 KiB) and the connection's (1 MiB) windows
// arrive whole, as long as the handler reads; a stream whose handler does
// not read holds its own window only.
func TestLargeUploads(t *testing.T) {
	const size = 5 << 20
	upload := func(t *testing.T, c *client, path string, seed uint64) {
		body := payload(size, seed)
		resp, err := c.Post(c.url+path, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if want := fmt.Sprintf("%x %d", sha256.Sum256(body), size); err != nil || string(got) != want {
			t.Errorf("%s: handler read %q (%v), want %q", path, got, err, want)
		}
	}
	handler := func(before map[string]chan struct{}, after map[string]chan struct{}) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ch := before[r.URL.Path]; ch != nil {
				select {
				case <-ch:
				case <-r.Context().Done():
					return
				}
			}
			sum, n, err := slowSum(r.Body)
			if ch := after[r.URL.Path]; ch != nil {
				close(ch)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%s %d", sum, n)
		})
	}

	t.Run("one", func(t *testing.T) {
		ts := serve(t, handler(nil, nil), nil)
		upload(t, ts.client(t, nil), "/one", 1)
	})

	t.Run("two at once", func(t *testing.T) {
		bRead := make(chan struct{})
		// /a reads nothing until /b has read all of its body.
		ts := serve(t, handler(map[string]chan struct{}{"/a": bRead}, map[string]chan struct{}{"/b": bRead}), nil)
		c := ts.client(t, nil)
		if resp, err := c.Get(c.url + "/warm"); err == nil {
			_ = resp.Body.Close()
		}
		var wg sync.WaitGroup
		for i, path := range []string{"/a", "/b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				upload(t, c, path, uint64(i+2))
			}()
		}
		wg.Wait()
		if n := ts.accepted.Load(); n != 1 {
			t.Errorf("%d connections, want both uploads on one", n)
		}
	})
}

// A 5 MiB answer to a client granting 16 KiB per stream and 64 KiB on
// the connection, given back as it reads: every byte arrives, and no
// frame oversteps a window.
func TestLargeResponseSmallWindow(t *testing.T) {
	body := payload(5<<20, 9)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for p := body; len(p) > 0; p = p[min(len(p), 32<<10):] {
			if _, err := w.Write(p[:min(len(p), 32<<10)]); err != nil {
				return
			}
		}
	}), nil)
	c := dialRaw(t, ts.addr, true, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 16 << 10})
	c.request(1, "GET", "/big", true)
	c.must(20*time.Second, "end of the 5 MiB answer", func() bool { s := c.streamLocked(1); return s.ended || s.reset })
	r := c.result(1)
	if r.status != 200 || r.reset || !bytes.Equal(r.body, body) {
		t.Errorf("status %d, reset %v (%v), %d bytes, same as sent: %v", r.status, r.reset, r.code, len(r.body), bytes.Equal(r.body, body))
	}
	if r.maxData > 16<<10 {
		t.Errorf("a DATA frame of %d bytes, past the stream window and the 16 KiB frame size", r.maxData)
	}
	c.mu.Lock()
	if c.overrun != "" {
		t.Error(c.overrun)
	}
	c.mu.Unlock()
}

// A handler panicking resets its stream, and only it.
func TestHandlerPanic(t *testing.T) {
	var logs lockedBuffer
	ts := serve(t, http.HandlerFunc(panicky), func(s *h2.Server) { s.Log = slog.New(slog.NewTextHandler(&logs, nil)) })
	c := dialRaw(t, ts.addr, true)
	for i, path := range []string{"/panic", "/abort", "/partial"} {
		id := uint32(2*i + 1)
		c.request(id, "GET", path, true)
		if r := c.response(id); !r.reset || r.code != http2.ErrCodeInternal {
			t.Errorf("%s: reset %v with %v, ended %v; want RST_STREAM INTERNAL_ERROR", path, r.reset, r.code, r.ended)
		}
	}
	if r := c.result(5); r.status != 200 || string(r.body) != "part" {
		t.Errorf("/partial: status %d, body %q before the reset; want 200, part", r.status, r.body)
	}
	c.request(7, "GET", "/ok", true)
	if r := c.response(7); r.status != 200 || string(r.body) != "ok" {
		t.Errorf("after the panics: status %d, body %q, reset %v", r.status, r.body, r.reset)
	}
	if g := c.goAwaysSeen(); len(g) != 0 || ts.accepted.Load() != 1 {
		t.Errorf("GOAWAY %v, %d connections: the connection should have gone on", g, ts.accepted.Load())
	}
	// As net/http: http.ErrAbortHandler is a quiet way out, other panics are logged.
	if n := strings.Count(logs.String(), "http2 handler panic"); n != 2 || strings.Contains(logs.String(), "abort Handler") {
		t.Errorf("%d panics logged, want 2 (not the ErrAbortHandler one):\n%s", n, logs.String())
	}
}

func panicky(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/panic":
		panic("boom")
	case "/abort":
		panic(http.ErrAbortHandler)
	case "/partial":
		_, _ = io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		panic("late boom")
	}
	_, _ = io.WriteString(w, "ok")
}

// A Server need not have a Log: a handler's panic must still reset its
// stream only. Checked in a child process, since a panic escaping the
// recovery ends the process.
func TestHandlerPanicWithoutLog(t *testing.T) {
	if os.Getenv("H2_TEST_PANIC_CHILD") == "1" {
		ts := serve(t, http.HandlerFunc(panicky), func(s *h2.Server) { s.Log = nil })
		c := dialRaw(t, ts.addr, true)
		c.request(1, "GET", "/panic", true)
		if r := c.response(1); !r.reset || r.code != http2.ErrCodeInternal {
			t.Errorf("reset %v with %v; want RST_STREAM INTERNAL_ERROR", r.reset, r.code)
		}
		c.request(3, "GET", "/ok", true)
		if r := c.response(3); r.status != 200 {
			t.Errorf("after the panic: status %d, reset %v", r.status, r.reset)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHandlerPanicWithoutLog$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "H2_TEST_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		lines := strings.SplitN(string(out), "\n", 25)
		t.Errorf("with Log unset, a handler's panic ended the process (%v):\n%s", err, strings.Join(lines[:min(len(lines), 24)], "\n"))
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
