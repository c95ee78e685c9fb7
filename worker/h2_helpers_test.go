package worker

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"srp/scripts/testkit"
)

// runH2 is runTLS with the worker's options open to the test, so that an
// attack can shorten the timeouts that end it.
func runH2(t *testing.T, config string, tweak func(*Options)) (addr string, roots *x509.CertPool) {
	t.Helper()
	cert, pool := testkit.SelfSigned(t, "app.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runGuarded(t, config, func(o *Options) {
		o.HTTPS = ln
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if tweak != nil {
			tweak(o)
		}
	})
	return ln.Addr().String(), pool
}

// h2Backend answers "ok", or 1 MiB for /big, and counts what it is asked
// apart from the bystander's requests.
// It keeps no record per request: the attacks send tens of thousands, and
// the memory they would take is measured in the same process.
type h2Backend struct {
	*httptest.Server
	requests atomic.Int64 // all but the bystander's
	inflight atomic.Int64
	peak     atomic.Int64 // most requests in progress at once
}

const h2BigBody = 1 << 20

func newH2Backend(t testing.TB) *h2Backend {
	t.Helper()
	b := &h2Backend{}
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bystander" {
			io.WriteString(w, "ok")
			return
		}
		b.requests.Add(1)
		n := b.inflight.Add(1)
		defer b.inflight.Add(-1)
		for {
			p := b.peak.Load()
			if n <= p || b.peak.CompareAndSwap(p, n) {
				break
			}
		}
		if r.URL.Path != "/big" {
			io.WriteString(w, "ok")
			return
		}
		for sent := 0; sent < h2BigBody; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *h2Backend) addr() string { return b.Listener.Addr().String() }

// h2Attacker is a client connection that writes HTTP/2 frame by frame,
// whatever the protocol says, and reads only when told to.
type h2Attacker struct {
	t    testing.TB
	conn *tls.Conn
	bw   *bufio.Writer
	fr   *http2.Framer // writes only, through bw
	seen *h2Seen       // set by read
}

// dialH2 connects with ALPN h2 and sends the preface and settings; it
// reads nothing. dialer may set socket options; nil is a plain dial.
func dialH2(t testing.TB, addr string, roots *x509.CertPool, dialer *net.Dialer, settings ...http2.Setting) *h2Attacker {
	t.Helper()
	d := net.Dialer{}
	if dialer != nil {
		d = *dialer
	}
	d.Timeout = 5 * time.Second
	conn, err := tls.DialWithDialer(&d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "app.test", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		conn.Close()
		t.Fatalf("negotiated %q, want h2", p)
	}
	a := &h2Attacker{t: t, conn: conn, bw: bufio.NewWriterSize(conn, 64<<10)}
	a.fr = http2.NewFramer(a.bw, nil)
	// Some attacks are illegal on purpose; the framer must not refuse them.
	a.fr.AllowIllegalWrites = true
	t.Cleanup(func() {
		conn.Close()
		if a.seen != nil {
			<-a.seen.done
		}
	})
	io.WriteString(a.bw, http2.ClientPreface)
	if err := a.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	if err := a.flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *h2Attacker) flush() error { return a.bw.Flush() }

// handshake waits for the server's SETTINGS and acknowledges them, as a
// client does before its requests.
func (a *h2Attacker) handshake() {
	a.t.Helper()
	fr := http2.NewFramer(nil, a.conn)
	a.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer a.conn.SetReadDeadline(time.Time{})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			a.t.Fatalf("waiting for the server's SETTINGS: %v", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			break
		}
	}
	if err := a.fr.WriteSettingsAck(); err != nil {
		a.t.Fatal(err)
	}
	if err := a.flush(); err != nil {
		a.t.Fatal(err)
	}
}

// requestBlock is the header block of GET https://app.test+path. Every
// field is a literal never indexed, so the block leaves no state in the
// server's decoder and can be sent again as it is.
func requestBlock(path string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "app.test"}, {Name: ":path", Value: path},
	} {
		f.Sensitive = true
		enc.WriteField(f)
	}
	return buf.Bytes()
}

// h2Seen is what the server sent an attacker, read in the background.
type h2Seen struct {
	mu        sync.Mutex
	goAway    *http2.ErrCode // the first GOAWAY's code
	goAwayMsg string
	resets    map[http2.ErrCode]int // RST_STREAM frames by code
	statuses  map[string]int        // responses by :status
	pingAcks  int
	setAcks   int // SETTINGS ACKs
	dataBytes int
	err       error     // why reading ended
	endedAt   time.Time // when
	done      chan struct{}
}

// read starts reading what the server sends until the connection ends.
func (a *h2Attacker) read() *h2Seen {
	s := &h2Seen{resets: map[http2.ErrCode]int{}, statuses: map[string]int{}, done: make(chan struct{})}
	a.seen = s
	fr := http2.NewFramer(nil, a.conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	go func() {
		defer close(s.done)
		for {
			f, err := fr.ReadFrame()
			s.mu.Lock()
			if err != nil {
				s.err, s.endedAt = err, time.Now()
				s.mu.Unlock()
				return
			}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				if s.goAway == nil {
					code := f.ErrCode
					s.goAway, s.goAwayMsg = &code, string(f.DebugData())
				}
			case *http2.RSTStreamFrame:
				s.resets[f.ErrCode]++
			case *http2.MetaHeadersFrame:
				s.statuses[f.PseudoValue("status")]++
			case *http2.PingFrame:
				if f.IsAck() {
					s.pingAcks++
				}
			case *http2.SettingsFrame:
				if f.IsAck() {
					s.setAcks++
				}
			case *http2.DataFrame:
				s.dataBytes += len(f.Data())
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// ended reports whether the server has ended the connection.
func (s *h2Seen) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// waitEnd waits up to d for the server to end the connection.
func (s *h2Seen) waitEnd(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	}
}

// await waits up to d for cond, which reads s under its lock.
func (s *h2Seen) await(d time.Duration, cond func(*h2Seen) bool) bool {
	return testkit.WaitFor(d, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return cond(s)
	})
}

// String tells what the server did, for the test's log.
func (s *h2Seen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	if s.goAway != nil {
		fmt.Fprintf(&b, "GOAWAY %v %q; ", *s.goAway, s.goAwayMsg)
	} else {
		b.WriteString("no GOAWAY; ")
	}
	fmt.Fprintf(&b, "RST_STREAM %v; responses %v; PING ACKs %d; SETTINGS ACKs %d; DATA %d bytes; ",
		s.resets, s.statuses, s.pingAcks, s.setAcks, s.dataBytes)
	if s.err != nil {
		fmt.Fprintf(&b, "connection ended: %v", s.err)
	} else {
		b.WriteString("connection open")
	}
	return b.String()
}

// goAwayCode returns the first GOAWAY's code, or false without one.
func (s *h2Seen) goAwayCode() (http2.ErrCode, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.goAway == nil {
		return 0, false
	}
	return *s.goAway, true
}

// closedByServer reports whether reading ended because the server closed
// the connection (EOF or reset), not because of a local error or deadline.
func (s *h2Seen) closedByServer() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ne net.Error
	return s.err != nil && !errors.Is(s.err, net.ErrClosed) && !(errors.As(s.err, &ne) && ne.Timeout())
}

// memWatch samples the process's memory while an attack runs: the worker
// serves in this process, so its growth is the worker's (plus the test's
// own, which is small and bounded).
type memWatch struct {
	base               runtime.MemStats
	peakInuse, peakSys uint64
	stop, done         chan struct{}
	once               sync.Once
}

func watchMemory(t testing.TB) *memWatch {
	m := &memWatch{stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(m.halt) // when the test ends before check
	runtime.GC()
	runtime.ReadMemStats(&m.base)
	m.peakInuse, m.peakSys = m.base.HeapInuse, m.base.Sys
	go func() {
		defer close(m.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
			runtime.ReadMemStats(&ms)
			m.peakInuse, m.peakSys = max(m.peakInuse, ms.HeapInuse), max(m.peakSys, ms.Sys)
		}
	}()
	return m
}

// maxMemGrowth bounds how far the heap in use may grow during one attack:
// far above what the attack's own bounded work needs, far below what the
// attack would cost if the server kept what it is sent.
const maxMemGrowth = 64 << 20

func (m *memWatch) halt() {
	m.once.Do(func() { close(m.stop) })
	<-m.done
}

// check stops sampling and fails the test if the heap in use grew past
// maxMemGrowth at any sample.
func (m *memWatch) check(t testing.TB) {
	t.Helper()
	m.halt()
	inuse, sys := m.peakInuse-m.base.HeapInuse, m.peakSys-m.base.Sys
	t.Logf("memory: heap in use grew at most %.1f MiB (from %.1f MiB), Sys %.1f MiB", float64(inuse)/(1<<20), float64(m.base.HeapInuse)/(1<<20), float64(sys)/(1<<20))
	if inuse > maxMemGrowth {
		t.Errorf("heap in use grew %d MiB during the attack, limit %d MiB", inuse>>20, maxMemGrowth>>20)
	}
}

// bystander is a well-behaved HTTP/2 client on connections of its own,
// asking for answers while an attack runs.
type bystander struct {
	stop, done chan struct{}
	once       sync.Once
	n          int
	slowest    time.Duration
	failures   []string
}

// bystanderLimit is how long one answer may take while an attack runs.
const bystanderLimit = time.Second

// startBystander connects before the attack starts, then asks every 10 ms
// on that connection and, every fifth time, on a new one too (the attack
// must not keep the listener from taking connections).
func startBystander(t testing.TB, addr string, roots *x509.CertPool) *bystander {
	t.Helper()
	newClient := func() (*http.Client, *http.Transport) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.test"}, ForceAttemptHTTP2: true}
		return &http.Client{Transport: tr, Timeout: bystanderLimit}, tr
	}
	kept, keptTr := newClient()
	get := func(c *http.Client) (time.Duration, error) {
		start := time.Now()
		req, _ := http.NewRequest("GET", "https://"+addr+"/bystander", nil)
		req.Host = "app.test"
		resp, err := c.Do(req)
		if err != nil {
			return time.Since(start), err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != "ok") {
			err = fmt.Errorf("%s %d %q", resp.Proto, resp.StatusCode, body)
		}
		return time.Since(start), err
	}
	if _, err := get(kept); err != nil {
		t.Fatalf("bystander before the attack: %v", err)
	}
	b := &bystander{stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(b.halt) // when the test ends before check
	go func() {
		defer close(b.done)
		defer keptTr.CloseIdleConnections()
		for i := 0; ; i++ {
			select {
			case <-b.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			b.record(get(kept))
			if i%5 == 0 {
				fresh, tr := newClient()
				b.record(get(fresh))
				tr.CloseIdleConnections()
			}
		}
	}()
	return b
}

func (b *bystander) halt() {
	b.once.Do(func() { close(b.stop) })
	<-b.done
}

func (b *bystander) record(d time.Duration, err error) {
	b.n++
	b.slowest = max(b.slowest, d)
	if err != nil {
		b.failures = append(b.failures, fmt.Sprintf("after %v: %v", d.Round(time.Millisecond), err))
	}
}

// check stops the bystander and fails the test unless every answer came,
// each within bystanderLimit.
func (b *bystander) check(t testing.TB) {
	t.Helper()
	b.halt()
	t.Logf("bystander: %d answers, slowest %v", b.n, b.slowest.Round(time.Millisecond))
	if len(b.failures) > 0 {
		t.Errorf("bystander: %d of %d requests failed or took over %v: %s", len(b.failures), b.n, bystanderLimit, strings.Join(b.failures, "; "))
	}
	if b.n == 0 {
		t.Errorf("bystander asked nothing during the attack")
	}
}
