package worker

import (
	"bytes"
	"net"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"srp/worker/upstream"
)

// tap is a second listener for a recorder's handler that keeps the bytes
// each connection brought, to tell which path sent a request.
type tap struct {
	net.Listener
	mu      sync.Mutex // guards streams
	streams []*bytes.Buffer
}

func tapped(tb testing.TB, rec *recorder) *tap {
	srv := httptest.NewUnstartedServer(rec.Config.Handler)
	t := &tap{Listener: srv.Listener}
	srv.Listener = t
	srv.Start()
	tb.Cleanup(srv.Close)
	return t
}

func (t *tap) Accept() (net.Conn, error) {
	c, err := t.Listener.Accept()
	if err != nil {
		return nil, err
	}
	b := &bytes.Buffer{}
	t.mu.Lock()
	t.streams = append(t.streams, b)
	t.mu.Unlock()
	return &tapConn{Conn: c, t: t, b: b}, nil
}

type tapConn struct {
	net.Conn
	t *tap
	b *bytes.Buffer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.t.mu.Lock()
	c.b.Write(p[:n])
	c.t.mu.Unlock()
	return n, err
}

// fastSignature is in a head only the fast path writes: net/http's
// Transport writes headers in sorted order, with X-Forwarded-Host and
// X-Forwarded-Proto between these two.
var fastSignature = regexp.MustCompile("X-Forwarded-For: [^\r\n]*\r\nX-Real-Ip: ")

// fastHeads counts the requests the fast path sent, probes left out.
func (t *tap) fastHeads() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, b := range t.streams {
		s := b.Bytes()
		for _, m := range fastSignature.FindAllIndex(s, -1) {
			start := bytes.LastIndex(s[:m[0]], []byte("\r\n\r\n")) + 4 // past the head before
			if start < 4 {
				start = 0
			}
			line, _, _ := bytes.Cut(s[start:], []byte("\r\n"))
			if !bytes.Contains(line, []byte(" /__probe ")) {
				n++
			}
		}
	}
	return n
}

func (t *tap) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.streams {
		b.Reset()
	}
}

// fuzzPair is FuzzFastPath's fixture, started once per fuzzing process
// (a worker pair costs far more than one input) and cleared when it stops.
var fuzzPair struct {
	mu sync.Mutex // guards p
	p  *fastPair
}

func sharedPair(f *testing.F) *fastPair {
	fuzzPair.mu.Lock()
	defer fuzzPair.mu.Unlock()
	if fuzzPair.p == nil {
		fuzzPair.p = newFastPair(f, nil, func(o *Options) { o.Logger = discardLogger() })
		f.Cleanup(func() {
			fuzzPair.mu.Lock()
			defer fuzzPair.mu.Unlock()
			fuzzPair.p = nil
		})
	}
	return fuzzPair.p
}

// maxFuzzInput bounds an input, so each one ends within its deadline.
const maxFuzzInput = 4 << 10

// FuzzFastPath sends the same bytes to a worker with the fast path and to
// one without, and checks that the fast path never delivers a request
// net/http would not (nothing when net/http delivers nothing, and the same
// requests otherwise), and that the clients get the same statuses.
func FuzzFastPath(f *testing.F) {
	for _, c := range fastCases() {
		if raw := c.bytes(); len(raw) <= maxFuzzInput && c.bug == "" {
			f.Add([]byte(raw))
		}
	}
	for _, c := range framingCases {
		if len(c.raw) <= maxFuzzInput {
			f.Add([]byte(c.raw))
		}
	}
	p := sharedPair(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > maxFuzzInput {
			return
		}
		p.reset()
		fast, slow := p.compare([]string{string(raw)}, 2*time.Second, false)
		// A backend records a request before it answers it.
		fv, sv := views(p.fastRec), views(p.slowRec)
		if len(fv) < fast.backend || len(sv) < slow.backend {
			t.Fatalf("backends recorded %d and %d requests, but answered %d and %d", len(fv), len(sv), fast.backend, slow.backend)
		}
		if len(sv) == 0 && len(fv) > 0 {
			t.Fatalf("net/http delivered nothing, the fast path delivered %d requests: %+v\ninput %q", len(fv), fv, raw)
		}
		if d := diffViews(fv, sv); d != "" {
			t.Fatalf("backends saw different requests:\n%sinput %q", d, raw)
		}
		if !slices.Equal(fast.statuses, slow.statuses) {
			t.Fatalf("statuses: fast path %v, net/http %v\ninput %q", fast, slow, raw)
		}
	})
}

// idPrefix is what every request ID this process generates starts with.
var idPrefix = func() string {
	id := string(upstream.AppendNewID(nil))
	return id[:strings.IndexByte(id, '-')+1]
}()
