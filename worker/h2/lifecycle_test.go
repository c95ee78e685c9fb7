package h2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"srp/worker/h2"
)

// slowServer serves /slow, which waits for release and then answers
// body, and counts the requests for any other path.
func slowServer(t *testing.T, body []byte) (ts *testServer, started chan struct{}, release func(), others *atomic.Int32) {
	started = make(chan struct{}, 1)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	others = new(atomic.Int32)
	ts = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			others.Add(1)
			return
		}
		started <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(body)
	}), nil)
	t.Cleanup(release)
	return ts, started, release, others
}

// Shutdown: GOAWAY at once, the stream under way answered in full, none
// served after, and the return once the connection has closed.
func TestShutdown(t *testing.T) {
	t.Parallel()
	body := payload(100<<10, 4)
	ts, started, release, others := slowServer(t, body)
	c := dialRaw(t, ts.addr, true)
	c.request(1, "GET", "/slow", true)
	recv(t, started, 5*time.Second, "handler start")

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	c.must(5*time.Second, "GOAWAY", func() bool { return len(c.goAways) > 0 })
	if g := c.goAwaysSeen()[0]; g.code != http2.ErrCodeNo || g.last != 1 {
		t.Errorf("GOAWAY %v, last stream %d; want NO_ERROR, 1", g.code, g.last)
	}
	c.request(3, "GET", "/other", true)
	c.ping()
	// Longer than the server reads on after a GOAWAY before closing: the
	// stream under way, not that, holds the connection open.
	if c.await(1500*time.Millisecond, func() bool { return c.err != nil }) {
		t.Fatalf("connection closed with a stream under way: %s", c.describe())
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a stream under way", err)
	default:
	}

	release()
	if r := c.response(1); r.status != 200 || r.reset || !bytes.Equal(r.body, body) {
		t.Errorf("stream in flight: status %d, reset %v (%v), %d of %d bytes", r.status, r.reset, r.code, len(r.body), len(body))
	}
	if err := recv(t, shut, 5*time.Second, "Shutdown's return"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	c.must(time.Second, "connection close after Shutdown returned", func() bool { return c.err != nil })
	if r := c.result(3); r.status != 0 || r.dataFrames != 0 || others.Load() != 0 {
		t.Errorf("stream opened after GOAWAY: status %d, %d DATA frames, %d handlers run", r.status, r.dataFrames, others.Load())
	}
	if g := c.goAwaysSeen(); len(g) != 1 {
		t.Errorf("GOAWAYs %v, want the one", g)
	}

	// A connection coming after the shutdown (its handshake was under
	// way) is told at once that nothing will be served, after the
	// SETTINGS that must come first, and then closed.
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = nc.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(nc, nc)
	var got []string
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("new connection after Shutdown still open: frames %v", got)
			}
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			got = append(got, "SETTINGS")
		case *http2.GoAwayFrame:
			got = append(got, fmt.Sprintf("GOAWAY %d %v", f.LastStreamID, f.ErrCode))
		default:
			got = append(got, f.Header().Type.String())
		}
	}
	if len(got) < 2 || got[0] != "SETTINGS" || !slices.Contains(got, "GOAWAY 0 NO_ERROR") {
		t.Errorf("new connection after Shutdown: frames %v, want SETTINGS first and GOAWAY 0 NO_ERROR", got)
	}
}

// A client whose stream the GOAWAY left out may still send frames for it
// before it reads the GOAWAY, or reset it after (the x/net client does).
// RFC 9113, 6.8: the server may ignore them; they must not end the
// connection and the stream it is still serving.
func TestShutdownTolerantOfUnservedStreams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		send func(c *rawConn)
	}{
		{"RST_STREAM", func(c *rawConn) { c.request(3, "GET", "/other", true); c.rst(3, http2.ErrCodeCancel) }},
		{"DATA", func(c *rawConn) { c.request(3, "POST", "/other", false); c.data(3, true, []byte("late")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := payload(10<<10, 5)
			ts, started, release, _ := slowServer(t, body)
			c := dialRaw(t, ts.addr, true)
			c.request(1, "GET", "/slow", true)
			recv(t, started, 5*time.Second, "handler start")
			shut := make(chan error, 1)
			go func() { shut <- ts.Shutdown(context.Background()) }()
			defer func() { ts.Close(); <-shut }()
			c.must(5*time.Second, "GOAWAY", func() bool { return len(c.goAways) > 0 })
			tc.send(c)
			c.tryPing()
			release()
			if r := c.response(1); r.status != 200 || !bytes.Equal(r.body, body) {
				t.Errorf("stream in flight: status %d, reset %v (%v), %d of %d bytes", r.status, r.reset, r.code, len(r.body), len(body))
			}
			for _, g := range c.goAwaysSeen() {
				if g.code != http2.ErrCodeNo {
					t.Errorf("GOAWAY %v after the client's %s on a stream past the GOAWAY's last", g.code, tc.name)
				}
			}
		})
	}
}

// Shutdown gives up when its context does; Close then cuts at once.
func TestShutdownExpiresThenClose(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	cancelled := make(chan error, 1)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
		cancelled <- r.Context().Err()
	}), nil)
	c := dialRaw(t, ts.addr, true)
	c.request(1, "GET", "/", true)
	recv(t, started, 5*time.Second, "handler start")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Shutdown returned %v after its context expired", took)
	}
	c.must(time.Second, "GOAWAY", func() bool { return len(c.goAways) > 0 })

	begin = time.Now()
	ts.Close()
	c.must(2*time.Second, "connection close", func() bool { return c.err != nil })
	// Well under the second a graceful close reads on for.
	if took := c.endedAt.Sub(begin); took > 700*time.Millisecond {
		t.Errorf("Close took %v to cut the connection", took)
	}
	if err := recv(t, cancelled, time.Second, "handler's end"); !errors.Is(err, context.Canceled) {
		t.Errorf("handler's context: %v", err)
	}
	if r := c.result(1); r.status != 0 || r.ended {
		t.Errorf("stream answered %d, ended %v, though cut", r.status, r.ended)
	}
}

// The server's first frame is its SETTINGS (RFC 9113, 3.4), even when
// Shutdown comes before the client's preface.
func TestShutdownBeforePreface(t *testing.T) {
	t.Parallel()
	reading := make(chan struct{}, 1)
	ts := start(t, http.NotFoundHandler(), nil, false, func(nc net.Conn) net.Conn { return &readHook{Conn: nc, first: reading} })
	c := connectRaw(t, ts.addr, false)
	recv(t, reading, 5*time.Second, "server's first read")
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	c.await(300*time.Millisecond, func() bool { return len(c.frames) > 0 })
	// The server may close before the preface is written: no frame at
	// all is as good an answer as SETTINGS first.
	_, _ = c.nc.Write([]byte(http2.ClientPreface))
	c.must(5*time.Second, "connection close", func() bool { return c.err != nil })
	if err := recv(t, shut, 5*time.Second, "Shutdown's return"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) > 0 && c.frames[0] != http2.FrameSettings {
		t.Errorf("server's frames %v: the first is not SETTINGS", c.frames)
	}
}

// readHook reports the server's first read on the connection.
type readHook struct {
	net.Conn
	first chan struct{}
	once  sync.Once
}

func (h *readHook) Read(p []byte) (int, error) {
	h.once.Do(func() { h.first <- struct{}{} })
	return h.Conn.Read(p)
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 200 * time.Millisecond
	t.Run("no streams", func(t *testing.T) {
		t.Parallel()
		ts := serve(t, http.NotFoundHandler(), func(s *h2.Server) { s.IdleTimeout = idle })
		begin := time.Now()
		c := dialRaw(t, ts.addr, true)
		c.must(3*time.Second, "GOAWAY", func() bool { return len(c.goAways) > 0 })
		g := c.goAwaysSeen()[0]
		if g.code != http2.ErrCodeNo || g.last != 0 || g.at.Sub(begin) < idle*3/4 {
			t.Errorf("GOAWAY %v, last stream %d, after %v; want NO_ERROR, 0, after %v", g.code, g.last, g.at.Sub(begin), idle)
		}
		c.must(3*time.Second, "connection close", func() bool { return c.err != nil })
		if after := c.endedAt.Sub(g.at); after < 500*time.Millisecond || after > 2500*time.Millisecond {
			t.Errorf("closed %v after the GOAWAY, want about a second", after)
		}
	})
	t.Run("long stream", func(t *testing.T) {
		t.Parallel()
		ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(4 * idle):
			case <-r.Context().Done():
			}
			_, _ = io.WriteString(w, "done")
		}), func(s *h2.Server) { s.IdleTimeout = idle })
		c := dialRaw(t, ts.addr, true)
		c.request(1, "GET", "/", true)
		r := c.response(1)
		if r.status != 200 || string(r.body) != "done" {
			t.Errorf("status %d, body %q, reset %v; %s", r.status, r.body, r.reset, c.describe())
		}
		if g := c.goAwaysSeen(); len(g) > 0 {
			t.Fatalf("GOAWAY while a stream ran: %v", g)
		}
		// Idle again once it is done.
		c.must(3*time.Second, "GOAWAY after the stream", func() bool { return len(c.goAways) > 0 })
		if g := c.goAwaysSeen()[0]; g.code != http2.ErrCodeNo || g.last != 1 || g.at.Sub(r.endedAt) < idle*3/4 {
			t.Errorf("GOAWAY %v, last %d, %v after the stream ended", g.code, g.last, g.at.Sub(r.endedAt))
		}
	})
}

// A client granting no window cannot hold a handler beyond WriteStall.
func TestWriteStall(t *testing.T) {
	t.Parallel()
	const stall = 300 * time.Millisecond
	type result struct {
		n    int
		err  error
		took time.Duration
	}
	res := make(chan result, 1)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		begin := time.Now()
		n, err := w.Write(make([]byte, 64<<10))
		res <- result{n, err, time.Since(begin)}
	}), func(s *h2.Server) { s.WriteStall = stall })
	c := dialRaw(t, ts.addr, false, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	c.ping()
	begin := time.Now()
	c.request(1, "GET", "/", true)
	r := c.response(1)
	if took := r.endedAt.Sub(begin); !r.reset || r.code != http2.ErrCodeCancel || took < stall*3/4 || took > stall+time.Second {
		t.Errorf("reset %v with %v after %v; want RST_STREAM CANCEL after about %v", r.reset, r.code, took, stall)
	}
	if r.status != 200 || len(r.body) != 0 {
		t.Errorf("status %d, %d bytes of body, with no window given", r.status, len(r.body))
	}
	got := recv(t, res, 2*time.Second, "handler's write")
	if got.err == nil || got.took < stall*3/4 {
		t.Errorf("handler's Write: %d bytes, %v, after %v; want an error after about %v", got.n, got.err, got.took, stall)
	}
	c.ping() // the connection lives on
}

// A client resetting its stream cancels the handler's context; the
// connection serves on.
func TestClientResetCancelsHandler(t *testing.T) {
	started := make(chan struct{}, 1)
	cancelled := make(chan error, 1)
	ts := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/wait" {
			return
		}
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(5 * time.Second):
			cancelled <- errors.New("not cancelled in 5s")
		}
	}), nil)
	c := ts.client(t, nil)
	if resp, err := c.Get(c.url + "/warm"); err == nil {
		_ = resp.Body.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", c.url+"/wait", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	recv(t, started, 5*time.Second, "handler start")
	cancel()
	if err := recv(t, done, 5*time.Second, "client's return"); !errors.Is(err, context.Canceled) {
		t.Errorf("client: %v", err)
	}
	if err := recv(t, cancelled, 6*time.Second, "handler's end"); !errors.Is(err, context.Canceled) {
		t.Errorf("handler's context: %v, want context.Canceled", err)
	}
	resp, err := c.Get(c.url + "/after")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || ts.accepted.Load() != 1 {
		t.Errorf("after the reset: status %d on %d connections", resp.StatusCode, ts.accepted.Load())
	}
}
