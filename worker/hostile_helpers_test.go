package worker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"srp/registry"
	"srp/scripts/testkit"
)

// seen is one request as a backend parsed it.
type seen struct {
	method, uri, host string
	header            http.Header
	body              []byte
	bodyErr           error // the body did not arrive whole
}

// recorder is a backend on 127.0.0.1 that keeps exactly what it received.
// Its answers carry X-Backend, so a client can tell them from srp's own.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex // guards got
	got  []seen
	then http.HandlerFunc // answers after recording; nil writes "ok"
}

func newRecorder(t testing.TB, then http.HandlerFunc) *recorder {
	t.Helper()
	rec := &recorder{then: then}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.got = append(rec.got, seen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), body, err})
		rec.mu.Unlock()
		w.Header().Set("X-Backend", "1")
		if rec.then != nil {
			rec.then(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) addr() string { return rec.Listener.Addr().String() }

// requests returns what the backend received so far.
func (rec *recorder) requests() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.got...)
}

func (rec *recorder) reset() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.got = nil
}

// running is a worker started by a test.
type running struct {
	addr string
	logs *testkit.Buffer
	stop func() // cancels and waits for Run to return; safe to call twice
}

// runGuarded runs a worker for config on a 127.0.0.1 listener until the
// test ends (or stop is called) and returns once it is ready.
func runGuarded(t testing.TB, config string, tweak func(*Options)) *running {
	t.Helper()
	snap, err := registry.Parse("test.json", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.Buffer{}
	o := Options{Snapshot: snap, HTTP: ln, Timeout: 5 * time.Second, Grace: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if tweak != nil {
		tweak(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- Run(ctx, o, func() { close(ready) }) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("worker.Run returned before ready: %v", err)
	}
	return &running{addr: ln.Addr().String(), logs: logs, stop: stop}
}

// exchange sends raw on a new connection and reads up to n responses, or
// until the server closes. With waitClose, closed reports whether the
// server closed the connection within a few seconds after the last one.
func exchange(t testing.TB, addr, raw string, n int, waitClose bool) (resps []*http.Response, bodies []string, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for len(resps) < n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return resps, bodies, true
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resps, bodies = append(resps, resp), append(bodies, string(b))
	}
	if !waitClose {
		return resps, bodies, false
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = br.ReadByte()
	return resps, bodies, err == io.EOF
}

func statuses(resps []*http.Response) []int {
	var s []int
	for _, r := range resps {
		s = append(s, r.StatusCode)
	}
	return s
}

// leakCheck records the goroutines and open files of this process; the
// returned func fails the test unless both return to that level (with
// slack for the runtime's own) within a few seconds.
func leakCheck(t testing.TB) func() {
	t.Helper()
	g0, f0 := runtime.NumGoroutine(), openFDs(t)
	return func() {
		t.Helper()
		var g, f int
		ok := testkit.WaitFor(10*time.Second, func() bool {
			g, f = runtime.NumGoroutine(), openFDs(t)
			return g <= g0 && f <= f0
		})
		if !ok {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("leak: goroutines %d -> %d, open files %d -> %d\n%s", g0, g, f0, f, buf)
		}
	}
}

func openFDs(t testing.TB) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries)
}

func config(backends ...string) string {
	return fmt.Sprintf(`{"Services": {"app.test": {"Backends": ["%s"]}}}`, strings.Join(backends, `", "`))
}
