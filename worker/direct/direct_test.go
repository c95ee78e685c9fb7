package direct

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"srp/worker/upstream"
)

// backend is a scripted HTTP/1.1 backend on 127.0.0.1: answer gets each
// request head read on a connection, numbered across the backend from 0,
// and returns the bytes to send and whether to close after them.
type backend struct {
	addr    string
	accepts atomic.Int32
}

func newBackend(t testing.TB, answer func(n int, req *http.Request) (string, bool)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	b := &backend{addr: ln.Addr().String()}
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepts.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					out, closeAfter := answer(int(n.Add(1)-1), req)
					if _, err := io.WriteString(c, out); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return b
}

// reference is net/http's Transport set up as the worker's fallback is.
func reference(t testing.TB, timeout time.Duration) *http.Transport {
	tr := &http.Transport{Proxy: nil, DisableCompression: true, ResponseHeaderTimeout: timeout,
		MaxResponseHeaderBytes: maxResponseHead}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func newDirect(t testing.TB, fallback http.RoundTripper, timeout time.Duration) *Transport {
	d := New(fallback, timeout)
	t.Cleanup(d.CloseIdleConnections)
	return d
}

// outcome is everything a proxy passes on from one exchange.
type outcome struct {
	Err      bool
	Status   int
	Header   http.Header
	Body     string
	BodyErr  bool
	Trailer  http.Header
	Infos    []int
	Length   int64
	Close    bool
	Overflow bool // the body read on past what the response framed
}

func exchange(t testing.TB, rt http.RoundTripper, method, addr string) outcome {
	t.Helper()
	var o outcome
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { o.Infos = append(o.Infos, code); return nil },
	})
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.test"
	req.Header["User-Agent"] = []string{""}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		o.Err = true
		return o
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	o.Status, o.Header, o.Body, o.BodyErr = resp.StatusCode, resp.Header, string(b), err != nil
	o.Trailer, o.Length, o.Close = resp.Trailer, resp.ContentLength, resp.Close
	return o
}

// responses a backend may send, each answering one request and then
// closing the connection.
var responses = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
	"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
	"HTTP/1.0 200 OK\r\n\r\nold",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
	"HTTP/1.1 abc\r\n\r\n",
	"garbage\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Len",
	"",
}

// The direct transport passes on what net/http's Transport does, for
// every response above, to GET and HEAD requests.
func TestSameAsTransport(t *testing.T) {
	// net/http's Transport complains of a body after a HEAD answer.
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	for _, method := range []string{"GET", "HEAD"} {
		for i, raw := range responses {
			t.Run(fmt.Sprintf("%s/%d", method, i), func(t *testing.T) {
				be := newBackend(t, func(int, *http.Request) (string, bool) { return raw, true })
				want := exchange(t, reference(t, time.Second), method, be.addr)
				got := exchange(t, newDirect(t, nil, time.Second), method, be.addr)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("response %q\n got  %+v\n want %+v", raw, got, want)
				}
			})
		}
	}
}

// The request a backend gets is the one net/http's Transport sends.
func TestSameRequest(t *testing.T) {
	var heads [2]string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i, rt := range []http.RoundTripper{reference(t, time.Second), newDirect(t, nil, time.Second)} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				heads[i] += line
				if err != nil || line == "\r\n" {
					break
				}
			}
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}()
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/p?q=1", nil)
		req.Host = "app.test"
		req.Header = http.Header{"User-Agent": {""}, "X-Forwarded-For": {"10.0.0.1, 127.0.0.1"},
			"Accept": {"*/*"}, "Te": {"trailers"}, "Cookie": {"a=1", "b=2"}}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		<-done
	}
	if heads[0] != heads[1] || !strings.HasPrefix(heads[1], "POST /p?q=1 HTTP/1.1\r\nHost: app.test\r\n") {
		t.Errorf("direct sent\n%q\nnet/http sent\n%q", heads[1], heads[0])
	}
}

// Kept connections are reused, and not after the backend asked to close
// or sent more than its answer.
func TestReuse(t *testing.T) {
	for _, tc := range []struct {
		answer  string
		accepts int32
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 1},
		{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 5},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSTRAY", 5},
	} {
		be := newBackend(t, func(int, *http.Request) (string, bool) { return tc.answer, false })
		d := newDirect(t, nil, time.Second)
		for range 5 {
			if o := exchange(t, d, "GET", be.addr); o.Err || o.Body != "ok" {
				t.Fatalf("%q: %+v", tc.answer, o)
			}
		}
		if n := be.accepts.Load(); n != tc.accepts {
			t.Errorf("%q: %d connections, want %d", tc.answer, n, tc.accepts)
		}
	}
}

// A kept connection the backend closed, idle or as the request arrived,
// costs an idempotent request nothing; one that is not idempotent fails,
// since the backend may have acted on it.
func TestStaleConnection(t *testing.T) {
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	// The second request on the first connection finds it closed.
	be := newBackend(t, func(n int, _ *http.Request) (string, bool) { return ok, n == 0 })
	d := newDirect(t, nil, time.Second)
	for range 2 {
		if o := exchange(t, d, "GET", be.addr); o.Err {
			t.Fatalf("%+v", o)
		}
	}
	for _, tc := range []struct {
		method string
		fail   bool
	}{{"GET", false}, {"POST", true}} {
		// The backend reads the second request and closes without an answer.
		closer := newBackend(t, func(n int, _ *http.Request) (string, bool) {
			if n == 1 {
				return "", true
			}
			return ok, false
		})
		d := newDirect(t, nil, time.Second)
		if o := exchange(t, d, tc.method, closer.addr); o.Err {
			t.Fatalf("first %s: %+v", tc.method, o)
		}
		if o := exchange(t, d, tc.method, closer.addr); o.Err != tc.fail {
			t.Errorf("%s on a connection closed under it: failed %v, want %v", tc.method, o.Err, tc.fail)
		}
	}
}

// A request with a body or an upgrade goes to the fallback; it must be
// able to send both ways at once.
func TestFallback(t *testing.T) {
	var used atomic.Int32
	fb := roundTripFunc(func(*http.Request) (*http.Response, error) {
		used.Add(1)
		return nil, errors.New("fallback")
	})
	d := newDirect(t, fb, time.Second)
	withBody, _ := http.NewRequest("POST", "http://127.0.0.1:1/", strings.NewReader("x"))
	upgrade, _ := http.NewRequest("GET", "http://127.0.0.1:1/", nil)
	upgrade.Header.Set("Connection", "Upgrade")
	upgrade.Header.Set("Upgrade", "websocket")
	for _, req := range []*http.Request{withBody, upgrade} {
		if _, err := d.RoundTrip(req); err == nil || err.Error() != "fallback" {
			t.Errorf("%s %v: %v", req.Method, req.Header, err)
		}
	}
	if used.Load() != 2 {
		t.Errorf("fallback used %d times, want 2", used.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A backend that never answers costs the timeout, then a timeout error;
// a client that leaves ends the wait at once, as a cancellation.
func TestWaitEnds(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	be := newBackend(t, func(int, *http.Request) (string, bool) { <-hold; return "", true })
	d := newDirect(t, nil, 200*time.Millisecond)
	req, _ := http.NewRequest("GET", "http://"+be.addr+"/", nil)
	start := time.Now()
	_, err := d.RoundTrip(req)
	if !upstream.IsTimeout(err) || upstream.StatusOf(err) != http.StatusGatewayTimeout {
		t.Errorf("no answer: %v, want a timeout", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the timeout took %v", took)
	}

	d = newDirect(t, nil, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://"+be.addr+"/", nil)
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if _, err := d.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Errorf("client gone: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the cancellation took %v", took)
	}
}

// A client that leaves mid-body ends the copy with a cancellation, and
// that connection is not kept.
func TestCancelMidBody(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	be := newBackend(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false
	})
	d := newDirect(t, nil, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+be.addr+"/", nil)
	resp, err := d.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Errorf("read after the client left: %v, want context.Canceled", err)
	}
	resp.Body.Close()
	if n := len(d.idle[be.addr]); n != 0 {
		t.Errorf("%d connections kept", n)
	}
}

// A response head past the limit is refused; 1xx heads passed on each
// get a limit of their own.
func TestHeadLimit(t *testing.T) {
	big := "X-Big: " + strings.Repeat("a", maxResponseHead) + "\r\n"
	info := "HTTP/1.1 103 Early Hints\r\nX-Half: " + strings.Repeat("a", maxResponseHead*2/3) + "\r\n\r\n"
	for _, tc := range []struct {
		answer string
		fail   bool
	}{
		{"HTTP/1.1 200 OK\r\n" + big + "Content-Length: 0\r\n\r\n", true},
		{info + info + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	} {
		be := newBackend(t, func(int, *http.Request) (string, bool) { return tc.answer, true })
		o := exchange(t, newDirect(t, nil, 5*time.Second), "GET", be.addr)
		if o.Err != tc.fail {
			t.Errorf("%.40q: %+v", tc.answer, o)
		}
	}
}

// CloseIdleConnections closes the kept connections, and none is kept
// after it.
func TestCloseIdle(t *testing.T) {
	be := newBackend(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	d := newDirect(t, nil, time.Second)
	exchange(t, d, "GET", be.addr)
	c := d.idle[be.addr][0]
	d.CloseIdleConnections()
	if _, err := c.Conn.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("kept connection after close: %v", err)
	}
	exchange(t, d, "GET", be.addr)
	if len(d.idle) != 0 {
		t.Errorf("kept %d after close", len(d.idle))
	}
}

// FuzzSameAsTransport: for any bytes a backend answers with, the direct
// transport passes on what net/http's Transport does, each on a new
// connection. The exceptions are refused: a 101, which net/http hands on
// as a switch nobody asked for, and a status below 100, on which net/http's
// server would panic.
func FuzzSameAsTransport(f *testing.F) {
	for _, raw := range responses {
		f.Add(raw, false)
		f.Add(raw, true)
	}
	f.Add("HTTP/1.1 101 Switching Protocols\r\n\r\n", false)
	f.Add("HTTP/1.1 000 x\n\nbody", false)
	log.SetOutput(io.Discard) // net/http's complaints about the bytes
	f.Cleanup(func() { log.SetOutput(os.Stderr) })
	var answer atomic.Pointer[string]
	be := newBackend(f, func(int, *http.Request) (string, bool) { return *answer.Load(), true })
	ref := reference(f, time.Second)
	d := newDirect(f, nil, time.Second)
	f.Fuzz(func(t *testing.T, raw string, head bool) {
		answer.Store(&raw)
		method := "GET"
		if head {
			method = "HEAD"
		}
		want := exchange(t, ref, method, be.addr)
		ref.CloseIdleConnections()
		got := exchange(t, d, method, be.addr)
		d.CloseIdleConnections()
		if !want.Err && (want.Status == http.StatusSwitchingProtocols || want.Status < 100) {
			if !got.Err {
				t.Errorf("%q: status %d passed on: %+v", raw, want.Status, got)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s, response %q\n got  %+v\n want %+v", method, raw, got, want)
		}
	})
}

// A client that leaves while the head is being read, after the last
// socket read, is not forgotten when the head's deadline is cleared: the
// body read ends at once instead of waiting on a backend that sends
// nothing more.
func TestCancelAfterHead(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	be := newBackend(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false
	})
	d := newDirect(t, nil, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(int, textproto.MIMEHeader) error {
			cancel()
			time.Sleep(50 * time.Millisecond) // the wake-up runs before the head is done
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+be.addr+"/", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := d.RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("client gone during the head: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the body read waited on the backend after the client left")
	}
}

// Close during a Read, from another goroutine, ends the Read at once and
// keeps no connection; nothing is read into a buffer given up.
func TestCloseDuringRead(t *testing.T) {
	be := newBackend(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false
	})
	d := newDirect(t, nil, time.Second)
	for range 20 {
		req, _ := http.NewRequest("GET", "http://"+be.addr+"/", nil)
		resp, err := d.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(resp.Body)
			done <- err
		}()
		time.Sleep(5 * time.Millisecond)
		resp.Body.Close()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("read of a closed body ended without an error")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Close did not end the Read")
		}
		resp.Body.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nIdle != 0 {
		t.Errorf("%d connections kept", d.nIdle)
	}
}
