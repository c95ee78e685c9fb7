// Package worker serves HTTP traffic for one config snapshot on listeners it
// is handed: routing by Host, proxying with retries, redirects, health checks
// and the internal API.
//
// A worker never opens its own listening sockets, so the supervisor can pass
// the same sockets to generation after generation. Its life is: first health
// round, serve, report ready, and on cancellation drain without dropping a
// request.
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
	"sync/atomic"
	"time"

	"srp/api"
	"srp/health"
	"srp/registry"
	"srp/worker/fast"
	"srp/worker/guard"
	"srp/worker/upstream"
)

// Options configure a worker. Zero values take the defaults named on each field.
type Options struct {
	Snapshot *registry.Snapshot // required
	HTTP     net.Listener       // plain HTTP; required
	HTTPS    net.Listener       // TLS; nil in plain-HTTP mode
	ACME     *ACME              // HTTPS mode with automatic certificates; needs HTTPS
	TLS      *tls.Config        // with HTTPS and no ACME: a fixed TLS setup

	Timeout time.Duration  // backend response-header timeout and drain limit; default 30s
	Grace   time.Duration  // how long a draining worker keeps idle keep-alive connections; default min(Timeout, 5s)
	Health  health.Options // OnChange is set by the worker
	Logger  *slog.Logger   // default slog.Default()

	// TicketKeys encrypt TLS session tickets, current key first. The
	// supervisor owns them so a client resumes its session on whichever
	// worker or binary generation serves it next; nil leaves Go's own
	// per-process keys (no resumption across reloads).
	TicketKeys [][32]byte

	idleTimeout time.Duration // keep-alive idle limit; zero means 75s; unexported so only tests shorten it
	noFastPath  bool          // serve every request through net/http, to compare the two paths in tests
	headTimeout time.Duration // request-head limit; zero means readHeaderTimeout; for tests
}

// Run serves until ctx is cancelled, then drains and returns. ready is called
// once the first health round is done and every listener is being served.
func Run(ctx context.Context, o Options, ready func()) error {
	if o.Snapshot == nil || o.HTTP == nil {
		return errors.New("worker: snapshot and HTTP listener are required")
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.Grace <= 0 {
		o.Grace = min(o.Timeout, maxGrace)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}

	rt, checker := build(o)
	s := newServers(rt, o)
	defer s.closeBackends()
	plain, tlsConf := http.Handler(rt), o.TLS
	if o.ACME != nil {
		if o.HTTPS == nil || o.TLS != nil {
			return errors.New("worker: ACME needs an HTTPS listener and no fixed TLS config")
		}
		h, err := newHTTPSMode(o, rt)
		if err != nil {
			return fmt.Errorf("worker: https mode: %w", err)
		}
		plain, tlsConf = h.plain, h.tls
	}
	if o.HTTPS != nil && tlsConf == nil {
		return errors.New("worker: HTTPS listener without ACME or TLS config")
	}
	if tlsConf != nil {
		tlsConf = tlsConf.Clone()
		// As net/http's own TLS serving: the server enables HTTP/2 only
		// when its TLSConfig offers h2.
		tlsConf.NextProtos = guard.WithHTTP(tlsConf.NextProtos)
		if len(o.TicketKeys) > 0 {
			tlsConf.SetSessionTicketKeys(o.TicketKeys)
		}
	}
	checker.Round(ctx)
	for _, r := range rt.routes {
		r.pool.Refresh(checker)
	}
	hctx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go checker.Run(hctx)
	go s.fast.SweepEvery(hctx, sweepInterval)

	// In HTTPS mode the plain listener redirects rather than proxies, so
	// only the router's own listeners have a fast path.
	s.serve(guard.Listen(o.HTTP, o.Timeout, o.Logger), plain, nil, o.ACME == nil && !o.noFastPath)
	if o.HTTPS != nil {
		s.serve(guard.NewTLSListener(o.HTTPS, tlsConf, o.Timeout, readHeaderTimeout, o.Logger), rt, tlsConf, !o.noFastPath)
	}
	if ready != nil {
		ready()
	}
	o.Logger.Info("worker serving", "services", len(o.Snapshot.Services()), "http", o.HTTP.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-s.failed:
		s.drain(o.Grace, o.Timeout)
		return err
	}
	s.drain(o.Grace, o.Timeout)
	return nil
}

// build wires the router and the health checker for o.Snapshot.
func build(o Options) (*router, *health.Checker) {
	backends := newTransport(o.Timeout)
	errs := newErrorHandler(o.Logger)
	rt := &router{snap: o.Snapshot, routes: map[*registry.Service]*route{}, draining: new(atomic.Bool), errs: errs}
	var targets []health.Target
	for _, svc := range o.Snapshot.Services() {
		if svc.Redirect != nil {
			continue
		}
		p := upstream.NewPool(svc)
		t := &transport{pool: p, rt: backends}
		rt.routes[svc] = &route{pool: p, transport: t, proxy: newReverseProxy(t, errs)}
		rt.addrs = append(rt.addrs, svc.Backends...)
		if svc.HealthPath != "" {
			targets = append(targets, p.Targets...)
		}
	}
	hopts := o.Health
	if hopts.Logger == nil {
		hopts.Logger = o.Logger
	}
	var checker *health.Checker
	hopts.OnChange = func() {
		for _, r := range rt.routes {
			r.pool.Refresh(checker)
		}
	}
	checker = health.New(targets, hopts)
	rt.api = api.New(o.Snapshot, rt.healthy)
	return rt, checker
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

// servers runs one http.Server per listener and drains them together.
type servers struct {
	rt       *router
	log      *slog.Logger
	base     context.Context // parent of every request; cancelled at the drain deadline
	cancel   context.CancelFunc
	list     []*http.Server
	lns      []net.Listener
	failed   chan error
	inflight sync.WaitGroup // handlers running, hijacked (WebSocket) ones included

	mu    sync.Mutex // guards conns and idle
	conns int
	idle  chan struct{} // closed when conns drops to 0 while draining

	idleTimeout time.Duration // for keep-alive connections between requests
	timeout     time.Duration // for a backend's response head
	headTimeout time.Duration // for a request head
	fast        *fast.Server
}

func newServers(rt *router, o Options) *servers {
	base, cancel := context.WithCancel(context.Background())
	s := &servers{rt: rt, log: o.Logger, base: base, cancel: cancel, failed: make(chan error, 2),
		idleTimeout: cmp.Or(o.idleTimeout, idleTimeout), timeout: o.Timeout,
		headTimeout: cmp.Or(o.headTimeout, readHeaderTimeout)}
	s.fast = fast.New(fast.Config{Router: rt, Backends: rt.addrs, Base: base, Timeout: s.timeout,
		IdleTimeout: s.idleTimeout, HeadTimeout: s.headTimeout, Log: s.log, Count: s.countConn, Inflight: &s.inflight})
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
		// A TLS listener hands over handshaken connections: *tls.Conn for
		// HTTP/2, which needs TLSConfig to offer h2; guarded HTTP/1.1 otherwise.
		err := srv.Serve(served)
		if !s.rt.draining.Load() && !errors.Is(err, http.ErrServerClosed) {
			s.failed <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
		}
	}()
}

// track counts h's running requests, so the drain can wait for them.
func (s *servers) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
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
		h.ServeHTTP(w, r)
	})
}

func (s *servers) connState(c net.Conn, st http.ConnState) {
	if g, ok := c.(interface{ Hijacked() }); ok && st == http.StateHijacked {
		g.Hijacked() // what follows belongs to the tunnel
	}
	switch st {
	case http.StateNew:
		if g, ok := c.(interface{ CountedAlready() bool }); ok && g.CountedAlready() {
			return
		}
		s.countConn(1)
	case http.StateClosed, http.StateHijacked:
		s.countConn(-1)
	}
}

// countConn counts the client connections open, on either path.
func (s *servers) countConn(delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns += delta
	if s.conns == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// drain retires the worker without failing a request: stop accepting, let
// keep-alive clients finish their current request and leave (every response
// now says Connection: close), then shut down what is left, and at the
// deadline cut whatever still runs (WebSockets, streams).
func (s *servers) drain(grace, limit time.Duration) {
	start := time.Now()
	s.rt.draining.Store(true)
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	s.mu.Lock()
	idle := make(chan struct{})
	if s.conns == 0 {
		close(idle)
	} else {
		s.idle = idle
	}
	s.mu.Unlock()
	select {
	case <-idle:
	case <-time.After(grace):
	}

	ctx, cancel := context.WithDeadline(context.Background(), start.Add(limit))
	defer cancel()
	s.fast.CloseIdle()
	var wg sync.WaitGroup
	for _, srv := range s.list {
		wg.Go(func() { _ = srv.Shutdown(ctx) })
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
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
	s.fast.Close()
	<-done
	s.log.Info("worker drained", "took", time.Since(start).Round(time.Millisecond).String())
}
