// Package h2 serves HTTP/2 over TLS connections whose handshake chose h2.
// It frames the protocol with x/net's Framer and hpack, and hands each
// stream to an http.Handler on a goroutine of its own. It exists for speed:
// net/http's HTTP/2 server moves every response through two more
// goroutines before it reaches the socket, where this one writes on the
// handler's, and many streams' frames go out in one TLS record.
//
// It keeps the protections of net/http's server: bounded header lists and
// HPACK tables, a bound on handlers per connection (rapid reset), a bound
// on frames queued for a client that does not read (SETTINGS and PING
// floods), flow control in both directions, and the same limits on
// streams.
package h2

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server serves HTTP/2 connections with Handler.
type Server struct {
	Handler        http.Handler
	IdleTimeout    time.Duration   // a connection without streams is closed after this
	MaxHeaderBytes int             // as http.Server's
	WriteStall     time.Duration   // a stream whose answer can make no progress this long is reset
	BaseContext    context.Context // parent of every request's context
	Log            *slog.Logger

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool          // Shutdown or Close was called
	closed   bool          // Close was called
	gone     chan struct{} // closed once shut down with no connection left
}

// ServeConn serves c until the client or the server ends it, and closes
// it. A *tls.Conn must have completed its handshake with h2 negotiated;
// its requests carry its TLS state. A connection that arrives during
// Shutdown is told GOAWAY at once, so its client retries elsewhere.
func (s *Server) ServeConn(c net.Conn) {
	sc := newConn(s, c)
	s.mu.Lock()
	s.initLocked()
	if s.closed {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	s.conns[sc] = struct{}{}
	sc.drainOnStart = s.shutdown
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc)
		s.goneIfDoneLocked()
		s.mu.Unlock()
	}()
	sc.serve()
}

func (s *Server) initLocked() {
	if s.conns == nil {
		s.conns, s.gone = map[*conn]struct{}{}, make(chan struct{})
	}
}

func (s *Server) goneIfDoneLocked() {
	if s.shutdown && len(s.conns) == 0 {
		select {
		case <-s.gone:
		default:
			close(s.gone)
		}
	}
}

// Shutdown tells every client that no new stream will be served (GOAWAY),
// lets the streams under way finish, and returns once every connection
// has closed or ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	gone := s.GoAway()
	select {
	case <-gone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// GoAway is Shutdown without the wait: every client is told GOAWAY, and
// each connection closes once its streams are done. The channel closes
// when none is left.
func (s *Server) GoAway() <-chan struct{} {
	s.mu.Lock()
	s.initLocked()
	s.shutdown = true
	s.goneIfDoneLocked()
	list := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	gone := s.gone
	s.mu.Unlock()
	for _, c := range list {
		c.goAwayGraceful()
	}
	return gone
}

// Close closes every connection at once, and any that arrives later.
func (s *Server) Close() {
	s.mu.Lock()
	s.shutdown, s.closed = true, true
	list := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		_ = c.nc.Close()
	}
}

func (s *Server) debug(msg, client string, err error) {
	if s.Log != nil {
		s.Log.Debug(msg, "client", client, "err", err)
	}
}
