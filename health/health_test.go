package health

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"srp/scripts/testkit"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a health endpoint on 127.0.0.1 whose answer the test sets.
type backend struct {
	*httptest.Server
	status atomic.Int32

	mu   sync.Mutex // guards reqs
	reqs []*http.Request
}

func newBackend(t *testing.T, status int) *backend {
	t.Helper()
	b := &backend{}
	b.status.Store(int32(status))
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.reqs = append(b.reqs, r.Clone(context.Background()))
		b.mu.Unlock()
		w.WriteHeader(int(b.status.Load()))
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) target(path string) Target {
	return Target{Addr: b.Listener.Addr().String(), Path: path}
}

func (b *backend) requests() []*http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*http.Request(nil), b.reqs...)
}

func quietLogger(w *testkit.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestStatusDecidesHealth(t *testing.T) {
	for _, tc := range []struct {
		status int
		up     bool
	}{
		{200, true}, {204, true}, {299, true},
		{304, false}, {404, false}, {429, false}, {500, false}, {503, false},
	} {
		b := newBackend(t, tc.status)
		tg := b.target("/health")
		c := New([]Target{tg}, Options{Logger: quietLogger(&testkit.Buffer{})})
		c.Round(context.Background())
		if got := c.Up(tg); got != tc.up {
			t.Errorf("status %d: Up = %v, want %v", tc.status, got, tc.up)
		}
	}
}

// A redirect is not a 2xx: following it would call a backend healthy because
// some other page answers.
func TestRedirectIsUnhealthy(t *testing.T) {
	for _, status := range []int{301, 302, 307, 308} {
		mux := http.NewServeMux()
		mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", status)
		})
		mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {})
		srv := httptest.NewServer(mux)
		tg := Target{Addr: srv.Listener.Addr().String(), Path: "/health"}
		c := New([]Target{tg}, Options{Logger: quietLogger(&testkit.Buffer{})})
		c.Round(context.Background())
		if c.Up(tg) {
			t.Errorf("health answered %d: backend counted as up", status)
		}
		srv.Close()
	}
}

func TestRefusedIsUnhealthy(t *testing.T) {
	tg := Target{Addr: closedAddr(t), Path: "/health"}
	c := New([]Target{tg}, Options{Logger: quietLogger(&testkit.Buffer{})})
	c.Round(context.Background())
	if c.Up(tg) {
		t.Fatal("a backend refusing connections is up")
	}
}

func TestCheckRequest(t *testing.T) {
	b := newBackend(t, 200)
	tg := b.target("/status/health?full=1")
	c := New([]Target{tg}, Options{Logger: quietLogger(&testkit.Buffer{})})
	c.Round(context.Background())
	reqs := b.requests()
	if len(reqs) != 1 {
		t.Fatalf("backend got %d checks in one round, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodGet || r.URL.RequestURI() != "/status/health?full=1" {
		t.Errorf("check was %s %s, want GET /status/health?full=1", r.Method, r.URL.RequestURI())
	}
	if got := r.Header.Get("X-Role"); got != "srp" {
		t.Errorf("X-Role = %q, want srp", got)
	}
	if r.Host != tg.Addr {
		t.Errorf("Host = %q, want %q", r.Host, tg.Addr)
	}
}

// Every check must run at the same time: each backend answers healthy only
// once all of them have been asked, which sequential checks never reach.
func TestRoundChecksConcurrently(t *testing.T) {
	const n = 4
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	var targets []Target
	for range n {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived.Done()
			select {
			case <-all:
			case <-time.After(5 * time.Second):
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}))
		t.Cleanup(srv.Close)
		targets = append(targets, Target{Addr: srv.Listener.Addr().String(), Path: "/h"})
	}
	c := New(targets, Options{Timeout: 10 * time.Second, Logger: quietLogger(&testkit.Buffer{})})
	c.Round(context.Background())
	for _, tg := range targets {
		if !c.Up(tg) {
			t.Errorf("%s down: checks did not run concurrently", tg.Addr)
		}
	}
}

// A backend that accepts and never answers is cut off by the per-check
// timeout and marked down, and does not stop the others being marked.
func TestHangingBackendTimesOut(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	good := newBackend(t, 200)
	bad := newBackend(t, 500)
	hangT := Target{Addr: hang.Listener.Addr().String(), Path: "/h"}
	c := New([]Target{hangT, good.target("/h"), bad.target("/h")},
		Options{Timeout: 200 * time.Millisecond, Logger: quietLogger(&testkit.Buffer{})})
	done := make(chan struct{})
	go func() { c.Round(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("round never returned: a hanging backend held it")
	}
	if c.Up(hangT) {
		t.Error("hanging backend is up")
	}
	if !c.Up(good.target("/h")) || c.Up(bad.target("/h")) {
		t.Error("the other backends' results were not applied")
	}
}

// roundTripCounter counts the requests sent through one shared client.
type roundTripCounter struct {
	n  atomic.Int32
	rt http.RoundTripper
}

func (c *roundTripCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

func TestOneSharedClient(t *testing.T) {
	rc := &roundTripCounter{rt: http.DefaultTransport}
	var targets []Target
	for range 3 {
		targets = append(targets, newBackend(t, 200).target("/h"))
	}
	c := New(targets, Options{Client: &http.Client{Transport: rc}, Logger: quietLogger(&testkit.Buffer{})})
	c.Round(context.Background())
	c.Round(context.Background())
	if got := rc.n.Load(); got != 6 {
		t.Fatalf("shared client sent %d checks for 3 targets × 2 rounds, want 6", got)
	}
	// Without one given, New makes one client that every check shares.
	d := New(targets, Options{})
	if d.opts.Client == nil || d.opts.Client == http.DefaultClient {
		t.Fatalf("default client = %p, want a client of the checker's own", d.opts.Client)
	}
}

// The first round decides outright; later flips need Fall failures or Rise
// passes in a row, and only flips are logged or reported.
func TestRiseFallAndRecovery(t *testing.T) {
	b := newBackend(t, 200)
	tg := b.target("/h")
	logs := &testkit.Buffer{}
	var changes atomic.Int32
	c := New([]Target{tg}, Options{Rise: 3, Fall: 2, Logger: quietLogger(logs), OnChange: func() { changes.Add(1) }})
	ctx := context.Background()

	steps := []struct {
		status  int
		up      bool
		changes int32
	}{
		{200, true, 0},  // first round, already up: no flip
		{500, true, 0},  // 1 failure < Fall
		{200, true, 0},  // a pass resets the streak
		{500, true, 0},  // 1
		{500, false, 1}, // 2 = Fall: down
		{500, false, 1}, // stays down, no new flip
		{200, false, 1}, // 1 pass < Rise
		{200, false, 1}, // 2
		{500, false, 1}, // a failure resets the streak
		{200, false, 1}, // 1
		{200, false, 1}, // 2
		{200, true, 2},  // 3 = Rise: recovered
		{200, true, 2},
	}
	for i, s := range steps {
		b.status.Store(int32(s.status))
		c.Round(ctx)
		if c.Up(tg) != s.up || changes.Load() != s.changes {
			t.Fatalf("step %d (status %d): up=%v changes=%d, want up=%v changes=%d",
				i, s.status, c.Up(tg), changes.Load(), s.up, s.changes)
		}
	}
	if down, up := logs.Count("backend down"), logs.Count("backend up"); down != 1 || up != 1 {
		t.Fatalf("logged %d downs and %d ups, want exactly one of each (flips only):\n%s", down, up, logs.String())
	}
}

func TestFirstRoundDecidesOutright(t *testing.T) {
	down := newBackend(t, 503)
	up := newBackend(t, 200)
	logs := &testkit.Buffer{}
	var changes atomic.Int32
	c := New([]Target{down.target("/h"), up.target("/h")},
		Options{Fall: 5, Logger: quietLogger(logs), OnChange: func() { changes.Add(1) }})
	if !c.Up(down.target("/h")) {
		t.Fatal("a target is down before any check")
	}
	c.Round(context.Background())
	if c.Up(down.target("/h")) {
		t.Fatal("first round did not mark a failing backend down despite Fall=5")
	}
	if !c.Up(up.target("/h")) {
		t.Fatal("healthy backend is down")
	}
	if changes.Load() != 1 || logs.Count("backend down") != 1 || logs.Count("backend up") != 0 {
		t.Fatalf("changes=%d, log:\n%s", changes.Load(), logs.String())
	}
	if !strings.Contains(logs.String(), "backend="+down.target("/h").Addr) {
		t.Fatalf("log line does not name the backend:\n%s", logs.String())
	}
}

// State belongs to each target: one backend failing leaves the others alone,
// and the same address with another path is a separate target.
func TestStateKeyedByTarget(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/bad", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	ok, bad := Target{Addr: addr, Path: "/ok"}, Target{Addr: addr, Path: "/bad"}
	c := New([]Target{ok, bad}, Options{Logger: quietLogger(&testkit.Buffer{})})
	c.Round(context.Background())
	if !c.Up(ok) || c.Up(bad) {
		t.Fatalf("up(/ok)=%v up(/bad)=%v, want true false", c.Up(ok), c.Up(bad))
	}
	if !c.Up(Target{Addr: "127.0.0.1:1", Path: "/x"}) {
		t.Fatal("an unknown target must count as up")
	}
}

// A cancelled round says nothing about the backends.
func TestCancelledRoundKeepsState(t *testing.T) {
	b := newBackend(t, 500)
	tg := b.target("/h")
	c := New([]Target{tg}, Options{Logger: quietLogger(&testkit.Buffer{})})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Round(ctx)
	if !c.Up(tg) {
		t.Fatal("a cancelled round marked the backend down")
	}
}

func TestRunChecksUntilCancelled(t *testing.T) {
	b := newBackend(t, 200)
	tg := b.target("/h")
	var changes atomic.Int32
	c := New([]Target{tg}, Options{Interval: 20 * time.Millisecond, Fall: 1,
		Logger: quietLogger(&testkit.Buffer{}), OnChange: func() { changes.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.requests()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(b.requests()) < 3 {
		t.Fatal("Run did not keep checking")
	}
	b.status.Store(500)
	for changes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c.Up(tg) {
		t.Fatal("Run did not mark a failing backend down")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop when its context was cancelled")
	}
	n := len(b.requests())
	time.Sleep(100 * time.Millisecond)
	if len(b.requests()) != n {
		t.Fatal("checks continued after Run returned")
	}
}
