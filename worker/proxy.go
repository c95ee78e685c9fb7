package worker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"time"

	"srp/health"
	"srp/registry"
)

// maxTries bounds how many backends one request may be offered to.
const maxTries = 3

// errNoBackend means the service has no healthy backend left to try.
var errNoBackend = errors.New("no healthy backend")

// pool proxies to one service's backends. It is the ReverseProxy's
// Transport: choosing the backend per attempt is what lets a failed dial be
// retried elsewhere.
type pool struct {
	targets []health.Target
	healthy atomic.Pointer[[]string] // rebuilt on health flips, read per request
	next    atomic.Uint64
	rt      http.RoundTripper
}

func newPool(svc *registry.Service, rt http.RoundTripper) *pool {
	p := &pool{rt: rt}
	for _, b := range svc.Backends {
		p.targets = append(p.targets, health.Target{Addr: b, Path: svc.HealthPath})
	}
	all := append([]string(nil), svc.Backends...)
	p.healthy.Store(&all)
	return p
}

// refresh rebuilds the healthy set from the checker's current view.
func (p *pool) refresh(c *health.Checker) {
	var up []string
	for _, t := range p.targets {
		if t.Path == "" || c.Up(t) {
			up = append(up, t.Addr)
		}
	}
	p.healthy.Store(&up)
}

// pick returns the next healthy backend in round-robin order that is not in
// tried, or "" if none is left.
func (p *pool) pick(tried []string) string {
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

// RoundTrip sends req to a backend, trying up to maxTries distinct ones while
// it is safe: always after a failed dial (nothing was sent), otherwise only
// for idempotent methods whose body was never read.
func (p *pool) RoundTrip(req *http.Request) (*http.Response, error) {
	var b *trackedBody
	if req.Body != nil && req.Body != http.NoBody {
		b = &trackedBody{rc: req.Body}
		req.Body = b
	}
	var tried [maxTries]string
	var err error
	for n := 0; n < maxTries; n++ {
		addr := p.pick(tried[:n])
		if addr == "" {
			break
		}
		tried[n] = addr
		req.URL.Host = addr
		var resp *http.Response
		resp, err = p.rt.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		if !retryable(req, b, err) {
			return nil, &backendError{addr: addr, err: err}
		}
		err = &backendError{addr: addr, err: err}
	}
	if err == nil {
		return nil, errNoBackend
	}
	return nil, err
}

func retryable(req *http.Request, b *trackedBody, err error) bool {
	if req.Context().Err() != nil || (b != nil && b.failed.Load()) {
		return false
	}
	return mayRetry(req.Method, b != nil && b.started.Load(), err)
}

// mayRetry is the retry rule both paths share: after a failed dial nothing
// was sent; otherwise only an idempotent method whose body was never sent
// may go to another backend, and never after a timeout.
func mayRetry(method string, bodySent bool, err error) bool {
	switch {
	case isDial(err):
		return !bodySent
	case isTimeout(err):
		return false // the backend is slow, not gone; three of them would triple the wait
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return !bodySent
	}
	return false
}

// backendError names the backend that failed, for the log line.
type backendError struct {
	addr string
	err  error
}

func (e *backendError) Error() string { return "backend " + e.addr + ": " + e.err.Error() }
func (e *backendError) Unwrap() error { return e.err }

// dialError marks a failure to connect: the backend has seen nothing.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// trackedBody records whether the backend transport ever read the client's
// body (then a retry could send it truncated) and whether reading it failed
// on the client's side.
type trackedBody struct {
	rc      io.ReadCloser
	started atomic.Bool
	failed  atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.started.Store(true)
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.failed.Store(true)
		err = &clientBodyError{err}
	}
	return n, err
}

// Close is passed on only once the body was read. The transport closes the
// body of a request whose dial failed, and that body must stay readable for
// the next backend; ReverseProxy closes it when the request ends.
func (b *trackedBody) Close() error {
	if !b.started.Load() {
		return nil
	}
	return b.rc.Close()
}

// clientBodyError is a failure reading the client's request body: the
// client's fault, never the backend's.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// newTransport returns the connection pool shared by every service of a worker.
func newTransport(timeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil, // never route backend traffic through an environment proxy
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: 0,
		DisableCompression:    true, // pass bodies through as the backend encoded them
		ForceAttemptHTTP2:     false,
	}
}

// newReverseProxy builds the proxy for one service.
func newReverseProxy(p *pool, errs *errorHandler) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    p,
		ErrorHandler: errs.serve,
		ErrorLog:     errs.std,
		BufferPool:   copyBuffers,
	}
}

// rewrite sets the headers the contract promises backends. ReverseProxy has
// already removed hop-by-hop headers, including any the client named in
// Connection, so nothing set here can be stripped by the client.
func rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	out.URL.Scheme = "http"
	out.Host = in.Host
	ip := clientIP(in.RemoteAddr)
	xff := ip
	if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + ip
	}
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	// One allocation holds every value set here, instead of one per header;
	// each slice is capped so that an Add to one header cannot overwrite the
	// next. The keys are already in canonical form.
	v := []string{xff, ip, in.Host, proto}
	h := out.Header
	h["X-Forwarded-For"] = v[0:1:1]
	h["X-Real-Ip"] = v[1:2:2]
	h["X-Forwarded-Host"] = v[2:3:3]
	h["X-Forwarded-Proto"] = v[3:4:4]
	// The router put the kept or generated ID on the inbound request; a client
	// naming it in Connection has had it removed from out.
	h["X-Request-Id"] = in.Header["X-Request-Id"]
}
