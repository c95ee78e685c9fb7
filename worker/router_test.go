package worker

import (
	cryptotls "crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"srp/registry"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestRedirectLocation(t *testing.T) {
	for _, tc := range []struct {
		target      string
		discard     bool
		permanent   bool
		requestURI  string
		wantStatus  int
		wantLocaton string
	}{
		{"https://new.test", false, true, "/a/b?x=1", 308, "https://new.test/a/b?x=1"},
		{"https://new.test", false, false, "/", 307, "https://new.test/"},
		{"https://new.test/", false, false, "/a", 307, "https://new.test/a"},
		{"https://new.test/base", false, false, "/a?q", 307, "https://new.test/base/a?q"},
		{"https://new.test/base?src=old", false, false, "/a", 307, "https://new.test/base/a?src=old"},
		{"https://new.test/base?src=old", false, false, "/a?mine=1", 307, "https://new.test/base/a?mine=1"},
		// The path is kept as the client wrote it: an escaped slash stays escaped.
		{"https://new.test", false, false, "/files/a%2Fb?x=%26", 307, "https://new.test/files/a%2Fb?x=%26"},
		{"https://new.test", false, false, "/caf%C3%A9/with%20space", 307, "https://new.test/caf%C3%A9/with%20space"},
		{"https://new.test/landing", true, true, "/a/b?x=1", 308, "https://new.test/landing"},
		{"http://new.test:8080", true, false, "/a", 307, "http://new.test:8080"},
	} {
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", tc.requestURI, nil)
		redirect(w, r, &registry.Redirect{URL: u, DiscardPath: tc.discard, Permanent: tc.permanent})
		if w.Code != tc.wantStatus || w.Header().Get("Location") != tc.wantLocaton {
			t.Errorf("%s (discard %v) for %s: %d %q, want %d %q", tc.target, tc.discard, tc.requestURI,
				w.Code, w.Header().Get("Location"), tc.wantStatus, tc.wantLocaton)
		}
	}
}

func TestConnectRefused(t *testing.T) {
	snap, err := registry.Parse("t.json", []byte(`{"Services": {"app.test": {"Backends": ["127.0.0.1:1"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := build(Options{Snapshot: snap, Timeout: time.Second, Logger: discardLogger()})
	w := httptest.NewRecorder()
	r := httptest.NewRequest("CONNECT", "http://app.test:443", nil)
	rt.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("CONNECT: %d, want 405", w.Code)
	}
}

// Behind TLS the backend is told https, whatever the client claims.
func TestForwardedProtoFollowsTheConnection(t *testing.T) {
	capture := &captureTransport{}
	rt := newCaptureRouter(t, capture)
	for _, tls := range []bool{false, true} {
		r := httptest.NewRequest("GET", "http://app.test/", nil)
		if tls {
			r.TLS = &cryptotls.ConnectionState{HandshakeComplete: true}
			r.Header.Set("X-Forwarded-Proto", "http")
		} else {
			r.Header.Set("X-Forwarded-Proto", "https")
		}
		rt.ServeHTTP(httptest.NewRecorder(), r)
		want := map[bool]string{false: "http", true: "https"}[tls]
		if got := capture.last.Header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != want {
			t.Errorf("TLS %v: backend got X-Forwarded-Proto %q, want %q", tls, got, want)
		}
	}
}

// The internal API answers on the plain-HTTP listener only, even for a
// client inside the subnet.
func TestAPINotOnTLS(t *testing.T) {
	snap, err := registry.Parse("t.json", []byte(`{"Services": {"app.test": {"Backends": ["127.0.0.1:1"]}},
		"API": {"Subnet": "192.0.2.0/24"}}`))
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := build(Options{Snapshot: snap, Timeout: time.Second, Logger: discardLogger()})
	for _, tls := range []bool{false, true} {
		r := httptest.NewRequest("GET", "http://api.test/services", nil) // RemoteAddr 192.0.2.1
		if tls {
			r.TLS = &cryptotls.ConnectionState{HandshakeComplete: true}
		}
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, r)
		want := map[bool]int{false: http.StatusOK, true: http.StatusNotFound}[tls]
		if w.Code != want {
			t.Errorf("TLS %v: /services answered %d, want %d", tls, w.Code, want)
		}
	}
}
