package worker

import (
	"net/http"
	"sync/atomic"
	"testing"
)

// /ready says whether srp wants new connections: 200 while it serves, 503
// once it is leaving, for any Host that is not a service and any client.
func TestReady(t *testing.T) {
	backend := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("app")) })
	unready := new(atomic.Bool)
	w := runGuarded(t, config(backend.addr()), func(o *Options) { o.Unready = unready })
	status := func(raw string) int {
		t.Helper()
		resps, _, _ := exchange(t, w.addr, raw, 1, false)
		if len(resps) != 1 {
			t.Fatalf("%q: no answer", raw)
		}
		return resps[0].StatusCode
	}
	const ready = "GET /ready HTTP/1.1\r\nHost: 10.0.0.9\r\n\r\n"
	if got := status(ready); got != 200 {
		t.Fatalf("serving: /ready %d, want 200", got)
	}
	if got := status("POST /ready HTTP/1.1\r\nHost: 10.0.0.9\r\nContent-Length: 0\r\n\r\n"); got != 405 {
		t.Errorf("POST /ready %d, want 405", got)
	}
	unready.Store(true)
	if got := status(ready); got != 503 {
		t.Fatalf("leaving: /ready %d, want 503", got)
	}
	// A service's host always goes to the service, and serving goes on.
	if got := status("GET /ready HTTP/1.1\r\nHost: app.test\r\n\r\n"); got != 200 || len(backend.requests()) != 1 {
		t.Fatalf("leaving: app.test/ready %d with %d backend requests, want the backend's 200", got, len(backend.requests()))
	}
}
