package h2_test

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// maxStreams is the server's SETTINGS_MAX_CONCURRENT_STREAMS, and its
// bound on handlers running for one connection.
const maxStreams = 250

// gauge counts handlers running, and the most at once.
type gauge struct{ cur, peak atomic.Int32 }

func (g *gauge) enter() {
	n := g.cur.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (g *gauge) leave() { g.cur.Add(-1) }

// gate holds handlers until one token each, or until opened.
type gate struct {
	tokens chan struct{}
	open   chan struct{}
	once   sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{tokens: make(chan struct{}), open: make(chan struct{})}
	t.Cleanup(g.release)
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) wait() {
	select {
	case <-g.tokens:
	case <-g.open:
	}
}

// let lets n handlers through.
func (g *gate) let(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case g.tokens <- struct{}{}:
		case <-time.After(5 * time.Second):
			t.Fatal("no handler waiting at the gate")
		}
	}
}

// 300 requests at once on one connection, from a client that keeps to
// the server's MAX_CONCURRENT_STREAMS: 250 handlers run, the other
// requests wait and are served as handlers finish.
func TestConcurrentStreams(t *testing.T) {
	t.Parallel()
	const total = 300
	var running gauge
	g := newGate(t)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/warm" {
			return
		}
		running.enter()
		defer running.leave()
		g.wait()
		_, _ = io.WriteString(w, "ok")
	}), nil)
	c := ts.singleConn(t)
	url := "http://" + ts.addr + "/"
	// The client takes the server's 250 from its SETTINGS, but requests
	// already waiting under its provisional 100 wait on until a stream ends.
	resp, err := c.Get(url + "warm")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	var answered atomic.Int32
	errs := make(chan error, total)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer g.release()
	for range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(url)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ok" {
					err = fmt.Errorf("status %d, body %q", resp.StatusCode, b)
				}
			}
			if err != nil {
				errs <- err
				return
			}
			answered.Add(1)
		}()
	}
	if !eventually(5*time.Second, func() bool { return running.cur.Load() == maxStreams }) {
		t.Fatalf("%d handlers running, want %d", running.cur.Load(), maxStreams)
	}
	time.Sleep(50 * time.Millisecond) // room for a 251st to start, were it let
	if n, a := running.cur.Load(), answered.Load(); n != maxStreams || a != 0 {
		t.Errorf("%d handlers running, %d answered; want %d, 0", n, a, maxStreams)
	}
	g.let(t, 50)
	if !eventually(5*time.Second, func() bool { return answered.Load() == 50 && running.cur.Load() == maxStreams }) {
		t.Errorf("after 50 handlers finished: %d answered, %d running; want 50 and the waiting ones started", answered.Load(), running.cur.Load())
	}
	g.release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
		break
	}
	if a, p := answered.Load(), running.peak.Load(); a != total || p != maxStreams {
		t.Errorf("%d of %d answered, at most %d handlers at once; want all, %d", a, total, p, maxStreams)
	}
	if n := ts.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// The server's own bound, for a client that does not keep count: streams
// it resets stop counting against MAX_CONCURRENT_STREAMS while their
// handlers run on, and streams opened then wait for one of the 250
// handler slots. A stream past 250 open ones is refused.
func TestHandlerQueue(t *testing.T) {
	t.Parallel()
	var running gauge
	var newStarted atomic.Int32
	g := newGate(t)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.enter()
		defer running.leave()
		if r.URL.Path == "/new" {
			newStarted.Add(1)
		}
		g.wait() // deaf to its context, as a handler busy with a backend
		_, _ = io.WriteString(w, "ok")
	}), nil)
	c := dialRaw(t, ts.addr, true)
	for i := range maxStreams {
		c.request(uint32(2*i+1), "GET", "/old", true)
	}
	if !eventually(5*time.Second, func() bool { return running.cur.Load() == maxStreams }) {
		t.Fatalf("%d handlers running, want %d", running.cur.Load(), maxStreams)
	}
	c.request(501, "GET", "/extra", true)
	if r := c.response(501); !r.reset || r.code != http2.ErrCodeRefusedStream {
		t.Errorf("stream 251: status %d, reset %v with %v; want REFUSED_STREAM", r.status, r.reset, r.code)
	}

	const reset = 50
	for i := range reset {
		c.rst(uint32(2*i+1), http2.ErrCodeCancel)
	}
	for i := range reset {
		c.request(uint32(503+2*i), "GET", "/new", true)
	}
	c.ping()
	time.Sleep(50 * time.Millisecond) // room for a queued handler to start, were it let
	if n, s := running.cur.Load(), newStarted.Load(); n != maxStreams || s != 0 {
		t.Errorf("%d handlers running, %d of the new streams' started; want %d, 0", n, s, maxStreams)
	}
	if len(c.goAwaysSeen()) > 0 {
		t.Fatalf("connection ended: %s", c.describe())
	}

	g.release()
	for i := reset; i < maxStreams; i++ {
		if r := c.response(uint32(2*i + 1)); r.status != 200 || string(r.body) != "ok" {
			t.Fatalf("stream %d: status %d, body %q, reset %v (%v)", 2*i+1, r.status, r.body, r.reset, r.code)
		}
	}
	for i := range reset {
		if r := c.response(uint32(503 + 2*i)); r.status != 200 || string(r.body) != "ok" {
			t.Fatalf("queued stream %d: status %d, body %q, reset %v (%v)", 503+2*i, r.status, r.body, r.reset, r.code)
		}
	}
	if p, s := running.peak.Load(), newStarted.Load(); p != maxStreams || s != reset {
		t.Errorf("at most %d handlers at once, %d queued ones run; want %d, %d", p, s, maxStreams, reset)
	}
}
