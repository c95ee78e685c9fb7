package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The load client writes HTTP/1.1 itself: net/http's client retries a
// request that failed on a reused connection, which would hide exactly the
// failures these tests count. Every request carries a unique X-Load-Id so
// the backends can report a request delivered twice.

// ledger records what the backends of a test received.
type ledger struct {
	mu   sync.Mutex     // guards seen and per
	seen map[string]int // X-Load-Id → deliveries
	per  map[string]int // backend name → load requests
	slow atomic.Int32   // /slow requests received
}

func newLedger() *ledger {
	return &ledger{seen: map[string]int{}, per: map[string]int{}}
}

// backend starts a backend named name. /health answers 200 if healthy
// and 500 if not; /slow answers after 3 s; everything else is a load
// request, answered "name:bytes-of-body".
func (lg *ledger) backend(t testing.TB, name string, healthy bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			if !healthy {
				w.WriteHeader(http.StatusInternalServerError)
			}
			return
		case "/slow":
			lg.slow.Add(1)
			select {
			case <-time.After(3 * time.Second):
				fmt.Fprint(w, "slow done")
			case <-r.Context().Done():
			}
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return // the client side reports this
		}
		lg.mu.Lock()
		lg.per[name]++
		if id := r.Header.Get("X-Load-Id"); id != "" {
			lg.seen[id]++
		}
		lg.mu.Unlock()
		fmt.Fprintf(w, "%s:%d", name, n)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// counts returns load requests per backend so far.
func (lg *ledger) counts() map[string]int {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	out := make(map[string]int, len(lg.per))
	for k, v := range lg.per {
		out[k] = v
	}
	return out
}

// deliveries returns the total number of load requests the backends
// received and the IDs delivered more than once.
func (lg *ledger) deliveries() (total int, dups []string) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return tally(lg.seen)
}

// tally sums deliveries per request ID and lists, sorted, the IDs
// delivered more than once.
func tally(seen map[string]int) (total int, dups []string) {
	for id, n := range seen {
		total += n
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", id, n))
		}
	}
	sort.Strings(dups)
	return total, dups
}

// loadOptions shape a load run.
type loadOptions struct {
	port      int
	host      string
	keepAlive int           // clients reusing one connection until told Connection: close
	fresh     int           // clients opening a new connection per request
	pause     time.Duration // between one client's requests
	limit     time.Duration // hard stop, whatever the test does
	tls       *tls.Config   // set: every connection is TLS, and a failed handshake a failed request
}

// load is a running load client.
type load struct {
	o       loadOptions
	stop    chan struct{}
	wg      sync.WaitGroup
	ok      atomic.Int64
	failed  atomic.Int64
	started atomic.Int64
	mu      sync.Mutex // guards errs
	errs    []string   // the first failures, for the test log
}

func startLoad(t testing.TB, o loadOptions) *load {
	t.Helper()
	if o.limit == 0 {
		o.limit = 10 * time.Minute
	}
	l := &load{o: o, stop: make(chan struct{})}
	deadline := time.Now().Add(o.limit)
	for i := range o.keepAlive + o.fresh {
		l.wg.Add(1)
		go l.client(i, i >= o.keepAlive, deadline)
	}
	t.Cleanup(func() { l.finish() })
	return l
}

// finish stops the clients and waits for their last requests.
func (l *load) finish() (ok, failed int64) {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load()
}

// progress waits until n more requests have succeeded, so a test knows the
// load runs against whatever srp serves now.
func (l *load) progress(t testing.TB, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for l.ok.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled: %d requests ok, waiting for %d; failures:\n%s", l.ok.Load(), want, l.errors())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *load) fail(format string, args ...any) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

func (l *load) errors() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.errs, "\n")
}

func (l *load) client(id int, fresh bool, deadline time.Time) {
	defer l.wg.Done()
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	const maxRequests = 2_000_000
	for n := 0; n < maxRequests && time.Now().Before(deadline); n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		if conn == nil {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", l.o.port), 5*time.Second)
			if err != nil {
				l.fail("client %d: dial: %v", id, err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if l.o.tls != nil {
				tc := tls.Client(c, l.o.tls)
				_ = tc.SetDeadline(time.Now().Add(15 * time.Second))
				if err := tc.Handshake(); err != nil {
					l.fail("client %d: TLS handshake: %v", id, err)
					c.Close()
					time.Sleep(10 * time.Millisecond)
					continue
				}
				c = tc
			}
			conn, br = c, bufio.NewReader(c)
		}
		reqID := fmt.Sprintf("c%d-%d", id, n)
		post := n%2 == 1
		keep, err := l.roundTrip(conn, br, reqID, post, fresh)
		if err != nil {
			l.fail("client %d (fresh=%v) request %s: %v", id, fresh, reqID, err)
		} else {
			l.ok.Add(1)
		}
		if err != nil || !keep {
			conn.Close()
			conn = nil
		}
		if l.o.pause > 0 {
			time.Sleep(l.o.pause)
		}
	}
}

// roundTrip sends one request and checks its answer. keep reports whether
// the connection may carry another request.
func (l *load) roundTrip(c net.Conn, br *bufio.Reader, id string, post, fresh bool) (keep bool, err error) {
	l.started.Add(1)
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	var b strings.Builder
	method, body := "GET", ""
	if post {
		method, body = "POST", strings.Repeat("p", 512+len(id))
	}
	fmt.Fprintf(&b, "%s /load/%s HTTP/1.1\r\nHost: %s\r\nX-Load-Id: %s\r\n", method, id, l.o.host, id)
	if post {
		fmt.Fprintf(&b, "Content-Type: text/plain\r\nContent-Length: %d\r\n", len(body))
	}
	if fresh {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		return false, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, fmt.Errorf("read response: %w", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d: %q", resp.StatusCode, got)
	}
	_, n, _ := strings.Cut(string(got), ":")
	if want := strconv.Itoa(len(body)); n != want {
		return false, fmt.Errorf("backend saw %s body bytes, sent %s (answer %q)", n, want, got)
	}
	return !resp.Close, nil
}
