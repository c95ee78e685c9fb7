package guard

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// tlsListener completes the TLS handshake itself, so HTTP/1.1 over TLS can
// be checked like plain HTTP: the guard below TLS only bounds write stalls,
// and a second guard above it sees the requests in clear. HTTP/2
// connections go to the server as *tls.Conn, which is how net/http knows
// to serve them with HTTP/2; HTTP/2 frames its own requests.
//
// Each handshake runs in its own goroutine, so a client that never sends
// its hello holds up no one else. Closing the listener stops accepting but
// lets the handshakes under way finish, within their own deadline, and
// Accept returns them until none is left: a client that connected before
// a drain or an upgrade is served like one whose request was in flight.
type tlsListener struct {
	ln      net.Listener
	conf    *tls.Config
	stall   time.Duration
	timeout time.Duration // for the whole handshake
	log     *slog.Logger

	closing   chan struct{} // closed by Close
	loopDone  chan struct{} // closed when acceptLoop has returned
	conns     chan net.Conn // handshaken, waiting for Accept
	errs      chan error    // temporary accept errors, for the server's back-off
	failed    chan struct{} // closed when the raw listener failed for good
	err       error         // why, set before failed is closed
	slots     chan struct{} // one per handshake in progress
	count     *Conns
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	underWay int           // handshakes started and not yet handed over or failed
	closed   bool          // Close has run
	drained  chan struct{} // closed once closed and none is under way
}

// NewTLSListener serves TLS with conf on ln. conf is cloned: net/http
// changes the server's own copy when it sets up HTTP/2.
func NewTLSListener(ln net.Listener, conf *tls.Config, stall, timeout time.Duration, log *slog.Logger, conns *Conns) net.Listener {
	conf = conf.Clone()
	l := &tlsListener{ln: ln, conf: conf, stall: stall, timeout: timeout, log: log,
		closing: make(chan struct{}), loopDone: make(chan struct{}), drained: make(chan struct{}),
		conns: make(chan net.Conn), errs: make(chan error), failed: make(chan struct{}),
		slots: make(chan struct{}, maxHandshakes), count: conns}
	go l.acceptLoop()
	return l
}

// WithHTTP offers h2 and http/1.1 as net/http's own TLS serving would,
// keeping the order and any other protocol (acme-tls/1) configured.
func WithHTTP(protos []string) []string {
	protos = slices.Clone(protos)
	for _, p := range []string{"h2", "http/1.1"} {
		if !slices.Contains(protos, p) {
			protos = append(protos, p)
		}
	}
	return protos
}

func (l *tlsListener) acceptLoop() {
	defer close(l.loopDone)
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.closing:
			return
		}
		c, err := l.ln.Accept()
		if err != nil {
			<-l.slots
			select {
			case <-l.closing:
				return
			default:
			}
			// Passed on for the server's back-off (file descriptors
			// exhausted, say); anything else ends the listener.
			var ne net.Error
			//lint:ignore SA1019 the server's Serve decides by Temporary too
			if errors.As(err, &ne) && ne.Temporary() {
				select {
				case l.errs <- err:
					continue
				case <-l.closing:
					return
				}
			}
			l.err = err
			close(l.failed)
			return
		}
		l.mu.Lock()
		l.underWay++
		l.mu.Unlock()
		go l.handshake(c)
	}
}

// handshake hands c to Accept once its handshake is done, or closes it.
func (l *tlsListener) handshake(raw net.Conn) {
	defer func() {
		<-l.slots
		l.mu.Lock()
		l.underWay--
		if l.closed && l.underWay == 0 {
			close(l.drained)
		}
		l.mu.Unlock()
	}()
	below := NewConn(raw, l.stall, l.log)
	below.count(l.count, "https") // closing tls.Conn or the guard above closes this one
	below.raw.Store(true)         // ciphertext: only the write stall is bounded here
	tc := tls.Server(below, l.conf)
	// certGetter may move this deadline while a certificate is issued.
	_ = below.SetDeadline(time.Now().Add(l.timeout))
	if err := tc.Handshake(); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		l.log.Debug("tls handshake failed", "client", raw.RemoteAddr().String(), "err", err)
		_ = tc.Close()
		return
	}
	_ = below.SetDeadline(time.Time{})
	var c net.Conn
	switch proto := tc.ConnectionState().NegotiatedProtocol; proto {
	case "h2":
		c = tc
	case "", "http/1.1":
		above := NewConn(tc, 0, l.log) // the stall is bounded below
		c = &TLSConn{Conn: above, TLS: tc}
	default:
		// acme-tls/1: the challenge was answered in the handshake, and the
		// validator sends nothing more (RFC 8737). net/http closes any
		// protocol it does not serve likewise.
		_ = tc.Close()
		return
	}
	select {
	case l.conns <- c:
		return
	case <-l.closing:
	}
	// Closed: the server accepts on through the drain's grace, or has
	// stopped; wait for it no longer than a handshake may take.
	t := time.NewTimer(l.timeout)
	defer t.Stop()
	select {
	case l.conns <- c:
	case <-t.C:
		_ = c.Close()
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of a plain
// HTTP request, which gets the same answer as from net/http's TLS serving.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.failed:
		return nil, l.err
	case <-l.drained:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; the handshakes under way go on (see tlsListener).
func (l *tlsListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closing)
		l.closeErr = l.ln.Close()
		<-l.loopDone // every connection it accepted is counted under way
		l.mu.Lock()
		l.closed = true
		if l.underWay == 0 {
			close(l.drained)
		}
		l.mu.Unlock()
	})
	return l.closeErr
}

func (l *tlsListener) Addr() net.Addr { return l.ln.Addr() }

// TLSConn is a guarded HTTP/1.1 connection over TLS. ConnectionState
// lets net/http set each request's TLS field as on a *tls.Conn: the router
// needs it for the scheme, the API's plain-only rule and SNI.
type TLSConn struct {
	*Conn           // the guard above TLS
	TLS   *tls.Conn // what it reads from
}

func (c *TLSConn) ConnectionState() tls.ConnectionState { return c.TLS.ConnectionState() }

// Hijacked stops the checks above TLS and ends the count below it.
func (c *TLSConn) Hijacked() {
	c.Conn.Hijacked()
	if below, ok := c.TLS.NetConn().(*Conn); ok {
		below.Hijacked()
	}
}
