package h2_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The response head as net/http's server would make it: lengths where the
// handler's answer is known whole, no body where none is allowed, a
// sniffed Content-Type and a Date where the handler set none.
func TestResponseHeads(t *testing.T) {
	const html = "<html><body>hi</body></html>"
	writeErr := map[string]chan error{"/204": make(chan error, 1), "/304": make(chan error, 1)}
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sniff":
			_, _ = io.WriteString(w, html)
		case "/typed":
			w.Header().Set("Content-Type", "application/x-thing")
			_, _ = io.WriteString(w, "<html>")
		case "/head-declared":
			w.Header().Set("Content-Length", "1234")
		case "/head-written":
			_, _ = io.WriteString(w, "0123456789")
		case "/204", "/304":
			code, _ := strconv.Atoi(r.URL.Path[1:])
			w.WriteHeader(code)
			_, err := w.Write([]byte("x"))
			writeErr[r.URL.Path] <- err
		}
	}), nil)
	const absent, anyValue = "(absent)", "(any)"
	c := dialRaw(t, ts.addr, true)
	for i, tc := range []struct {
		method, path        string
		status              int
		length, ctype, body string
	}{
		{"GET", "/empty", 200, "0", absent, ""},
		{"GET", "/sniff", 200, strconv.Itoa(len(html)), "text/html; charset=utf-8", html},
		{"GET", "/typed", 200, "6", "application/x-thing", "<html>"},
		{"HEAD", "/head-declared", 200, "1234", absent, ""},
		{"HEAD", "/head-written", 200, "10", anyValue, ""},
		{"GET", "/204", 204, absent, absent, ""},
		{"GET", "/304", 304, absent, absent, ""},
	} {
		id := uint32(2*i + 1)
		c.request(id, tc.method, tc.path, true)
		r := c.response(id)
		field := func(name string) string {
			if v, ok := r.header[name]; ok {
				return v[0]
			}
			return absent
		}
		if r.status != tc.status || r.reset || string(r.body) != tc.body {
			t.Errorf("%s %s: status %d, reset %v, body %q; want %d, %q", tc.method, tc.path, r.status, r.reset, r.body, tc.status, tc.body)
		}
		if got := field("Content-Length"); got != tc.length {
			t.Errorf("%s %s: content-length %s, want %s", tc.method, tc.path, got, tc.length)
		}
		if got := field("Content-Type"); tc.ctype != anyValue && got != tc.ctype {
			t.Errorf("%s %s: content-type %s, want %s", tc.method, tc.path, got, tc.ctype)
		}
		if tc.body == "" && (!r.headEnded || r.dataFrames > 0) {
			t.Errorf("%s %s: HEADERS ended the stream: %v, %d DATA frames; want the head alone", tc.method, tc.path, r.headEnded, r.dataFrames)
		}
		if d, err := http.ParseTime(field("Date")); err != nil || time.Since(d).Abs() > 5*time.Second {
			t.Errorf("%s %s: date %q", tc.method, tc.path, field("Date"))
		}
	}
	for path, ch := range writeErr {
		if err := recv(t, ch, time.Second, path+" handler's write"); !errors.Is(err, http.ErrBodyNotAllowed) {
			t.Errorf("%s: Write returned %v, want http.ErrBodyNotAllowed", path, err)
		}
	}
}

// Request trailers reach the handler once it has read the body, declared
// ones only; response trailers, declared or by http.TrailerPrefix, reach
// the client as trailers and not in the head.
func TestTrailers(t *testing.T) {
	type seen struct{ before, after http.Header }
	got := make(chan seen, 1)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			before := r.Trailer.Clone()
			_, _ = io.ReadAll(r.Body)
			got <- seen{before, r.Trailer.Clone()}
		case "/short", "/long":
			w.Header().Set("Trailer", "X-Sum")
			_, _ = w.Write(payload(map[string]int{"/short": 5, "/long": 64 << 10}[r.URL.Path], 3))
			w.Header().Set("X-Sum", "abc")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		}
	}), nil)
	c := ts.client(t, nil)

	t.Run("request", func(t *testing.T) {
		req, _ := http.NewRequest("POST", c.url+"/upload", strings.NewReader("hello"))
		req.Trailer = http.Header{"X-Req-Sum": {"123"}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		s := recv(t, got, time.Second, "handler's trailers")
		if v, ok := s.before["X-Req-Sum"]; !ok || len(v) != 0 {
			t.Errorf("before the body's end: r.Trailer %v, want X-Req-Sum declared without a value", s.before)
		}
		if s.after.Get("X-Req-Sum") != "123" {
			t.Errorf("after the body's end: r.Trailer %v, want X-Req-Sum: 123", s.after)
		}
	})

	t.Run("request undeclared", func(t *testing.T) {
		rc := dialRaw(t, ts.addr, true)
		rc.request(1, "POST", "/upload", false, "trailer", "x-a")
		rc.data(1, false, []byte("hello"))
		rc.headers(1, true, "x-a", "1", "x-b", "2")
		rc.response(1)
		s := recv(t, got, time.Second, "handler's trailers")
		if s.after.Get("X-A") != "1" || s.after["X-B"] != nil {
			t.Errorf("r.Trailer %v, want X-A: 1 only", s.after)
		}
	})

	for _, path := range []string{"/short", "/long"} {
		t.Run("response "+path[1:], func(t *testing.T) {
			resp, err := c.Get(c.url + path)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"X-Sum", "X-Late", http.TrailerPrefix + "X-Late"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("%s: %s: %q in the response head; it was set after the body was written, as a trailer", path, k, v)
				}
			}
			_, _ = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.Trailer.Get("X-Sum") != "abc" || resp.Trailer.Get("X-Late") != "late" {
				t.Errorf("%s: trailers %v, want X-Sum: abc and X-Late: late", path, resp.Trailer)
			}
		})
	}
}

// A client asking for 100 Continue gets it only once the handler reads,
// and only once.
func TestExpectContinue(t *testing.T) {
	proceed := make(chan struct{})
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-proceed:
		case <-r.Context().Done():
			return
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}), nil)
	c := dialRaw(t, ts.addr, true)
	c.request(1, "POST", "/echo", false, "content-length", "5", "expect", "100-continue")
	c.ping()
	if c.await(100*time.Millisecond, func() bool { s := c.streamLocked(1); return len(s.info) > 0 || s.status != 0 }) {
		r := c.result(1)
		t.Fatalf("before the handler read: 1xx %v, status %d", r.info, r.status)
	}
	close(proceed)
	c.must(5*time.Second, "100 Continue", func() bool { return len(c.streamLocked(1).info) > 0 })
	if r := c.result(1); r.info[0] != 100 || r.status != 0 {
		t.Fatalf("first answer %v, status %d; want 100 before the body is sent", r.info, r.status)
	}
	c.data(1, true, []byte("hello"))
	if r := c.response(1); r.status != 200 || string(r.body) != "hello" || len(r.info) != 1 {
		t.Errorf("status %d, body %q, 1xx %v; want 200, hello, [100]", r.status, r.body, r.info)
	}
}

// A 103 goes out at once, with the fields set so far, ahead of the
// answer.
func TestEarlyHints(t *testing.T) {
	const link = "</style.css>; rel=preload; as=style"
	hinted := make(chan struct{})
	var seenFirst atomic.Bool
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", link)
		w.WriteHeader(http.StatusEarlyHints)
		select {
		case <-hinted:
			seenFirst.Store(true)
		case <-time.After(5 * time.Second):
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok")
	}), nil)
	c := ts.client(t, nil)
	var mu sync.Mutex
	var hintOnce sync.Once
	var codes []int
	var links []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		codes, links = append(codes, code), append(links, h.Get("Link"))
		mu.Unlock()
		if code == http.StatusEarlyHints {
			hintOnce.Do(func() { close(hinted) })
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", c.url+"/", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(codes) != 1 || codes[0] != 103 || links[0] != link {
		t.Errorf("1xx answers %v with Link %q; want one 103 with %q", codes, links, link)
	}
	if !seenFirst.Load() {
		t.Error("the 103 was not sent before the handler went on")
	}
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("status %d, body %q", resp.StatusCode, body)
	}
}

// Flush sends what was written at once, though the handler has not
// returned.
func TestFlush(t *testing.T) {
	gotFirst := make(chan struct{})
	var flushed atomic.Bool
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-gotFirst:
			flushed.Store(true)
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "second")
	}), nil)
	c := ts.client(t, nil)
	resp, err := c.Get(c.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("first part %q, %v", first, err)
	}
	close(gotFirst)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Errorf("rest %q, %v", rest, err)
	}
	if !flushed.Load() {
		t.Error("the flushed part reached the client only after the handler went on")
	}
}
