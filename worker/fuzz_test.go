package worker

import (
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"

	"srp/registry"
	"srp/worker/upstream"
)

// captureTransport answers every request itself and keeps the last one, as
// the backend would have received it.
type captureTransport struct{ last *http.Request }

func (c *captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.last = r
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// newCaptureRouter builds the real router for one service whose backend
// transport is capture.
func newCaptureRouter(t testing.TB, capture http.RoundTripper) *router {
	snap, err := registry.Parse("fuzz.json", []byte(`{"Services": {"app.test": {"Backends": ["127.0.0.1:3001"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := build(Options{Snapshot: snap, Logger: discardLogger()})
	for _, r := range rt.routes {
		r.transport.rt = capture
	}
	return rt
}

// wireValid reports whether an HTTP/1.1 server would hand a handler this
// header at all: a token name and a value without control characters.
func wireValid(name, value string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// FuzzRewrite sends arbitrary client headers through the real router,
// ReverseProxy and rewrite, and checks that the headers srp promises
// backends are exactly what srp set, whatever the client sent.
func FuzzRewrite(f *testing.F) {
	f.Add("X-Custom", "value", "abc-123", "203.0.113.9", "keep-alive")
	f.Add("X-Real-IP", "6.6.6.6", "", "", "X-Forwarded-For, X-Real-IP, X-Request-ID")
	f.Add("X-Forwarded-Proto", "https", "has space", "1.1.1.1, 2.2.2.2", "X-Forwarded-Proto, X-Forwarded-Host")
	f.Add("Upgrade", "websocket", strings.Repeat("a", 129), "", "Upgrade")
	f.Add("Te", "trailers, gzip", "<id>", "unknown", "Te, close")
	f.Add("X-Request-Id", "second", "first", "", "")
	const ip = "192.0.2.7"
	capture := &captureTransport{}
	rt := newCaptureRouter(f, capture)
	f.Fuzz(func(t *testing.T, name, value, reqID, xff, connection string) {
		value, reqID = strings.Trim(value, " \t"), strings.Trim(reqID, " \t")
		xff, connection = strings.Trim(xff, " \t"), strings.Trim(connection, " \t")
		name = textproto.CanonicalMIMEHeaderKey(name)
		switch name {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			return // the server consumes these itself
		}
		if !wireValid(name, value) || !wireValid("X-Request-Id", reqID) ||
			!wireValid("X-Forwarded-For", xff) || !wireValid("Connection", connection) {
			return
		}
		in := httptest.NewRequest("GET", "http://app.test/path", nil)
		in.RemoteAddr = ip + ":5555"
		set := func(k, v string) {
			if v != "" {
				in.Header[k] = append(in.Header[k], v)
			}
		}
		set("X-Request-Id", reqID)
		set("X-Forwarded-For", xff)
		set("Connection", connection)
		set(name, value)
		clientIDs := append([]string(nil), in.Header["X-Request-Id"]...)
		priorXFF := append([]string(nil), in.Header["X-Forwarded-For"]...)

		capture.last = nil
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, in)
		out := capture.last
		if out == nil {
			t.Fatalf("request not proxied: %d %q", w.Code, w.Body.String())
		}
		exactly := func(k, want string) {
			if got := out.Header.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("backend got %s %q, want exactly %q", k, got, want)
			}
		}
		exactly("X-Real-Ip", ip)
		exactly("X-Forwarded-Proto", "http")
		exactly("X-Forwarded-Host", "app.test")
		wantXFF := ip
		if len(priorXFF) > 0 {
			wantXFF = strings.Join(priorXFF, ", ") + ", " + ip
		}
		exactly("X-Forwarded-For", wantXFF)
		ids := out.Header.Values("X-Request-Id")
		if len(ids) != 1 || !upstream.SaneRequestID(ids[0]) {
			t.Fatalf("backend got X-Request-Id %q, want exactly one sane ID", ids)
		}
		if len(clientIDs) == 1 && upstream.SaneRequestID(clientIDs[0]) && ids[0] != clientIDs[0] {
			t.Errorf("sane X-Request-Id %q replaced by %q", clientIDs[0], ids[0])
		}
		if (len(clientIDs) != 1 || !upstream.SaneRequestID(clientIDs[0])) && len(clientIDs) > 0 && ids[0] == clientIDs[0] {
			t.Errorf("unusable X-Request-Id %q passed on", clientIDs)
		}
		if out.Host != "app.test" {
			t.Errorf("backend Host %q", out.Host)
		}
		// Hop-by-hop headers never pass, except what ReverseProxy itself sets
		// for a WebSocket upgrade and "Te: trailers".
		up := out.Header.Values("Upgrade")
		if len(up) > 0 && (len(up) != 1 || !strings.EqualFold(up[0], "websocket")) {
			t.Errorf("backend got Upgrade %q", up)
		}
		if c := out.Header.Values("Connection"); len(c) > 0 && (len(up) == 0 || len(c) != 1 || c[0] != "Upgrade") {
			t.Errorf("backend got Connection %q", c)
		}
		if te := out.Header.Values("Te"); len(te) > 0 && (len(te) != 1 || te[0] != "trailers") {
			t.Errorf("backend got Te %q", te)
		}
		for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Transfer-Encoding", "Trailer"} {
			if v := out.Header.Values(k); len(v) > 0 {
				t.Errorf("hop-by-hop %s reached the backend: %q", k, v)
			}
		}
	})
}
