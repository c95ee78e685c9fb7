// Package direct is the backend transport of net/http's request path.
// It sends a request without a body over a kept HTTP/1.1 connection on
// the calling goroutine: one write, then the response read in place. net/http's
// Transport runs two goroutines per connection and hands every request
// and response between them, which was most of the proxy's cost for an
// HTTP/2 stream. A request with a body, or asking for an upgrade, needs
// both directions at once and goes to the Fallback transport.
package direct

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"

	"srp/platform"
	"srp/worker/upstream"
)

// Transport is an http.RoundTripper to backends at req.URL.Host.
type Transport struct {
	Fallback http.RoundTripper // for requests with a body or an upgrade
	Timeout  time.Duration     // for a response head; 0 waits as long as the client does

	dialer net.Dialer
	mu     sync.Mutex
	idle   map[string][]*conn // by address, the most recently used last
	nIdle  int                // in idle, over all addresses
	closed bool               // keep no more connections
	sweep  *time.Timer
}

// New returns a Transport that waits timeout for a response head.
func New(fallback http.RoundTripper, timeout time.Duration) *Transport {
	return &Transport{Fallback: fallback, Timeout: timeout,
		dialer: net.Dialer{Timeout: upstream.DialTimeout, KeepAlive: upstream.KeepAlive}}
}

// Limits on what a backend sends.
const (
	maxResponseHead = 1 << 20 // as the fast path's
	bufSize         = 4 << 10
	sweepEvery      = 30 * time.Second
)

var (
	errHeadTooLarge = &upstream.ProtocolError{Msg: "response head too large"}
	errUnasked101   = &upstream.ProtocolError{Msg: "switching protocols, which no one asked for"}
	errStatus       = &upstream.ProtocolError{Msg: "response status below 100"}
	errBodyClosed   = errors.New("read on a closed response body")
)

// RoundTrip sends req to the backend at req.URL.Host. A failed dial is an
// *upstream.DialError: nothing was sent.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody || req.Header.Get("Upgrade") != "" {
		return t.Fallback.RoundTrip(req)
	}
	for fresh := false; ; fresh = true {
		c, reused, err := t.get(req.Context(), req.URL.Host, fresh)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(t, req)
		// A kept connection the backend closed just as it was reused (it
		// was alive when peeked): the backend saw nothing it could have
		// answered, so the request goes again on a new connection, as
		// net/http's Transport and the fast path retry it.
		if err != nil && reused && c.read == 0 && req.Context().Err() == nil &&
			!upstream.IsTimeout(err) && upstream.MayRetry(req.Method, false, err) {
			continue
		}
		return resp, err
	}
}

// conn is one kept connection to a backend.
type conn struct {
	net.Conn
	addr string
	raw  syscall.RawConn
	br   *bufio.Reader // only while a request is in progress
	used time.Time     // when it went idle

	read  int // bytes read for the request in progress
	limit int // while > 0, reading past it is errHeadTooLarge
}

// Read counts what the backend sent for the request in progress, and
// bounds its response head.
func (c *conn) Read(p []byte) (int, error) {
	if c.limit > 0 {
		if c.read >= c.limit {
			return 0, errHeadTooLarge
		}
		p = p[:min(len(p), c.limit-c.read)]
	}
	n, err := c.Conn.Read(p)
	c.read += n
	return n, err
}

// aLongTimeAgo is a deadline that has passed: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// setReadDeadline sets a read deadline that does not undo the wake-up of
// a client that left meanwhile: the context is done before its AfterFunc
// runs, so one of the two sees the other.
func (c *conn) setReadDeadline(ctx context.Context, t time.Time) {
	_ = c.SetReadDeadline(t)
	if ctx.Err() != nil {
		_ = c.SetDeadline(aLongTimeAgo)
	}
}

func (c *conn) roundTrip(t *Transport, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	c.read = 0
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(c)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.close()
		if ctx.Err() != nil {
			err = ctx.Err() // the wait ended because the client left
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(c.Conn)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writers.Put(bw)
	if err != nil {
		return fail(err)
	}
	if t.Timeout > 0 {
		c.setReadDeadline(ctx, time.Now().Add(t.Timeout))
	}
	c.limit = maxResponseHead
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		if resp.StatusCode < 100 {
			return fail(errStatus) // net/http's server would panic on it
		}
		if resp.StatusCode >= 200 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errUnasked101)
		}
		// ReverseProxy passes 1xx responses on to the client through this.
		// Each one passed on starts a new head limit, as net/http's
		// Transport does; the head timeout bounds how many come.
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
			c.limit = c.read + maxResponseHead
		}
	}
	c.limit = 0
	if t.Timeout > 0 {
		c.setReadDeadline(ctx, time.Time{}) // the body may take as long as the client reads
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	b := &body{t: t, c: c, ctx: ctx, stop: stop, keep: !resp.Close && !req.Close}
	if resp.Body == http.NoBody {
		b.release(b.keep)
		return resp, nil
	}
	b.rc, resp.Body = resp.Body, b
	return resp, nil
}

// body is a response body. The connection goes back to the idle set when
// the body was read to its end, and is closed if it was closed before.
// Close may come from another goroutine during a Read, as net/http's
// allows: it wakes the Read, which ends the request itself, so the
// connection's buffer is never given up under a read.
type body struct {
	t    *Transport
	c    *conn
	rc   io.ReadCloser
	ctx  context.Context
	stop func() bool
	keep bool

	mu      sync.Mutex
	done    bool // released: the connection is not this body's any more
	reading bool
	closed  bool // Close came during a Read
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.done || b.closed {
		b.mu.Unlock()
		return 0, errBodyClosed
	}
	b.reading = true
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	switch {
	case b.closed:
		b.release(false)
		return n, errBodyClosed
	case err == io.EOF:
		b.release(b.keep)
	case err != nil:
		if b.ctx.Err() != nil {
			err = b.ctx.Err()
		}
		b.release(false)
	}
	return n, err
}

func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.done:
	case b.reading:
		b.closed = true
		_ = b.c.SetDeadline(aLongTimeAgo)
	default:
		b.release(false)
	}
	return nil
}

// release ends the request on its connection. Bytes the backend sent past
// its response keep it from being reused, as does a cancelled context,
// whose wake-up may still come. The caller holds b.mu, or is the only one
// to know b.
func (b *body) release(keep bool) {
	b.done = true
	if !b.stop() || b.c.br.Buffered() > 0 {
		keep = false
	}
	if keep {
		b.t.put(b.c)
	} else {
		b.c.close()
	}
}

// Buffers are held only while a request is in progress: most kept
// connections are idle, and a reader is empty once its response is over.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
)

func (c *conn) dropReader() {
	c.br.Reset(nil)
	readers.Put(c.br)
	c.br = nil
}

func (c *conn) close() {
	c.dropReader()
	_ = c.Close()
}

// get returns a kept connection to addr that the backend has not closed
// and sent nothing on since, or with fresh a new one.
func (t *Transport) get(ctx context.Context, addr string, fresh bool) (c *conn, reused bool, err error) {
	for !fresh {
		t.mu.Lock()
		list := t.idle[addr]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		c = list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[addr] = list[:len(list)-1]
		t.nIdle--
		t.mu.Unlock()
		if c.alive() {
			return c, true, nil
		}
		_ = c.Close()
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, &upstream.DialError{Err: err}
	}
	c = &conn{Conn: nc, addr: addr}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c, false, nil
}

func (c *conn) alive() bool {
	return time.Since(c.used) < upstream.IdleTimeout && c.raw != nil && platform.Peek(c.raw) == platform.PeekEmpty
}

// put keeps c for the next request to its backend.
func (t *Transport) put(c *conn) {
	c.dropReader()
	c.used = time.Now()
	t.mu.Lock()
	if t.closed || len(t.idle[c.addr]) >= upstream.MaxIdlePerBackend || t.nIdle >= upstream.MaxIdle {
		t.mu.Unlock()
		_ = c.Close()
		return
	}
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	t.idle[c.addr] = append(t.idle[c.addr], c)
	t.nIdle++
	if t.sweep == nil {
		t.sweep = time.AfterFunc(sweepEvery, t.sweepIdle)
	}
	t.mu.Unlock()
}

// sweepIdle closes the kept connections past upstream.IdleTimeout or
// closed by their backend: get looks only at the most recently used, so
// under steady load the others would stay until the worker ends.
func (t *Transport) sweepIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, list := range t.idle {
		kept := list[:0]
		for _, c := range list {
			if c.alive() {
				kept = append(kept, c)
			} else {
				_ = c.Close()
			}
		}
		clear(list[len(kept):])
		t.idle[addr] = kept
		t.nIdle -= len(list) - len(kept)
	}
	t.sweep = nil
	if !t.closed {
		t.sweep = time.AfterFunc(sweepEvery, t.sweepIdle)
	}
}

// CloseIdleConnections closes every kept connection and keeps none after:
// the worker calls it once it has drained. The fallback's go too.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	t.closed = true
	for _, list := range t.idle {
		for _, c := range list {
			_ = c.Close()
		}
	}
	t.idle, t.nIdle = nil, 0
	if t.sweep != nil {
		t.sweep.Stop()
	}
	t.mu.Unlock()
	if f, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		f.CloseIdleConnections()
	}
}
