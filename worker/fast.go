package worker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"srp/registry"
)

// The fast path serves the common HTTP/1.1 request itself: one goroutine
// per client connection reads the request, writes it to a pooled backend
// connection and copies the response back, with no goroutine hand-offs, no
// header maps and single writes where the bytes allow. That is most of
// what a request costs through net/http's server, Transport and
// ReverseProxy together (see the README's Performance section).
//
// Anything unusual goes to net/http instead, with the bytes already read:
// other versions, Upgrade, Expect, chunked or large request bodies,
// absolute-form targets, unusual characters, hosts that are not proxied
// services (404, redirects, the API), and every head the guard would
// refuse. The connection then stays with net/http for the rest of its
// life, so the fast path never has to agree with it mid-stream.

const (
	fastBufSize = 4 << 10  // a client connection's read buffer
	fastMaxSize = 16 << 10 // the largest head plus body the fast path holds
)

// readBuffers recycles client read buffers: with a new connection per
// request, each would otherwise be new garbage for the collector.
var readBuffers = sync.Pool{New: func() any { return new([fastBufSize]byte) }}

func getReadBuffer() []byte { return readBuffers.Get().(*[fastBufSize]byte)[:0] }

func putReadBuffer(b []byte) {
	if cap(b) == fastBufSize {
		readBuffers.Put((*[fastBufSize]byte)(b[:fastBufSize]))
	}
}

// fastConn is one client connection on the fast path.
type fastConn struct {
	s      *servers
	c      net.Conn        // as accepted; handed to net/http as it is
	guard  *guardConn      // inside c: gets the bytes already read on a hand-off
	rw     net.Conn        // requests are read and responses written here
	raw    syscall.RawConn // the TCP connection, to see a client leave
	tls    *tls.Conn       // nil on plain HTTP
	sni    string          // normalized server name the client asked for
	hasSNI bool            // it asked for one: the router's rule compares even an odd name
	ip     string          // the client's address, as backends are told it
	stall  time.Duration   // write limit set here; zero over TLS (the guard below sets it)

	buf    []byte // client bytes; buf[off:] not yet consumed
	off    int
	out    []byte // heads and small bodies being written
	vec    net.Buffers
	vecArr [2][]byte
	first  bool // no request read yet: the header timeout applies from the start

	// Deadlines are set only when the one in place would not do: setting
	// one costs more than the rest of the request's own work on the path.
	rdl, wdl  time.Time // the read and write deadlines in place
	lastWrite time.Time // when the last write to the client began: idle time counts from there

	lastHost []byte // Host of the previous request and its string, to
	hostStr  string // avoid a new string per request on a keep-alive connection

	idle    atomic.Bool                 // waiting for a next request with nothing read
	be      atomic.Pointer[backendConn] // the backend exchange in progress
	aborted atomic.Bool                 // the drain deadline passed: cut, do not retry
}

// request is a parsed request head on the fast path; its slices point into
// the connection's buffer.
type request struct {
	head     []byte
	method   []byte
	target   []byte
	host     []byte
	length   int        // Content-Length
	size     int        // head plus body
	close    bool       // the client asked to close after this response
	trailers bool       // TE: trailers, passed on as ReverseProxy does
	id       []byte     // the client's, or generated into idBuf
	idBuf    [40]byte   // an 8-byte prefix in hex, a dash and a 64-bit counter in hex
	conn     connTokens // header names the client listed in Connection
	svc      *route
}

// connTokens are header names listed in a Connection header, to be removed.
type connTokens struct {
	n    int
	list [16][]byte
}

func (t *connTokens) add(name []byte) bool {
	if t.n == len(t.list) {
		return false
	}
	t.list[t.n] = name
	t.n++
	return true
}

func (t *connTokens) has(name []byte) bool {
	for _, v := range t.list[:t.n] {
		if eqFold(name, string(v)) {
			return true
		}
	}
	return false
}

// serveFast serves a connection accepted from a guarded listener.
func (s *servers) serveFast(c net.Conn, hand *handoffListener) {
	f := &fastConn{s: s, c: c, first: true}
	handedOff, transferred := false, false
	defer func() {
		s.fast.done(f, transferred)
		if !handedOff {
			_ = c.Close()
		}
		putReadBuffer(f.buf)
	}()
	switch g := c.(type) {
	case *guardConn:
		f.guard, f.rw, f.stall = g, g.Conn, g.stall
	case *tlsGuardConn:
		f.guard, f.rw, f.tls = g.guardConn, g.tls, g.tls
		if sn := g.tls.ConnectionState().ServerName; sn != "" {
			f.sni, f.hasSNI = registry.NormalizeHost(sn), true
		}
	default: // HTTP/2 over TLS
		handedOff = hand.hand(c)
		return
	}
	rawConn := f.rw
	if f.tls != nil {
		rawConn = f.tls.NetConn().(*guardConn).Conn
	}
	if sc, ok := rawConn.(syscall.Conn); ok {
		f.raw, _ = sc.SyscallConn()
	}
	f.ip = clientIP(rawConn.RemoteAddr().String())
	if !s.fast.add(f) {
		return
	}
	f.buf = getReadBuffer()
	var r request
	for {
		switch f.next(&r) {
		case nextClose:
			return
		case nextHandoff:
			handedOff = f.handoff(hand)
			transferred = handedOff
			return
		}
		keep := f.proxy(&r)
		f.off += r.size
		if cap(f.out) > 8<<10 {
			f.out = nil // grown for one large head or body: not for the connection's life
		}
		if !keep || f.aborted.Load() {
			return
		}
	}
}

const (
	nextRequest = iota
	nextHandoff
	nextClose
)

// next reads until buf holds a whole request for the fast path, one for
// net/http, or the connection is done.
func (f *fastConn) next(r *request) int {
	headerDeadline, bodyWait := false, false
	for {
		pending := f.buf[f.off:]
		if end, ok := headEnd(pending, 0); ok {
			if !f.parse(r, pending[:end]) {
				return nextHandoff
			}
			r.size = end + r.length
			if len(pending) >= r.size {
				return nextRequest
			}
			if r.size > fastMaxSize {
				return nextHandoff
			}
			bodyWait = true
		} else if len(pending) >= fastBufSize {
			return nextHandoff // a large head: the guard checks it
		}
		f.compact()
		idle := len(pending) == 0 && !f.first
		if idle {
			// An earlier deadline still in place only wakes this wait
			// early; see below. Set before idle is, so that the drain's
			// wake-up (closeIdle) is never overwritten.
			if !f.rdl.After(f.lastWrite) {
				f.setReadDeadline(f.lastWrite.Add(f.s.idleTimeout))
			}
			f.idle.Store(true)
			if f.s.fast.closing.Load() {
				return nextClose
			}
		} else if !headerDeadline {
			f.setReadDeadline(time.Now().Add(f.s.headTimeout))
			headerDeadline = true
		}
		n, err := f.rw.Read(f.buf[len(f.buf):cap(f.buf)])
		f.idle.Store(false)
		f.first = false
		f.buf = f.buf[:len(f.buf)+n]
		if n == 0 && err != nil {
			if end := f.lastWrite.Add(f.s.idleTimeout); idle && isTimeout(err) &&
				!f.s.fast.closing.Load() && time.Now().Before(end) {
				// Woken by a header deadline set before: the client has
				// been quiet a while, so wait without the buffers.
				f.setReadDeadline(end)
				f.idle.Store(true)
				if f.s.fast.closing.Load() || !f.waitIdle() {
					return nextClose
				}
				continue
			}
			if isTimeout(err) && bodyWait {
				// The head is here but the body is slow: net/http waits
				// for a body without a deadline, so let it.
				return nextHandoff
			}
			return nextClose
		}
	}
}

// waitIdle waits until the client sends something, holding no buffer:
// most of an idle connection's memory. It reports false when the wait
// ended otherwise (the idle limit, the drain, a closed connection). Over
// TLS only the write buffer goes: TLS may hold decrypted bytes already,
// which a wait on the socket would not see.
func (f *fastConn) waitIdle() bool {
	f.out = nil
	if f.raw == nil || f.tls != nil {
		return true
	}
	putReadBuffer(f.buf)
	f.buf = nil
	err := f.raw.Read(func(fd uintptr) bool { return peekFD(fd) != peekEmpty })
	f.buf = getReadBuffer()
	return err == nil
}

func (f *fastConn) setReadDeadline(t time.Time) {
	f.rdl = t
	_ = f.rw.SetReadDeadline(t)
}

// compact makes room for more bytes: the unread ones move to the front,
// and the buffer grows up to fastMaxSize for a body that fits.
func (f *fastConn) compact() {
	if f.off > 0 {
		n := copy(f.buf, f.buf[f.off:])
		f.buf, f.off = f.buf[:n], 0
	}
	if len(f.buf) == cap(f.buf) {
		f.buf = append(make([]byte, 0, fastMaxSize), f.buf...)
	} else if len(f.buf) == 0 && cap(f.buf) > fastBufSize {
		f.buf = getReadBuffer() // do not keep a grown buffer for an idle connection
	}
}

// handoff gives the connection, with the bytes read but not served, to
// net/http. The guard checks them as if they had just arrived. The
// connection stays counted for the drain throughout.
func (f *fastConn) handoff(hand *handoffListener) bool {
	f.setReadDeadline(time.Time{})
	f.guard.buf = append(make([]byte, 0, max(fastBufSize, len(f.buf)-f.off)), f.buf[f.off:]...)
	f.guard.counted = true
	if hand.hand(f.c) {
		return true
	}
	// net/http has shut down: the drain is past its grace period.
	f.guard.counted = false
	_ = f.write(appendError(nil, 503, false, true))
	return false
}

// parse reads a request head and reports whether the fast path takes it.
func (f *fastConn) parse(r *request, head []byte) bool {
	*r = request{head: head}
	info, reason := checkHead(head)
	if reason != "" || info.kind == bodyChunked || info.upgrade {
		return false
	}
	r.length = int(info.length)
	if info.length > fastMaxSize {
		return false
	}
	line, rest := cutLine(head)
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 || string(line[sp2+1:]) != "HTTP/1.1" {
		return false
	}
	r.method, r.target = line[:sp1], line[sp1+1:sp2]
	if !isToken(r.method) || string(r.method) == "CONNECT" || !originForm(r.target) {
		return false
	}
	hosts, ids := 0, 0
	for {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !isToken(name) || !fieldValue(value) {
			return false
		}
		switch {
		case eqFold(name, "Host"):
			hosts++
			r.host = value
		case eqFold(name, "Connection"):
			if !r.conn.parse(value, &r.close) {
				return false
			}
		case eqFold(name, "Expect"):
			return false // the server answers 100 Continue itself
		case eqFold(name, "X-Request-Id"):
			ids++
			r.id = value
		case eqFold(name, "Te"):
			r.trailers = r.trailers || hasToken(value, "trailers")
		}
	}
	if ids != 1 || !saneRequestID(r.id) {
		r.id = nil
	}
	if hosts != 1 || !hostChars(r.host) {
		return false
	}
	if string(r.host) != string(f.lastHost) {
		f.lastHost = append(f.lastHost[:0], r.host...)
		f.hostStr = string(r.host)
	}
	if f.hasSNI && registry.NormalizeHost(f.hostStr) != f.sni {
		return false // 421 from the router
	}
	svc := f.s.rt.snap.Lookup(f.hostStr)
	if svc == nil || svc.Redirect != nil {
		return false
	}
	r.svc = f.s.rt.routes[svc]
	return r.svc != nil
}

// parse adds the header names a Connection value lists; close reports a
// "close" among them.
func (t *connTokens) parse(v []byte, close *bool) bool {
	for len(v) > 0 {
		var tok []byte
		tok, v = cutComma(v)
		switch {
		case len(tok) == 0:
		case !isToken(tok):
			return false
		case eqFold(tok, "close"):
			*close = true
		case eqFold(tok, "keep-alive"):
		default:
			if !t.add(tok) {
				return false
			}
		}
	}
	return true
}

// handoffListener is what the http.Server of a fast-path listener accepts
// from: connections handed over by the fast path.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoff(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// acceptFast accepts from ln and serves each connection on the fast path.
// Temporary errors back off as http.Server's own accept loop does.
func (s *servers) acceptFast(ln net.Listener, hand *handoffListener) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.rt.draining.Load() {
				return
			}
			var ne net.Error
			//lint:ignore SA1019 http.Server's Serve decides by Temporary too
			if errors.As(err, &ne) && ne.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "delay", delay.String())
				time.Sleep(delay)
				continue
			}
			s.failed <- err
			return
		}
		delay = 0
		if !s.fast.admit() {
			_ = c.Close()
			continue
		}
		go s.serveFast(c, hand)
	}
}

// fastSet tracks the fast path's connections for the drain.
type fastSet struct {
	s       *servers
	mu      sync.Mutex
	conns   map[*fastConn]struct{}
	closing atomic.Bool // idle connections close instead of waiting
	stopped bool        // no new connections: the drain has cut them
}

// admit counts a connection as it is accepted, before its goroutine runs,
// so a drain starting in between still waits for it; false means the
// drain has already cut every connection.
func (fs *fastSet) admit() bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.stopped {
		return false
	}
	fs.s.inflight.Add(1)
	fs.s.countConn(1)
	return true
}

// add lets the drain reach f; false means it has already cut everything.
func (fs *fastSet) add(f *fastConn) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.stopped {
		return false
	}
	fs.conns[f] = struct{}{}
	return true
}

// done uncounts an admitted connection, unless net/http took it over with
// its count (guardConn.counted).
func (fs *fastSet) done(f *fastConn, transferred bool) {
	fs.mu.Lock()
	delete(fs.conns, f)
	fs.mu.Unlock()
	if !transferred {
		fs.s.countConn(-1)
	}
	fs.s.inflight.Done()
}

// closeIdle ends the connections waiting for a next request, as
// http.Server.Shutdown does; the others close after their response.
func (fs *fastSet) closeIdle() {
	fs.closing.Store(true)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for f := range fs.conns {
		if f.idle.Load() {
			_ = f.rw.SetReadDeadline(time.Now())
		}
	}
}

// abort cuts the backend exchanges still running at the drain deadline, so
// their handlers can end their responses (an event stream gets its last
// chunk).
func (fs *fastSet) abort() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for f := range fs.conns {
		f.aborted.Store(true)
		if b := f.be.Load(); b != nil {
			_ = b.Close()
		}
	}
}

// close cuts every connection left.
func (fs *fastSet) close() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.stopped = true
	for f := range fs.conns {
		_ = f.c.Close()
	}
}
