// Package fast serves the common HTTP/1.1 request itself: one goroutine
// per client connection reads the request, writes it to a kept backend
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
//
// Both paths must answer alike. What they share is written once: the
// grammar in worker/h1, the backend rules in worker/upstream, routing
// through the Router the worker implements. What each writes in its own
// form (forwarding headers, the retry loop, response framing) is pinned
// by the worker's differential tests and fuzz target against net/http.
package fast

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"srp/worker/observe"
	"srp/worker/upstream"
)

// Router is what the fast path asks of the worker's router, so that a
// request routes the same on both paths.
type Router interface {
	// Route returns the backends of the service proxied for host, or nil
	// when net/http must answer: unknown hosts, redirects, the API.
	Route(host string) *upstream.Pool
	// Draining reports that the worker is retiring: responses close their
	// connections and accept errors are expected.
	Draining() bool
	// LogFailure writes the one log line of a failed request, as the
	// net/http path writes it.
	LogFailure(msg string, status int, host, method, path, id string, err error)
}

// Config configures a Server. Every field is required.
type Config struct {
	Router      Router
	Backends    []string        // every backend address, for the kept connections
	Base        context.Context // cancelled at the drain deadline; backend dials end with it
	Timeout     time.Duration   // for a backend's response head
	IdleTimeout time.Duration   // for a kept client connection between requests
	HeadTimeout time.Duration   // for a request head
	Log         *slog.Logger
	Observer    observe.Observer // told of every request served and backend attempt
}

// Server is the fast path of one worker, across its listeners.
type Server struct {
	router      Router
	backends    *backends
	base        context.Context
	timeout     time.Duration
	idleTimeout time.Duration
	headTimeout time.Duration
	log         *slog.Logger
	obs         observe.Observer
	running     sync.WaitGroup // connections being served, for the drain

	tasks  chan task     // to an idle serving goroutine
	parker *parker       // idle HTTP/1.1 connections, without goroutines; nil where unsupported
	quit   chan struct{} // closed by Close: idle serving goroutines end

	mu      sync.Mutex
	conns   map[*conn]struct{} // for the drain
	closing atomic.Bool        // idle connections close instead of waiting
	stopped bool               // no new connections: the drain has cut them
}

// New returns the fast path for c.
func New(c Config) *Server {
	s := &Server{router: c.Router, backends: newBackends(c.Backends), base: c.Base, timeout: c.Timeout,
		idleTimeout: c.IdleTimeout, headTimeout: c.HeadTimeout, log: c.Log, obs: c.Observer,
		conns: map[*conn]struct{}{}, tasks: make(chan task), quit: make(chan struct{})}
	s.parker = newParker(s)
	return s
}

// SweepEvery closes kept backend connections gone stale, every interval
// until ctx ends.
func (s *Server) SweepEvery(ctx context.Context, every time.Duration) {
	s.backends.sweepEvery(ctx, every)
}

// CloseBackends closes every kept backend connection and keeps no more.
func (s *Server) CloseBackends() { s.backends.closeIdle() }

// Serve accepts from ln and serves each connection on the fast path, until
// ln fails or is closed for the drain.
// Temporary errors back off as http.Server's own accept loop does.
func (s *Server) Serve(ln net.Listener, hand *Handoff) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.router.Draining() {
				return nil
			}
			var ne net.Error
			//lint:ignore SA1019 http.Server's Serve decides by Temporary too
			if errors.As(err, &ne) && ne.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), maxAcceptDelay)
				s.log.Warn("accept failed, retrying", "err", err, "delay", delay.String())
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !s.admit() {
			_ = c.Close()
			continue
		}
		s.dispatch(task{c: c, hand: hand})
	}
}

// dispatch gives t to an idle serving goroutine, or to a new one.
func (s *Server) dispatch(t task) {
	select {
	case s.tasks <- t:
	default:
		go s.work(t)
	}
}

// task is an accepted connection for a serving goroutine, or a parked one
// that the client woke.
type task struct {
	c    net.Conn
	hand *Handoff
	f    *conn
}

// work serves t, then the connections it is given, until it has been idle
// for workerIdle. A goroutine started per connection grows its stack anew
// each time, by copying it, which cost a new connection more than the
// rest of its setup; kept, it also keeps its write buffer.
func (s *Server) work(t task) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	var out []byte
	for {
		if t.f != nil {
			out = s.resume(t.f, out)
		} else {
			out = s.serve(t.c, t.hand, out)
		}
		idle.Reset(workerIdle)
		select {
		case t = <-s.tasks:
		case <-idle.C:
			return
		case <-s.quit:
			return
		}
	}
}

// admit counts a connection as running as it is accepted, before its
// goroutine runs, so a drain starting in between still waits for it; false
// means the drain has already cut every connection.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.running.Add(1)
	return true
}

// add lets the drain reach f; false means it has already cut everything.
func (s *Server) add(f *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.conns[f] = struct{}{}
	return true
}

// done ends an admitted connection's service here: closed, or handed to
// net/http.
func (s *Server) done(f *conn) {
	s.mu.Lock()
	delete(s.conns, f)
	s.mu.Unlock()
	s.running.Done()
}

// Wait waits until no connection is served here.
func (s *Server) Wait() { s.running.Wait() }

// CloseIdle ends the connections waiting for a next request, as
// http.Server.Shutdown does; the others close after their response.
func (s *Server) CloseIdle() {
	s.closing.Store(true)
	s.parker.closeAll()
	s.mu.Lock()
	defer s.mu.Unlock()
	for f := range s.conns {
		if f.idle.Load() {
			_ = f.rw.SetReadDeadline(time.Now())
		}
	}
}

// Abort cuts the backend exchanges still running at the drain deadline, so
// their handlers can end their responses (an event stream gets its last
// chunk).
func (s *Server) Abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for f := range s.conns {
		f.aborted.Store(true)
		if b := f.be.Load(); b != nil {
			_ = b.Close()
		}
	}
}

// Close cuts every connection left.
func (s *Server) Close() {
	s.parker.closeAll()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		close(s.quit)
	}
	s.stopped = true
	for f := range s.conns {
		_ = f.c.Close()
	}
}

// Handoff is the listener the http.Server of a fast-path listener accepts
// from: the connections the fast path hands over.
type Handoff struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func NewHandoff(addr net.Addr) *Handoff {
	return &Handoff{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *Handoff) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *Handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *Handoff) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *Handoff) Addr() net.Addr { return l.addr }
