// Package worker serves HTTP traffic for one config snapshot on listeners it
// is handed: routing by Host, proxying with retries, redirects, health checks
// and the internal API.
//
// A worker never opens its own listening sockets, so the supervisor can pass
// the same sockets to generation after generation. Its life is: first health
// round, serve, report ready, and on cancellation drain without dropping a
// request (process.go is that life as "srp worker" runs it).
//
// A request, read top to bottom:
//
//  1. guard (worker/guard): the connection is accepted and counted for the
//     drain; over TLS the handshake completes there. Each HTTP/1.1 request
//     head is checked against the h1 grammar (worker/h1) before anyone
//     reads it.
//  2. fast path (worker/fast): Server.Serve, conn.serve and conn.next read
//     the request; parse decides whether the fast path takes it and asks
//     the router (Route, in router.go) for its backends; exchange.go sends
//     it with the retry rules of worker/upstream, copy.go sends the answer.
//  3. HTTP/2 over TLS goes to srp's own HTTP/2 server (worker/h2), which
//     hands each stream to the same handler as step 4 (servers.go wires it).
//  4. Everything else is handed to net/http with the bytes already read:
//     servers.go runs the http.Server, router.go's ServeHTTP routes by
//     Host (404, redirect, the API, or a service), and proxy.go's
//     ReverseProxy and transport send it to a backend, with the same retry
//     rules, through worker/direct (or net/http's Transport for a request
//     with a body); errors.go maps every failure to one status and one
//     log line.
//  5. The drain (servers.go): stop accepting, let keep-alive clients
//     leave (HTTP/2 clients get a GOAWAY), shut down, cut what is left at
//     the deadline.
//
// acme.go adds HTTPS mode; limits.go holds the worker's own limits.
package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"srp/api"
	"srp/health"
	"srp/registry"
	"srp/supervisor/counters"
	"srp/worker/direct"
	"srp/worker/guard"
	"srp/worker/metrics"
	"srp/worker/observe"
	"srp/worker/status"
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

	// Counters is the region the supervisor shares with every worker, so
	// metrics stay exact through reloads and upgrades; nil counts in this
	// process only.
	Counters  *counters.Region
	Version   string           // reported as srp_build_info's version
	AccessLog observe.Observer // told of every request; nil: no access log
	// Unready, once set, makes GET /ready answer 503 while the worker
	// serves on: srp is leaving. nil: /ready answers 503 only when draining.
	Unready *atomic.Bool

	// TicketKeys encrypt TLS session tickets, current key first. The
	// supervisor owns them so a client resumes its session on whichever
	// worker or binary generation serves it next; nil leaves Go's own
	// per-process keys (no resumption across reloads).
	TicketKeys [][32]byte

	idleTimeout time.Duration // keep-alive idle limit; zero means 75s; unexported so only tests shorten it
	noFastPath  bool          // serve every HTTP/1.x request through net/http, to compare the two paths in tests
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

	rt, checker, st := wire(o)
	s := newServers(rt, o)
	s.conns.Observe = rt.metrics.Conn
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
		defer h.close()
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
	if rt.api != nil {
		go st.Run(hctx) // the status page's rates; nobody can ask for it without the API
	}

	// In HTTPS mode the plain listener redirects rather than proxies, so
	// only the router's own listeners have a fast path.
	s.serve(guard.Listen(o.HTTP, o.Timeout, o.Logger, &s.conns), plain, nil, o.ACME == nil && !o.noFastPath)
	if o.HTTPS != nil {
		s.serve(guard.NewTLSListener(o.HTTPS, tlsConf, o.Timeout, readHeaderTimeout, o.Logger, &s.conns), rt, tlsConf, !o.noFastPath)
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
	rt, checker, _ := wire(o)
	return rt, checker
}

// wire is build, also returning the status page, whose sampler Run starts.
func wire(o Options) (*router, *health.Checker, *status.Handler) {
	backends := direct.New(newTransport(o.Timeout), o.Timeout)
	errs := newErrorHandler(o.Logger)
	rt := &router{snap: o.Snapshot, routes: map[*registry.Service]*route{}, draining: new(atomic.Bool), unready: o.Unready, errs: errs}
	region := o.Counters
	if region == nil {
		region = counters.Local()
	}
	var list []metrics.Service
	for _, svc := range o.Snapshot.Services() {
		list = append(list, metrics.Service{Name: svc.Host, Backends: svc.Backends})
	}
	rt.metrics = metrics.New(region, list, metrics.Extra{Version: o.Version, BackendUp: rt.backendUp})
	rt.obs = observe.Observer(rt.metrics)
	if o.AccessLog != nil {
		rt.obs = observe.Tee{rt.metrics, o.AccessLog}
	}
	var targets []health.Target
	for _, svc := range o.Snapshot.Services() {
		if svc.Redirect != nil {
			continue
		}
		p := upstream.NewPool(svc)
		t := &transport{pool: p, rt: backends, obs: rt.obs}
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
	so := status.Options{Snapshot: rt.metrics.Snapshot, Version: o.Version}
	if o.ACME != nil {
		so.CertExpiry = rt.metrics.CertExpiry // its source is set up with HTTPS mode, in Run
	}
	st := status.New(so)
	rt.api = api.New(o.Snapshot, rt.healthy, rt.metrics, st)
	return rt, checker, st
}
