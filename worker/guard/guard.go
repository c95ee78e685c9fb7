// Package guard owns client connections between the listening socket and
// the HTTP server: it checks every HTTP/1.1 request head against the h1
// grammar before net/http reads it, bounds how long a client may stall a
// response, and completes TLS handshakes itself so HTTP/1.1 over TLS gets
// the same checks. Both request paths, net/http and the fast path, read
// through it.
package guard

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"srp/worker/h1"
)

// rejected replaces a request head the guard refuses. net/http cannot parse
// it, so it answers "400 Bad Request" with Connection: close itself, after
// the responses to the requests before it, and closes the connection.
const rejected = "BAD\r\n\r\n"

// listener hands out guarded plain-HTTP connections; see Conn.
// The TLS listener builds its own guards above TLS.
type listener struct {
	net.Listener
	stall time.Duration // longest a client may leave one write blocked; 0 means no limit
	log   *slog.Logger
	conns *Conns
}

// Listen wraps ln so that every request head is checked before the HTTP
// server reads it, and a client that stops reading cannot block a response
// (and the backend connection behind it) longer than stall.
// Every connection it accepts counts in conns.
func Listen(ln net.Listener, stall time.Duration, log *slog.Logger, conns *Conns) net.Listener {
	return &listener{Listener: ln, stall: stall, log: log, conns: conns}
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := NewConn(c, l.stall, l.log)
	g.count(l.conns, "http")
	return g, nil
}

// NewConn guards one client connection; see Listen.
func NewConn(c net.Conn, stall time.Duration, log *slog.Logger) *Conn {
	return &Conn{Conn: c, stall: stall, log: log}
}

// count makes c count in conns until it is closed or hijacked.
func (c *Conn) count(conns *Conns, listener string) {
	conns.add(listener, 1)
	c.conns, c.listener = conns, listener
}

// uncount ends c's count, once.
func (c *Conn) uncount() {
	if c.conns != nil && !c.uncounted.Swap(true) {
		c.conns.add(c.listener, -1)
	}
}

// Close closes the connection and ends its count.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.uncount()
	return err
}

// Conn sits between a client connection and net/http. It follows the
// HTTP/1.1 framing of the byte stream (heads, Content-Length and chunked
// bodies) and holds each request head back until it is complete and
// checked, so a request net/http would frame differently from a front
// proxy (Content-Length with Transfer-Encoding, bare LF, obsolete line
// folding, duplicate lengths) never reaches the server: it sees a
// malformed request instead, answers 400 and closes.
//
// Reads come from one goroutine at a time (net/http's connection reader,
// then after a hijack the tunnel), so the read state needs no lock.
type Conn struct {
	net.Conn
	stall time.Duration
	log   *slog.Logger
	raw   atomic.Bool // pass bytes untouched: TLS, or hijacked for a tunnel

	buf       []byte // buf[off:ready] may go to the server; buf[ready:] is not checked yet
	off       int
	ready     int
	err       error // from the client connection, returned once buf is drained
	done      bool  // the server gets EOF once buf[off:ready] is drained
	upgrading bool  // after a protocol switch request: hold bytes unchecked until hijack or the handler ends
	frame     h1.Framer

	conns     *Conns      // the count it is in; nil for a guard above TLS (the one below counts)
	uncounted atomic.Bool // Close and a hijack may race
	listener  string      // "http" or "https", for the metrics
}

// errEarlyData ends a connection whose client sends more than a request
// head's worth of bytes before its protocol switch is answered.
var errEarlyData = errors.New("too much data before the protocol switch")

// Read gives the server checked bytes only.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.off < c.ready {
			n := copy(p, c.buf[c.off:c.ready])
			c.off += n
			return n, nil
		}
		if c.raw.Load() {
			if c.off < len(c.buf) { // held back before a hijack: the tunnel's first bytes
				c.ready = len(c.buf)
				continue
			}
			return c.Conn.Read(p)
		}
		if c.done {
			// Refused: nothing more is passed on, but the server's reads
			// still wait for the client as before. EOF here would tell a
			// handler still answering an earlier request that its client left.
			for {
				if _, err := c.Conn.Read(p); err != nil {
					return 0, err
				}
			}
		}
		if !c.upgrading && c.off < len(c.buf) && c.check() {
			continue
		}
		if c.err != nil {
			return 0, c.err
		}
		if c.upgrading && len(c.buf)-c.off > headLimit {
			c.err = errEarlyData
			continue
		}
		if err := c.fill(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// A deadline: the server's header timeout, or the end of
				// its background read when a handler returns or hijacks.
				// Held bytes stay; after an upgrade request that was not
				// hijacked they are the next request, to be checked.
				c.upgrading, c.frame.Upgrade = false, false
				return 0, err
			}
			c.err = err
		}
	}
}

// fill reads more of the client's bytes into buf.
func (c *Conn) fill() error {
	if c.off == len(c.buf) {
		if cap(c.buf) > maxKeptBuf {
			c.buf = nil // grown for one large head: do not keep it for the connection's life
		}
		c.buf, c.off, c.ready = c.buf[:0], 0, 0
	}
	if cap(c.buf) == len(c.buf) {
		if c.off > 0 {
			n := copy(c.buf, c.buf[c.off:])
			c.buf, c.ready, c.off = c.buf[:n], c.ready-c.off, 0
		} else {
			c.buf = append(make([]byte, 0, max(4096, 2*cap(c.buf))), c.buf...)
		}
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	if n > 0 {
		return nil // an error comes again on the next read
	}
	return err
}

// check moves ready over the bytes it can vouch for and reports whether it
// made progress.
func (c *Conn) check() bool {
	start := c.ready
	for c.ready < len(c.buf) && !c.done {
		if c.frame.InBody() {
			n, reason := c.frame.Body(c.buf[c.ready:])
			c.ready += n
			if reason != "" {
				// The bytes before the error, then a tail the server's
				// chunked reader fails on: it answers 400 and closes.
				c.buf = append(c.buf[:c.ready], c.frame.ErrTail()...)
				c.ready = len(c.buf)
				c.reject(reason, false)
			}
			continue
		}
		if c.frame.Upgrade {
			// What follows may be the tunnel's first bytes, not a request.
			c.frame.Upgrade, c.upgrading = false, true
			break
		}
		end, complete := h1.HeadEnd(c.buf[c.ready:], c.frame.Scanned)
		if !complete {
			c.frame.Scanned = end
			if len(c.buf)-c.ready > headLimit {
				// net/http answers 431 before it reaches the end.
				c.ready = len(c.buf)
				c.raw.Store(true)
			}
			break
		}
		info, reason := h1.CheckHead(c.buf[c.ready : c.ready+end])
		if reason != "" {
			c.buf = append(c.buf[:c.ready], rejected...)
			c.ready = len(c.buf)
			c.reject(reason, true)
			break
		}
		c.ready += end
		c.frame.Start(info)
	}
	return c.ready > start || c.done || c.upgrading
}

func (c *Conn) reject(reason string, head bool) {
	c.done = true
	where := "body"
	if head {
		where = "head"
	}
	c.log.Info("request rejected", "reason", reason, "in", where, "client", c.RemoteAddr().String())
}

// Write gives each write to the client at most stall to complete.
func (c *Conn) Write(p []byte) (int, error) {
	if c.stall > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
	}
	return c.Conn.Write(p)
}

// CloseWrite lets net/http close its side gracefully, as on a plain TCP conn.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Hijacked stops the checks, and the count: the bytes that follow belong
// to a tunnel, which the drain waits for as a running handler.
func (c *Conn) Hijacked() {
	c.raw.Store(true)
	c.uncount()
}

// NetConn is the connection below the guard, as tls.Conn names its own.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Stall is the longest one write to the client may block.
func (c *Conn) Stall() time.Duration { return c.stall }

// Preload puts bytes already read from the client before what it sends
// next, to be checked as if they had just arrived: the fast path hands a
// connection to net/http with the bytes it read but did not serve.
func (c *Conn) Preload(b []byte) {
	c.buf = append(make([]byte, 0, max(4096, len(b))), b...)
	c.off, c.ready = 0, 0
}
