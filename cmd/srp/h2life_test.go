package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"srp/scripts/testkit"
)

// h2Host is the one service of the HTTP/2 lifecycle test, and the name its
// certificate is for.
const h2Host = "h2.srp.test"

// Each load stream cycles through these requests: quick GETs, a GET with
// an 8 KiB answer, GETs and POSTs the backend holds 50-300 ms (so streams
// are under way whenever a worker starts to drain), and quick POSTs.
var h2Kinds = []string{"get", "body", "slow", "post", "get", "slowpost"}

const (
	h2Clients   = 3     // at the start; one more joins after each reload and upgrade
	h2Streams   = 3     // requests each client keeps in flight, all on its one connection
	h2PerStream = 20000 // bound on one stream's requests
	// Bound on the load's time: well past what the test takes on two cores
	// shared with other work, so only a machine too slow to tell anything
	// stops it.
	h2LoadLimit = 90 * time.Second
	h2LongHold  = 3 * time.Second // a long answer's time at the backend
	h2Burst     = 8               // short streams in flight beside the second long one
	// The second long case's connection reads what srp sends this late,
	// as over a network rather than loopback, where a GOAWAY reaches the
	// client within microseconds and hardly a stream is ever opened past
	// it. Over a network a busy client opens several.
	h2Latency = 25 * time.Millisecond
)

// TestHTTP2AcrossReloadsAndUpgrades runs HTTP/2 load through 15 reloads
// and 2 upgrades. A draining worker sends GOAWAY at once, finishes the
// streams it took and closes; Go's client
// retries on a new connection only the streams the GOAWAY says were never
// processed, so a request fails if the worker cuts a stream it took, or
// answers one wrongly. Every request must get its own complete answer,
// once, over HTTP/2, and so must two 3 s streams across one reload.
func TestHTTP2AcrossReloadsAndUpgrades(t *testing.T) {
	started := time.Now()
	// Far from expiry: a certificate near its end would have srp renew it
	// from an ACME server that is not there.
	certs := t.TempDir()
	roots := cachedCert(t, certs, h2Host, time.Now().Add(90*24*time.Hour))
	fleet := newH2Fleet(t, 18) // a backend per config generation: the start, 15 reloads, 2 upgrades
	httpsPort := freePort(t)
	// srp's default -timeout, 30 s, gives a draining worker's streams
	// that long to finish.
	s := startLife(t, srpBin, fleet.config(0), "-url", "https://"+h2Host,
		"-http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"-https-addr", fmt.Sprintf("127.0.0.1:%d", httpsPort),
		"-certs", certs, "-acme-directory", "https://127.0.0.1:1/dir", "-timeout", "30s")
	u := &upgrader{t: t, s: s, drain: 30 * time.Second}
	r := &h2Run{t: t, port: httpsPort, roots: roots, fleet: fleet, start: started,
		stop: make(chan struct{}), conns: map[net.Conn]bool{}, retiredBy: map[int]string{}}
	r.setPhase("start")
	t.Cleanup(r.finish)

	r.deadline = time.Now().Add(h2LoadLimit)
	for range h2Clients {
		r.addClient(0)
	}
	r.progress(300)

	ops := slices.Concat(slices.Repeat([]string{"reload"}, 5), []string{"upgrade"},
		slices.Repeat([]string{"reload"}, 5), []string{"upgrade"}, slices.Repeat([]string{"reload"}, 5))
	longA, longB := make(chan h2Long, 1), make(chan h2Long, 1)
	const longAt = 3      // the reload the long streams cross
	var drainAt time.Time // when the worker it retires began to drain
	reloads, upgrades := 0, 0
	for i, op := range ops {
		gen := i + 1
		setConfig(t, s.config, fleet.config(gen))
		opStart := time.Now()
		switch op {
		case "reload":
			reloads++
			r.setPhase(fmt.Sprintf("reload #%d (generation %d)", reloads, gen))
			r.retire(gen-1, fmt.Sprintf("reload #%d", reloads))
			var bClient *http.Client
			if reloads == longAt {
				// A: one stream on its own connection, under way when
				// the reload starts. B: a 3 s stream on another
				// connection, with short ones opened back to back beside
				// it, as a browser fetches a page beside a download, when
				// the GOAWAY goes out: some of those cross it and are
				// retried elsewhere.
				aClient := r.warm(gen-1, 0)
				go func() { longA <- r.long(aClient, "longA") }()
				if !r.waitLongs(1, 10*time.Second) {
					t.Fatal("the backend never got the long request")
				}
				bClient = r.warm(gen-1, h2Latency)
				go func() { longB <- r.longBusy(bClient, "longB") }()
				if !r.waitLongs(2, 10*time.Second) {
					t.Fatal("the backend never got the second long request")
				}
			}
			// After an upgrade the serving supervisor is no child of ours:
			// the pidfile names it.
			pid, err := readPID(s.pidfile)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
				t.Fatalf("SIGHUP to %d: %v", pid, err)
			}
			if bClient != nil {
				drainAt = time.Now()
			}
			s.waitLogCount(`msg="reload done"`, reloads, 30*time.Second)
		case "upgrade":
			upgrades++
			r.setPhase(fmt.Sprintf("upgrade #%d (generation %d)", upgrades, gen))
			r.retire(gen-1, fmt.Sprintf("upgrade #%d", upgrades))
			u.upgrade(upgrades)
		}
		r.logOp(fmt.Sprintf("%s to generation %d took %v", op, gen, time.Since(opStart).Round(time.Millisecond)))
		// A client joins on the new worker, so that every worker has
		// streams of several connections in flight when its drain sends
		// GOAWAY.
		r.addClient(gen)
		r.progress(200)
	}
	r.setPhase("after the last reload")
	last := len(ops)

	// Every client moves to the last worker once the earlier ones have
	// sent their GOAWAY, and once they have all exited nothing else serves.
	if !testkit.WaitFor(20*time.Second, func() bool { return fleet.clientsAt(last) == r.clients }) {
		t.Errorf("only %d of %d clients reached the last worker 20 s after the last reload%s", fleet.clientsAt(last), r.clients, r.overrun())
	}
	s.waitLogCount(`msg="worker exited"`, len(ops), 20*time.Second) // every worker but the last
	before := fleet.perGen()
	if !testkit.WaitFor(30*time.Second, func() bool { return fleet.perGen()[last] >= before[last]+300 }) {
		t.Errorf("the last worker's backend got %d requests in 30 s%s", fleet.perGen()[last]-before[last], r.overrun())
	}
	after := fleet.perGen()
	for g := range after {
		if g != last && after[g] != before[g] {
			t.Errorf("generation %d got %d requests after every old worker exited", g, after[g]-before[g])
		}
	}
	end := time.Since(started)

	r.finish()
	for _, c := range []struct {
		name string
		ch   chan h2Long
		gen  int
	}{{"A (under way when the reload started)", longA, longAt - 1}, {"B (under way when the GOAWAY went out)", longB, longAt - 1}} {
		select {
		case l := <-c.ch:
			t.Logf("long stream %s: %s", c.name, l.describe(drainAt))
			if l.err != nil {
				t.Errorf("long stream %s failed: %v", c.name, l.err)
			} else if l.gen != c.gen {
				t.Errorf("long stream %s was answered by generation %d, not by the draining worker's %d", c.name, l.gen, c.gen)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("long stream %s never ended", c.name)
		}
	}
	if pids := s.workerPIDs("reload done"); len(pids) >= longAt-1 {
		if line := workerLine(s.out.String(), pids[longAt-2], `msg="worker drained"`); line != "" {
			t.Logf("the worker the long streams crossed: %s", line)
		}
	}

	ok, failed := r.ok.Load(), r.failed.Load()
	total, dups := fleet.deliveries()
	total -= int(fleet.longs.Load()) // checked on their own above
	t.Logf("HTTP/2: %d requests answered, %d failed, %d not over HTTP/2, %d retried by the client on a new connection, %d connections, in %v",
		ok, failed, r.notH2.Load(), r.retried.Load(), r.connCount(), end.Round(time.Millisecond))
	t.Logf("backends received %d requests; per generation: %v", total, fleet.perGen())
	t.Logf("operations:\n%s", strings.Join(r.opLog(), "\n"))
	if failed > 0 {
		t.Errorf("%d requests failed:\n%s", failed, r.errors())
	}
	if n := r.notH2.Load(); n > 0 {
		t.Errorf("%d answers were not HTTP/2", n)
	}
	if len(dups) > 0 {
		t.Errorf("%d requests reached a backend more than once: %v", len(dups), dups[:min(len(dups), 10)])
	}
	if failed == 0 && int64(total) != ok {
		t.Errorf("backends received %d requests, clients got %d answers", total, ok)
	}
	if ok < 2000 {
		t.Errorf("only %d requests succeeded: the load did not run", ok)
	}
	// A worker that exits otherwise than with 0 crashed while it drained,
	// or, built with -race, found a data race.
	out := s.out.String()
	for line := range strings.Lines(out) {
		if strings.Contains(line, `msg="worker exited"`) && !strings.Contains(line, `status="exit status 0"`) {
			t.Errorf("a worker failed: %s", strings.TrimSpace(line))
		}
	}
	if strings.Contains(out, "WARNING: DATA RACE") {
		t.Error("srp found a data race")
	}
}

// h2Fleet is one backend per config generation. Each tells in X-Gen which
// one it is, so a client knows which worker routed its request, and
// records every request ID it answers, so a request processed twice shows.
type h2Fleet struct {
	addrs []string
	longs atomic.Int32 // long requests received

	mu     sync.Mutex     // guards seen, gen and client
	seen   map[string]int // request ID → deliveries
	gen    []int          // requests per generation
	client []map[int]int  // per generation: load client → requests
}

func newH2Fleet(t *testing.T, n int) *h2Fleet {
	f := &h2Fleet{seen: map[string]int{}, gen: make([]int, n), client: make([]map[int]int, n)}
	for g := range n {
		f.client[g] = map[int]int{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.serve(g, w, r) }))
		t.Cleanup(srv.Close)
		f.addrs = append(f.addrs, srv.Listener.Addr().String())
	}
	return f
}

func (f *h2Fleet) config(gen int) string {
	return fmt.Sprintf(`{"Services": {%q: {"Backends": [%q]}}}`, h2Host, f.addrs[gen])
}

// serve answers /r/ID/KIND with what h2Answer says, after ?d= milliseconds.
func (f *h2Fleet) serve(gen int, w http.ResponseWriter, r *http.Request) {
	id, kind, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/r/"), "/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client side reports it
	}
	client, err := strconv.Atoi(r.Header.Get("X-Client"))
	if err != nil {
		client = -1
	}
	f.mu.Lock()
	f.seen[id]++
	f.gen[gen]++
	if client >= 0 {
		f.client[gen][client]++
	}
	f.mu.Unlock()
	w.Header().Set("X-Gen", strconv.Itoa(gen))
	if kind == "long" {
		f.longs.Add(1)
		io.WriteString(w, h2LongHead(id))
		w.(http.Flusher).Flush()
		select {
		case <-time.After(h2LongHold):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, h2LongTail(id))
		return
	}
	if d, err := strconv.Atoi(r.URL.Query().Get("d")); err == nil {
		select {
		case <-time.After(time.Duration(d) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	}
	io.WriteString(w, h2Answer(id, kind, string(body)))
}

// h2Answer is the exact body the backends send for a request.
func h2Answer(id, kind, body string) string {
	switch kind {
	case "body":
		return "ok " + id + "\n" + strings.Repeat(id+";", 8<<10/(len(id)+1))
	case "post", "slowpost":
		return "ok " + id + " " + body
	}
	return "ok " + id
}

func h2LongHead(id string) string { return "long " + id + " begins\n" }
func h2LongTail(id string) string { return "long " + id + " ends " + strings.Repeat(".", 4<<10) + "\n" }

func (f *h2Fleet) perGen() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.gen)
}

// clientsAt counts the load clients generation gen has served.
func (f *h2Fleet) clientsAt(gen int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.client[gen])
}

func (f *h2Fleet) deliveries() (total int, dups []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return tally(f.seen)
}

// h2Run is the HTTP/2 load and its tally.
type h2Run struct {
	t     *testing.T
	port  int
	roots *x509.CertPool
	fleet *h2Fleet
	start time.Time
	stop  chan struct{}
	once  sync.Once

	deadline time.Time // of the load, whatever the test does
	clients  int       // load clients started
	wg       sync.WaitGroup
	phase    atomic.Pointer[h2Phase]

	ok, failed, notH2, retried, probes atomic.Int64

	mu         sync.Mutex // guards the fields below
	errs       []string   // the first failures
	ops        []string
	conns      map[net.Conn]bool // every connection a client used
	retiredBy  map[int]string    // generation → the reload or upgrade that retired its worker
	transports []*http.Transport
}

// h2Phase names what the test was doing, for the report of a failure.
type h2Phase struct {
	name string
	at   time.Time
}

func (r *h2Run) setPhase(name string) { r.phase.Store(&h2Phase{name: name, at: time.Now()}) }

func (r *h2Run) logOp(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, fmt.Sprintf("  at %v: %s", time.Since(r.start).Round(time.Millisecond), s))
}

func (r *h2Run) opLog() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

// finish stops the load, waits for its requests, and closes the clients'
// connections, so the last worker's drain need not wait for them.
func (r *h2Run) finish() {
	r.once.Do(func() {
		close(r.stop)
		r.wg.Wait()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, tr := range r.transports {
			tr.CloseIdleConnections()
		}
	})
}

// fail records a failed request. last is the generation whose worker gave
// the client its answer before, -1 if none: a draining worker fails
// requests seconds after the reload or upgrade that retired it, when
// another may run.
func (r *h2Run) fail(id, kind string, last int, format string, args ...any) {
	r.failed.Add(1)
	p := r.phase.Load()
	now := time.Now()
	msg := fmt.Sprintf("at %v, %v into %s: %s %s: %s", now.Sub(r.start).Round(time.Millisecond),
		now.Sub(p.at).Round(time.Millisecond), p.name, kind, id, fmt.Sprintf(format, args...))
	r.mu.Lock()
	defer r.mu.Unlock()
	if last >= 0 {
		msg += fmt.Sprintf(" (the client's answer before came from generation %d", last)
		if by, ok := r.retiredBy[last]; ok {
			msg += ", whose worker " + by + " retired"
		}
		msg += ")"
	}
	if len(r.errs) < 30 {
		r.errs = append(r.errs, msg)
	}
}

// retire notes that op retires the worker of generation gen.
func (r *h2Run) retire(gen int, op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retiredBy[gen] = op
}

func (r *h2Run) errors() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}

func (r *h2Run) connCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// client is a new HTTP client with a transport, and so connections, of its
// own. It offers h2 and HTTP/1.1, so an answer over HTTP/1.1 would show.
// With latency, what it reads from srp arrives that much later.
func (r *h2Run) client(latency time.Duration) *http.Client {
	addr := fmt.Sprintf("127.0.0.1:%d", r.port)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: r.roots},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			if err != nil || latency == 0 {
				return c, err
			}
			return newDelayedReads(c, latency), nil
		},
	}
	r.mu.Lock()
	r.transports = append(r.transports, tr)
	r.mu.Unlock()
	return &http.Client{Transport: tr}
}

// attempts records the connections one request was sent on: more than
// one means the client retried it after a GOAWAY.
type attempts struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (a *attempts) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if !slices.Contains(a.conns, info.Conn) {
			a.conns = append(a.conns, info.Conn)
		}
	}}
}

// do sends one request and checks its answer; it returns the generation
// that answered, or -1 if the request failed. last is as for fail.
func (r *h2Run) do(c *http.Client, client int, id, kind string, n, last int) int {
	path, method, body := "/r/"+id+"/"+kind, "GET", ""
	if strings.HasPrefix(kind, "slow") {
		path += "?d=" + strconv.Itoa(50+n*37%251)
	}
	if strings.HasSuffix(kind, "post") {
		method, body = "POST", id+":"+strings.Repeat("b", 64+n*131%900)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var at attempts
	ctx = httptrace.WithClientTrace(ctx, at.trace())
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body) // which lets the client retry it
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+h2Host+path, rd)
	if err != nil {
		r.t.Error(err)
		return -1
	}
	req.Header.Set("X-Client", strconv.Itoa(client))
	resp, err := c.Do(req)
	at.mu.Lock()
	if len(at.conns) > 1 {
		r.retried.Add(1)
	}
	r.mu.Lock()
	for _, c := range at.conns {
		r.conns[c] = true
	}
	r.mu.Unlock()
	at.mu.Unlock()
	if err != nil {
		r.fail(id, kind, last, "%v", err)
		return -1
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := h2Answer(id, kind, body)
	switch {
	case err != nil:
		r.fail(id, kind, last, "%s, body cut after %d bytes: %v", resp.Proto, len(got), err)
	case resp.StatusCode != http.StatusOK:
		r.fail(id, kind, last, "%s status %d: %q", resp.Proto, resp.StatusCode, got)
	case resp.ProtoMajor != 2:
		r.notH2.Add(1)
		r.fail(id, kind, last, "answered over %s", resp.Proto)
	case string(got) != want:
		r.fail(id, kind, last, "body of %d bytes is not the %d the backend sent: %.80q", len(got), len(want), got)
	default:
		r.ok.Add(1)
		gen, _ := strconv.Atoi(resp.Header.Get("X-Gen"))
		return gen
	}
	return -1
}

// stream sends one request after another on c; its first goes to the
// worker of generation gen.
func (r *h2Run) stream(c *http.Client, client, stream, gen int, deadline time.Time) {
	defer r.wg.Done()
	last := gen
	for n := 0; n < h2PerStream && time.Now().Before(deadline); n++ {
		select {
		case <-r.stop:
			return
		default:
		}
		kind := h2Kinds[(n+stream)%len(h2Kinds)]
		if got := r.do(c, client, fmt.Sprintf("c%ds%d-%d", client, stream, n), kind, n, last); got >= 0 {
			last = got
		} else {
			time.Sleep(10 * time.Millisecond) // no busy loop against a dead srp
		}
	}
}

// addClient starts a load client whose connection is to the worker of
// generation gen.
func (r *h2Run) addClient(gen int) {
	r.t.Helper()
	c := r.warm(gen, 0)
	for stream := range h2Streams {
		r.wg.Add(1)
		go r.stream(c, r.clients, stream, gen, r.deadline)
	}
	r.clients++
}

// warm returns a new client whose connection is to the worker serving
// generation gen. A connection made just after a reload may still be
// accepted by the worker before, which shares the listening socket until
// it hears that it drains; such a client is dropped and another tried.
func (r *h2Run) warm(gen int, latency time.Duration) *http.Client {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := r.client(latency)
		n := r.probes.Add(1)
		got := r.do(c, -1, fmt.Sprintf("probe%d", n), "get", 0, -1)
		if got == gen {
			return c
		}
		c.CloseIdleConnections()
		if time.Now().After(deadline) {
			r.t.Fatalf("no new connection reached generation %d's worker within 10 s (last answer from %d); failures:\n%s", gen, got, r.errors())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// progress waits until n more requests have been answered.
func (r *h2Run) progress(n int64) {
	r.t.Helper()
	want := r.ok.Load() + n
	if !testkit.WaitFor(30*time.Second, func() bool { return r.ok.Load() >= want }) {
		r.t.Fatalf("HTTP/2 load stalled: %d answered, waiting for %d%s; failures:\n%s", r.ok.Load(), want, r.overrun(), r.errors())
	}
}

// overrun explains a stalled load that has reached its time bound.
func (r *h2Run) overrun() string {
	if time.Now().Before(r.deadline) {
		return ""
	}
	return fmt.Sprintf(" (the load stopped at its %v bound: the machine is too slow for this test)", h2LoadLimit)
}

func (r *h2Run) waitLongs(n int32, d time.Duration) bool {
	return testkit.WaitFor(d, func() bool { return r.fleet.longs.Load() >= n })
}

// h2Long is the outcome of one long request.
type h2Long struct {
	start, head, end time.Time // sent, first bytes read, last read
	gen              int
	err              error
}

func (l h2Long) describe(ref time.Time) string {
	rel := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Sub(ref).Round(time.Millisecond).String()
	}
	return fmt.Sprintf("sent at %s, head read at %s, ended at %s (relative to the drain's start), generation %d, err %v",
		rel(l.start), rel(l.head), rel(l.end), l.gen, l.err)
}

// long sends one GET on c that the backend answers over h2LongHold, and
// checks it arrives whole.
func (r *h2Run) long(c *http.Client, id string) h2Long {
	l := h2Long{start: time.Now(), gen: -1}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+h2Host+"/r/"+id+"/long", nil)
	if err != nil {
		l.err = err
		return l
	}
	resp, err := c.Do(req)
	if err != nil {
		l.err = err
		return l
	}
	defer resp.Body.Close()
	l.gen, _ = strconv.Atoi(resp.Header.Get("X-Gen"))
	head := make([]byte, len(h2LongHead(id)))
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		l.err = fmt.Errorf("first part: %w", err)
		return l
	}
	l.head = time.Now()
	rest, err := io.ReadAll(resp.Body)
	l.end = time.Now()
	switch {
	case err != nil:
		l.err = fmt.Errorf("%s, body cut after %d bytes: %w", resp.Proto, len(head)+len(rest), err)
	case resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2:
		l.err = fmt.Errorf("%s status %d", resp.Proto, resp.StatusCode)
	case string(head)+string(rest) != h2LongHead(id)+h2LongTail(id):
		l.err = fmt.Errorf("body %.60q... of %d bytes, not the %d the backend sent", head, len(head)+len(rest), len(h2LongHead(id)+h2LongTail(id)))
	case l.end.Sub(l.start) < h2LongHold:
		l.err = fmt.Errorf("answered in %v, before the backend's %v", l.end.Sub(l.start), h2LongHold)
	}
	return l
}

// longBusy is long with h2Burst short GETs kept in flight on c beside
// the long one, from the moment the backend has it until its answer ends.
func (r *h2Run) longBusy(c *http.Client, id string) h2Long {
	have := r.fleet.longs.Load()
	done := make(chan h2Long, 1)
	go func() { done <- r.long(c, id) }()
	if !r.waitLongs(have+1, 10*time.Second) {
		return <-done
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range h2Burst {
		wg.Go(func() {
			last := -1
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if got := r.do(c, -1, fmt.Sprintf("%s-%d-%d", id, g, n), "get", n, last); got >= 0 {
					last = got
				} else {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	l := <-done
	close(stop)
	wg.Wait()
	return l
}

// workerLine returns the last line of out with msg logged by worker pid.
func workerLine(out string, pid int, msg string) string {
	var found string
	for line := range strings.Lines(out) {
		if strings.Contains(line, msg) && strings.Contains(line, " pid="+strconv.Itoa(pid)+" ") {
			found = strings.TrimSpace(line)
		}
	}
	return found
}

// delayedReads delivers what its connection reads d after it arrived, a
// one-way network delay from srp to the client.
type delayedReads struct {
	net.Conn
	d    time.Duration
	in   chan delayedChunk
	cur  []byte
	rerr error
}

type delayedChunk struct {
	b   []byte
	at  time.Time
	err error
}

func newDelayedReads(c net.Conn, d time.Duration) *delayedReads {
	dr := &delayedReads{Conn: c, d: d, in: make(chan delayedChunk, 4096)}
	go func() {
		for {
			b := make([]byte, 16<<10)
			n, err := c.Read(b)
			dr.in <- delayedChunk{b: b[:n], at: time.Now(), err: err}
			if err != nil {
				return
			}
		}
	}()
	return dr
}

func (dr *delayedReads) Read(p []byte) (int, error) {
	for len(dr.cur) == 0 {
		if dr.rerr != nil {
			return 0, dr.rerr
		}
		ch := <-dr.in
		time.Sleep(time.Until(ch.at.Add(dr.d)))
		dr.cur, dr.rerr = ch.b, ch.err
	}
	n := copy(p, dr.cur)
	dr.cur = dr.cur[n:]
	return n, nil
}
