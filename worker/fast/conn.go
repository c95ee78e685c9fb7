package fast

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"srp/platform"
	"srp/registry"
	"srp/worker/guard"
	"srp/worker/h1"
	"srp/worker/observe"
	"srp/worker/upstream"
)

// readBuffers recycles client read buffers: with a new connection per
// request, each would otherwise be new garbage for the collector.
var readBuffers = sync.Pool{New: func() any { return new([readBufSize]byte) }}

func getReadBuffer() []byte { return readBuffers.Get().(*[readBufSize]byte)[:0] }

func putReadBuffer(b []byte) {
	if cap(b) == readBufSize {
		readBuffers.Put((*[readBufSize]byte)(b[:readBufSize]))
	}
}

// conn is one client connection on the fast path.
type conn struct {
	s      *Server
	c      net.Conn        // as accepted; handed to net/http as it is
	hand   *Handoff        // where it goes to net/http
	guard  *guard.Conn     // inside c: gets the bytes already read on a hand-off
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

	// What observe is told of the request in progress (see observe.go).
	rec      observe.Request
	status   int       // the backend's answer
	headAt   time.Time // when the first response byte was written
	wrote    int64     // bytes written for the request
	bodyFrom int64     // wrote at the response body's start
}

// request is a parsed request head on the fast path; its slices point into
// the connection's buffer.
type request struct {
	head      []byte
	method    []byte
	target    []byte
	host      []byte
	length    int    // Content-Length
	size      int    // head plus body
	close     bool   // the client asked to close after this response
	trailers  bool   // TE: trailers, passed on as ReverseProxy does
	id        []byte // the client's, or generated into idBuf
	referer   []byte // for the access log
	userAgent []byte
	idBuf     [40]byte      // an 8-byte prefix in hex, a dash and a 64-bit counter in hex
	conn      h1.ConnTokens // header names the client listed in Connection
	pool      *upstream.Pool
}

// serve serves a connection accepted from a guarded listener.
func (s *Server) serve(c net.Conn, hand *Handoff, out []byte) []byte {
	f := &conn{s: s, c: c, hand: hand, first: true, out: out[:0]}
	switch g := c.(type) {
	case *guard.Conn:
		f.guard, f.rw, f.stall = g, g.Conn, g.Stall()
	case *guard.TLSConn:
		f.guard, f.rw, f.tls = g.Conn, g.TLS, g.TLS
		if sn := g.TLS.ConnectionState().ServerName; sn != "" {
			f.sni, f.hasSNI = registry.NormalizeHost(sn), true
		}
	default: // HTTP/2 over TLS
		f.end(hand.hand(c))
		return f.out
	}
	rawConn := f.rw
	if f.tls != nil {
		rawConn = f.tls.NetConn().(*guard.Conn).Conn
	}
	if sc, ok := rawConn.(syscall.Conn); ok {
		f.raw, _ = sc.SyscallConn()
	}
	f.ip = upstream.ClientIP(rawConn.RemoteAddr().String())
	if !s.add(f) {
		f.end(false)
		return f.out
	}
	f.buf = getReadBuffer()
	return f.run()
}

// resume serves f again, parked idle until the client sent something.
func (s *Server) resume(f *conn, out []byte) []byte {
	f.out, f.buf = out[:0], getReadBuffer()
	return f.run()
}

// run serves requests until the connection ends, is handed to net/http or
// is parked, and returns the write buffer for the goroutine to keep.
func (f *conn) run() []byte {
	var r request
	for {
		switch f.next(&r) {
		case nextClose:
			f.end(false)
			return f.out
		case nextHandoff:
			f.end(f.handoff(f.hand))
			return f.out
		case nextPark:
			return nil // f is the parker's now, and its write buffer gone
		}
		f.begin()
		keep := f.proxy(&r)
		f.off += r.size
		if cap(f.out) > maxKeptOut {
			f.out = nil // grown for one large head or body: not for the connection's life
		}
		if !keep || f.aborted.Load() {
			f.end(false)
			return f.out
		}
	}
}

// end ends f's service here: closed, or handed to net/http.
func (f *conn) end(handedOff bool) {
	f.s.done(f)
	if !handedOff {
		_ = f.c.Close()
	}
	putReadBuffer(f.buf)
	f.buf = nil
}

const (
	nextRequest = iota
	nextHandoff
	nextClose
	nextPark // idle with nothing held, waiting in the parker
)

// next reads until buf holds a whole request for the fast path, one for
// net/http, or the connection is done.
func (f *conn) next(r *request) int {
	headerDeadline, bodyWait := false, false
	for {
		pending := f.buf[f.off:]
		if end, ok := h1.HeadEnd(pending, 0); ok {
			if !f.parse(r, pending[:end]) {
				return nextHandoff
			}
			r.size = end + r.length
			if len(pending) >= r.size {
				return nextRequest
			}
			if r.size > maxHeld {
				return nextHandoff
			}
			bodyWait = true
		} else if len(pending) >= readBufSize {
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
			if f.s.closing.Load() {
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
			if end := f.lastWrite.Add(f.s.idleTimeout); idle && upstream.IsTimeout(err) &&
				!f.s.closing.Load() && time.Now().Before(end) {
				// Woken by a header deadline set before: the client has
				// been quiet a while, so wait without the buffers.
				f.setReadDeadline(end)
				f.idle.Store(true)
				if f.s.closing.Load() {
					return nextClose
				}
				// Over TLS too: the read that timed out returned nothing,
				// and crypto/tls hands out decrypted bytes before it
				// reads the socket, so it holds none; what it holds of a
				// record needs the rest of it from the socket.
				if f.s.parker != nil {
					// Everything let go first: once parked, f is the
					// parker's, which may end it at once.
					f.dropViews()
					putReadBuffer(f.buf)
					f.buf, f.out = nil, nil
					if f.s.parker.park(f) {
						return nextPark
					}
					f.buf = getReadBuffer()
				}
				if !f.waitIdle() {
					return nextClose
				}
				continue
			}
			if upstream.IsTimeout(err) && bodyWait {
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
// ended otherwise (the idle limit, the drain, a closed connection). It
// follows a read that timed out with nothing, as parking does.
func (f *conn) waitIdle() bool {
	f.out = nil
	if f.raw == nil {
		return true
	}
	f.dropViews()
	putReadBuffer(f.buf)
	f.buf = nil
	err := f.raw.Read(func(fd uintptr) bool { return platform.PeekFD(fd) != platform.PeekEmpty })
	f.buf = getReadBuffer()
	return err == nil
}

func (f *conn) setReadDeadline(t time.Time) {
	f.rdl = t
	_ = f.rw.SetReadDeadline(t)
}

// compact makes room for more bytes: the unread ones move to the front,
// and the buffer grows up to maxHeld for a body that fits.
func (f *conn) compact() {
	if f.off > 0 {
		n := copy(f.buf, f.buf[f.off:])
		f.buf, f.off = f.buf[:n], 0
	}
	if len(f.buf) == cap(f.buf) {
		f.buf = append(make([]byte, 0, maxHeld), f.buf...)
	} else if len(f.buf) == 0 && cap(f.buf) > readBufSize {
		f.buf = getReadBuffer() // do not keep a grown buffer for an idle connection
	}
}

// handoff gives the connection, with the bytes read but not served, to
// net/http. The guard checks them as if they had just arrived. The
// connection stays counted for the drain throughout.
func (f *conn) handoff(hand *Handoff) bool {
	f.setReadDeadline(time.Time{})
	f.guard.Preload(f.buf[f.off:])
	if hand.hand(f.c) {
		return true
	}
	// net/http has shut down: the drain is past its grace period.
	_ = f.write(h1.AppendError(nil, 503, false, true))
	return false
}

// parse reads a request head and reports whether the fast path takes it.
func (f *conn) parse(r *request, head []byte) bool {
	*r = request{head: head}
	info, reason := h1.CheckHead(head)
	if reason != "" || info.Kind == h1.BodyChunked || info.Upgrade {
		return false
	}
	r.length = int(info.Length)
	if info.Length > maxHeld {
		return false
	}
	line, rest := h1.CutLine(head)
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 || string(line[sp2+1:]) != "HTTP/1.1" {
		return false
	}
	r.method, r.target = line[:sp1], line[sp1+1:sp2]
	if !h1.IsToken(r.method) || string(r.method) == "CONNECT" || !h1.OriginForm(r.target) {
		return false
	}
	hosts, ids := 0, 0
	for {
		line, rest = h1.CutLine(rest)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		name, value := line[:colon], h1.TrimOWS(line[colon+1:])
		if !h1.IsToken(name) || !h1.FieldValue(value) {
			return false
		}
		switch {
		case h1.EqFold(name, "Host"):
			hosts++
			r.host = value
		case h1.EqFold(name, "Connection"):
			if !r.conn.Parse(value, &r.close) {
				return false
			}
		case h1.EqFold(name, "Expect"):
			return false // the server answers 100 Continue itself
		case h1.EqFold(name, "X-Request-Id"):
			ids++
			r.id = value
		case h1.EqFold(name, "Referer"):
			r.referer = value
		case h1.EqFold(name, "User-Agent"):
			r.userAgent = value
		case h1.EqFold(name, "Te"):
			r.trailers = r.trailers || h1.HasToken(value, "trailers")
		}
	}
	if ids != 1 || !upstream.SaneRequestID(r.id) {
		r.id = nil
	}
	if hosts != 1 || !h1.HostChars(r.host) {
		return false
	}
	if string(r.host) != string(f.lastHost) {
		f.lastHost = append(f.lastHost[:0], r.host...)
		f.hostStr = string(r.host)
	}
	if f.hasSNI && registry.NormalizeHost(f.hostStr) != f.sni {
		return false // 421 from the router
	}
	r.pool = f.s.router.Route(f.hostStr)
	return r.pool != nil
}
