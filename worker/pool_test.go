package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"srp/registry"
	"srp/worker/observe"
	"srp/worker/upstream"
)

// countingTransport is the worker's real transport with every dial counted.
func countingTransport(dials *atomic.Int32) *http.Transport {
	tr := newTransport(5 * time.Second)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	return tr
}

func closedAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	return addrs
}

// Four backends that pass health checks but refuse connections: a request
// is offered to three of them, then fails with a 502.
func TestDialFailuresTriedThreeTimes(t *testing.T) {
	var dials atomic.Int32
	svc := &registry.Service{Host: "app.test", Backends: closedAddrs(t, 4)}
	p := &transport{pool: upstream.NewPool(svc), rt: countingTransport(&dials), obs: observe.Nop{}}
	for _, method := range []string{"GET", "POST"} {
		dials.Store(0)
		req := httptest.NewRequest(method, "http://app.test/", strings.NewReader("body"))
		req.RequestURI = ""
		_, err := p.RoundTrip(req)
		if err == nil {
			t.Fatalf("%s to refusing backends succeeded", method)
		}
		if n := dials.Load(); n != 3 { // the contract says 3 tries
			t.Errorf("%s: %d dials, want 3", method, n)
		}
		if !upstream.IsDial(err) || statusFor(req, err) != http.StatusBadGateway {
			t.Errorf("%s: error %v maps to %d, want a dial error and 502", method, err, statusFor(req, err))
		}
	}
}

// strictBody, like the body ReverseProxy hands its transport, cannot be read
// once closed.
type strictBody struct {
	io.Reader
	closed bool
}

func (b *strictBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("read after close")
	}
	return b.Reader.Read(p)
}

func (b *strictBody) Close() error { b.closed = true; return nil }

// A body that fails to reach the first backend's dial is sent whole to the next.
func TestRetriedBodyArrivesWhole(t *testing.T) {
	var got atomic.Value
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b))
	}))
	defer live.Close()
	var dials atomic.Int32
	svc := &registry.Service{Host: "app.test", Backends: append(closedAddrs(t, 2), live.Listener.Addr().String())}
	p := &transport{pool: upstream.NewPool(svc), rt: countingTransport(&dials), obs: observe.Nop{}}
	body := strings.Repeat("payload ", 10000)
	for range 3 { // whichever backend the rotation offers first
		got.Store("")
		req := httptest.NewRequest("POST", "http://app.test/", &strictBody{Reader: strings.NewReader(body)})
		req.RequestURI = ""
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		resp.Body.Close()
		if got.Load() != body {
			t.Fatalf("backend got %d bytes, want %d", len(got.Load().(string)), len(body))
		}
	}
	if dials.Load() <= 3 {
		t.Fatalf("%d dials for 3 requests: the dead backends were never tried first", dials.Load())
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestRetryable(t *testing.T) {
	dial := &upstream.DialError{Err: errors.New("connection refused")}
	reset := errors.New("connection reset by peer")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		method  string
		body    string // "", "unread", "read", "failed"
		err     error
		ctx     context.Context
		retried bool
	}{
		{"GET", "", dial, nil, true},
		{"POST", "unread", dial, nil, true},
		{"POST", "read", dial, nil, false},
		{"GET", "", reset, nil, true},
		{"HEAD", "", reset, nil, true},
		{"OPTIONS", "", reset, nil, true},
		{"GET", "unread", reset, nil, true},
		{"GET", "read", reset, nil, false},
		{"POST", "", reset, nil, false},
		{"POST", "unread", reset, nil, false},
		{"PUT", "", reset, nil, false},
		{"DELETE", "", reset, nil, false},
		{"PATCH", "", reset, nil, false},
		{"GET", "", timeoutErr{}, nil, false},
		{"GET", "", dial, cancelled, false},
		{"GET", "", reset, cancelled, false},
		{"POST", "failed", dial, nil, false},
	} {
		req := httptest.NewRequest(tc.method, "http://app.test/", nil)
		if tc.ctx != nil {
			req = req.WithContext(tc.ctx)
		}
		var b *trackedBody
		if tc.body != "" {
			b = &trackedBody{rc: io.NopCloser(strings.NewReader("x"))}
			b.started.Store(tc.body == "read" || tc.body == "failed")
			b.failed.Store(tc.body == "failed")
		}
		if got := retryable(req, b, tc.err); got != tc.retried {
			t.Errorf("%s body=%q err=%v cancelled=%v: retryable = %v, want %v", tc.method, tc.body, tc.err, tc.ctx != nil, got, tc.retried)
		}
	}
}

func TestStatusFor(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	plain := httptest.NewRequest("GET", "/", nil)
	for _, tc := range []struct {
		req  *http.Request
		err  error
		want int
	}{
		{plain, upstream.ErrNoBackend, 502},
		{plain, &upstream.BackendError{Addr: "10.0.0.1:80", Err: &upstream.DialError{Err: errors.New("refused")}}, 502},
		{plain, &upstream.BackendError{Addr: "10.0.0.1:80", Err: &upstream.DialError{Err: &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}}}, 502},
		{plain, &upstream.BackendError{Addr: "10.0.0.1:80", Err: timeoutErr{}}, 504},
		{plain, fmt.Errorf("wrapped: %w", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}), 504},
		{plain, &upstream.BackendError{Addr: "10.0.0.1:80", Err: io.ErrUnexpectedEOF}, 502},
		{plain, &upstream.ClientBodyError{Err: io.ErrUnexpectedEOF}, 400},
		{plain, &http.MaxBytesError{Limit: 1}, 413},
		{plain.WithContext(cancelled), &upstream.BackendError{Addr: "10.0.0.1:80", Err: context.Canceled}, upstream.StatusClientClosed},
	} {
		if got := statusFor(tc.req, tc.err); got != tc.want {
			t.Errorf("statusFor(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
