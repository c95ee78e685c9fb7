// Package upstream holds what both request paths, net/http's and the fast
// path's, must decide alike about backends: which backend an attempt goes
// to (a round-robin Pool over the healthy set), whether a failed attempt
// may go to another (MayRetry, at most MaxTries), which status a failure
// gives the client (StatusOf), and what a backend is told about the client
// (ClientIP, request IDs). The two paths are checked against each other by
// the worker's differential tests; a rule that changes here changes for both.
package upstream

import (
	"errors"
	"net"
	"net/http"
	"sync/atomic"

	"srp/health"
	"srp/registry"
	"srp/worker/observe"
)

// ErrNoBackend means the service has no healthy backend left to try.
var ErrNoBackend = errors.New("no healthy backend")

// ErrClientGone means the client left before its answer was complete.
var ErrClientGone = errors.New("client closed the connection")

// StatusClientClosed is logged, never sent: the client is gone.
const StatusClientClosed = 499

// Pool is one service's backends and the order requests spread over them.
// Both paths pick from it per attempt, which is what lets a failed dial be
// retried elsewhere.
type Pool struct {
	Service string                   // the configured name of the service
	Targets []health.Target          // every backend, for the health checker
	healthy atomic.Pointer[[]string] // rebuilt on health flips, read per request
	next    atomic.Uint64
}

// NewPool returns the pool of svc's backends, all taken as healthy until
// the first health round says otherwise.
func NewPool(svc *registry.Service) *Pool {
	p := &Pool{Service: svc.Host}
	for _, b := range svc.Backends {
		p.Targets = append(p.Targets, health.Target{Addr: b, Path: svc.HealthPath})
	}
	all := append([]string(nil), svc.Backends...)
	p.healthy.Store(&all)
	return p
}

// Refresh rebuilds the healthy set from the checker's current view.
func (p *Pool) Refresh(c *health.Checker) {
	var up []string
	for _, t := range p.Targets {
		if t.Path == "" || c.Up(t) {
			up = append(up, t.Addr)
		}
	}
	p.healthy.Store(&up)
}

// Pick returns the next healthy backend in round-robin order that is not in
// tried, or "" if none is left.
func (p *Pool) Pick(tried []string) string {
	up := *p.healthy.Load()
	if len(up) == 0 {
		return ""
	}
	start := p.next.Add(1)
	for i := range uint64(len(up)) {
		b := up[(start+i)%uint64(len(up))]
		if !contains(tried, b) {
			return b
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Healthy lists the backends currently in rotation.
func (p *Pool) Healthy() []string { return append([]string(nil), *p.healthy.Load()...) }

// MayRetry is the retry rule both paths share: after a failed dial nothing
// was sent; otherwise only an idempotent method whose body was never sent
// may go to another backend, and never after a timeout.
func MayRetry(method string, bodySent bool, err error) bool {
	switch {
	case IsDial(err):
		return !bodySent
	case IsTimeout(err):
		return false // the backend is slow, not gone; three of them would triple the wait
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return !bodySent
	}
	return false
}

// BackendError names the backend that failed, for the log line.
type BackendError struct {
	Addr string
	Err  error
}

func (e *BackendError) Error() string { return "backend " + e.Addr + ": " + e.Err.Error() }
func (e *BackendError) Unwrap() error { return e.Err }

// DialError marks a failure to connect: the backend has seen nothing.
type DialError struct{ Err error }

func (e *DialError) Error() string { return e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// ClientBodyError is a failure reading the client's request body: the
// client's fault, never the backend's.
type ClientBodyError struct{ Err error }

func (e *ClientBodyError) Error() string { return "read request body: " + e.Err.Error() }
func (e *ClientBodyError) Unwrap() error { return e.Err }

func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// StatusOf maps a proxy failure to the status the client gets; no
// backend left to try is a 502 like any other failure.
func StatusOf(err error) int {
	var cb *ClientBodyError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrClientGone):
		return StatusClientClosed
	case errors.As(err, &cb):
		return http.StatusBadRequest
	case IsTimeout(err) && !IsDial(err):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// IsDial reports a failure to connect: the backend saw nothing.
func IsDial(err error) bool {
	var de *DialError
	return errors.As(err, &de)
}

// ProtocolError is an answer from a backend that srp refuses to pass on.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return e.Msg }

// Reason names why a backend attempt failed, for the metrics.
func Reason(err error) string {
	var pe *ProtocolError
	switch {
	case IsDial(err):
		return observe.Refused
	case IsTimeout(err):
		return observe.Timeout
	case errors.As(err, &pe):
		return observe.Protocol
	}
	return observe.Reset
}
