package worker

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"srp/worker/fast"
	"srp/worker/guard"
	"srp/worker/h2"
	"srp/worker/observe"
)

// servers runs one http.Server per listener and drains them together.
type servers struct {
	rt       *router
	log      *slog.Logger
	base     context.Context // parent of every request; cancelled at the drain deadline
	cancel   context.CancelFunc
	list     []*http.Server
	lns      []net.Listener
	failed   chan error
	inflight handlers    // running, hijacked (WebSocket) ones included
	conns    guard.Conns // client connections open, on either path

	idleTimeout time.Duration // for keep-alive connections between requests
	timeout     time.Duration // for a backend's response head
	headTimeout time.Duration // for a request head
	fast        *fast.Server
	h2          *h2.Server // HTTP/2 on the TLS listener, with the fast path or without
	obs         observe.Observer
	linkRecords bool // the access log wants what the transport knows: see recordKey
}

func newServers(rt *router, o Options) *servers {
	base, cancel := context.WithCancel(context.Background())
	s := &servers{rt: rt, log: o.Logger, base: base, cancel: cancel, failed: make(chan error, 2),
		idleTimeout: cmp.Or(o.idleTimeout, idleTimeout), timeout: o.Timeout,
		headTimeout: cmp.Or(o.headTimeout, readHeaderTimeout), obs: rt.obs, linkRecords: o.AccessLog != nil}
	s.fast = fast.New(fast.Config{Router: rt, Backends: rt.addrs, Base: base, Timeout: s.timeout,
		IdleTimeout: s.idleTimeout, HeadTimeout: s.headTimeout, Log: s.log, Observer: rt.obs})
	return s
}

// serve serves ln with h; with fastPath, the fast path takes the requests it
// can and net/http gets the connections it hands over.
func (s *servers) serve(ln net.Listener, h http.Handler, tlsConf *tls.Config, fastPath bool) {
	srv := &http.Server{
		Handler:           s.track(h),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: s.headTimeout, // a slow-header client cannot hold a connection
		IdleTimeout:       s.idleTimeout,
		MaxHeaderBytes:    guard.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ConnState:         s.connState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.list = append(s.list, srv)
	s.lns = append(s.lns, ln)
	if tlsConf != nil {
		s.h2 = &h2.Server{Handler: srv.Handler, IdleTimeout: s.idleTimeout, MaxHeaderBytes: guard.MaxHeaderBytes,
			WriteStall: s.timeout, BaseContext: s.base, Log: s.log}
		ln = h2Listener{ln, s.h2}
	}
	served := ln
	if fastPath {
		hand := fast.NewHandoff(ln.Addr())
		served = hand
		go func() {
			if err := s.fast.Serve(ln, hand); err != nil {
				s.failed <- err
			}
		}()
	}
	go func() {
		err := srv.Serve(served)
		if !s.rt.draining.Load() && !errors.Is(err, http.ErrServerClosed) {
			s.failed <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
		}
	}()
}

// h2Listener serves the HTTP/2 connections of a TLS listener, which hands
// them over handshaken as *tls.Conn, with srp's HTTP/2 server, and passes
// the guarded HTTP/1.1 ones on.
type h2Listener struct {
	net.Listener
	srv *h2.Server
}

func (l h2Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if tc, ok := c.(*tls.Conn); ok && err == nil {
			go l.srv.ServeConn(tc)
			continue
		}
		return c, err
	}
}

// track counts h's running requests, so the drain can wait for them.
func (s *servers) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.add(1)
		defer s.inflight.add(-1)
		defer func() {
			// At the drain deadline the proxy aborts the streams still
			// running. An event stream has no end of its own, so it ends
			// properly instead (last chunk, then close) and the client
			// reconnects to the new worker; other bodies stay aborted so a
			// cut download is never mistaken for a complete one.
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler && s.base.Err() != nil &&
					strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
					return
				}
				panic(v)
			}
		}()
		s.observeHTTP(h, w, r)
	})
}

// connState ends the count of a connection hijacked for a tunnel: the
// drain waits for the tunnel's handler instead.
func (s *servers) connState(c net.Conn, st http.ConnState) {
	if g, ok := c.(interface{ Hijacked() }); ok && st == http.StateHijacked {
		g.Hijacked()
	}
}

// drain retires the worker without failing a request: stop accepting, let
// keep-alive clients finish their current request and leave (every
// HTTP/1.1 response now says Connection: close, every HTTP/2 client is
// sent GOAWAY), then shut down what is left, and at the deadline cut
// whatever still runs (WebSockets, streams).
func (s *servers) drain(grace, limit time.Duration) {
	start := time.Now()
	s.rt.draining.Store(true)
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	if s.h2 != nil {
		s.h2.GoAway()
	}
	select {
	case <-s.conns.Gone():
	case <-time.After(grace):
	}

	ctx, cancel := context.WithDeadline(context.Background(), start.Add(limit))
	defer cancel()
	s.fast.CloseIdle()
	var wg sync.WaitGroup
	for _, srv := range s.list {
		wg.Go(func() { _ = srv.Shutdown(ctx) })
	}
	if s.h2 != nil {
		wg.Go(func() { _ = s.h2.Shutdown(ctx) })
	}
	wg.Wait()
	done := make(chan struct{})
	go func() {
		s.inflight.wait()
		s.fast.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("drain deadline reached, closing remaining connections", "limit", limit.String())
	}
	s.cancel()
	s.fast.Abort()
	// Cancelled handlers return at once; give them that moment to finish
	// their responses (see track) before every connection is cut.
	select {
	case <-done:
	case <-time.After(abortGrace):
	}
	for _, srv := range s.list {
		_ = srv.Close()
	}
	if s.h2 != nil {
		s.h2.Close()
	}
	s.fast.Close()
	<-done
	s.log.Info("worker drained", "took", time.Since(start).Round(time.Millisecond).String())
}

// handlers counts the requests being handled. Unlike a WaitGroup it may
// grow while the drain waits on it: an HTTP/2 stream accepted before its
// GOAWAY may still be waiting for a handler.
type handlers struct {
	mu   sync.Mutex
	n    int
	none chan struct{} // closed when n drops to 0; nil while nobody waits
}

func (h *handlers) add(d int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n += d
	if h.n == 0 && h.none != nil {
		close(h.none)
		h.none = nil
	}
}

// wait returns once no request is being handled.
func (h *handlers) wait() {
	h.mu.Lock()
	if h.n == 0 {
		h.mu.Unlock()
		return
	}
	if h.none == nil {
		h.none = make(chan struct{})
	}
	none := h.none
	h.mu.Unlock()
	<-none
}

// closeBackends closes the backend connections kept alive on both paths,
// so a worker that has drained leaves no connection or goroutine behind.
func (s *servers) closeBackends() {
	s.fast.CloseBackends()
	for _, r := range s.rt.routes {
		if t, ok := r.transport.rt.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
	}
}
