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

	"srp/worker/observe"
	"srp/worker/upstream"
)

// transport is the ReverseProxy's Transport for one service: it picks
// the backend per attempt from the service's pool, so a failed dial can be
// retried elsewhere. The fast path's retry loop (fast.conn.proxy) is its
// twin: both follow upstream.MayRetry, and the differential tests hold
// them to the same answers.
type transport struct {
	pool *upstream.Pool
	rt   http.RoundTripper
	obs  observe.Observer
}

// RoundTrip sends req to a backend, trying up to upstream.MaxTries distinct ones while
// it is safe: always after a failed dial (nothing was sent), otherwise only
// for idempotent methods whose body was never read.
func (p *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var b *trackedBody
	if req.Body != nil && req.Body != http.NoBody {
		b = &trackedBody{rc: req.Body}
		req.Body = b
	}
	var tried [upstream.MaxTries]string
	var err error
	for n := 0; n < upstream.MaxTries; n++ {
		addr := p.pool.Pick(tried[:n])
		if addr == "" {
			break
		}
		tried[n] = addr
		req.URL.Host = addr
		var resp *http.Response
		resp, err = p.rt.RoundTrip(req)
		if rec, _ := req.Context().Value(recordKey{}).(*observe.Request); rec != nil {
			rec.Backend, rec.Retries = addr, n
		}
		if err == nil {
			p.obs.Attempt(p.pool.Service, addr, n > 0, resp.StatusCode, "")
			return resp, nil
		}
		if !errors.Is(err, context.Canceled) {
			p.obs.Attempt(p.pool.Service, addr, n > 0, 0, upstream.Reason(err))
		}
		if !retryable(req, b, err) {
			return nil, &upstream.BackendError{Addr: addr, Err: err}
		}
		err = &upstream.BackendError{Addr: addr, Err: err}
	}
	if err == nil {
		return nil, upstream.ErrNoBackend
	}
	return nil, err
}

func retryable(req *http.Request, b *trackedBody, err error) bool {
	if req.Context().Err() != nil || (b != nil && b.failed.Load()) {
		return false
	}
	return upstream.MayRetry(req.Method, b != nil && b.started.Load(), err)
}

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
		err = &upstream.ClientBodyError{Err: err}
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

// newTransport returns the connection pool shared by every service of a worker.
func newTransport(timeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: upstream.DialTimeout, KeepAlive: upstream.KeepAlive}
	return &http.Transport{
		Proxy: nil, // never route backend traffic through an environment proxy
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &upstream.DialError{Err: err}
			}
			return c, nil
		},
		MaxIdleConns:           upstream.MaxIdle,
		MaxIdleConnsPerHost:    upstream.MaxIdlePerBackend,
		IdleConnTimeout:        upstream.IdleTimeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 1 << 20, // as the fast path's and the direct transport's
		ExpectContinueTimeout:  0,
		DisableCompression:     true, // pass bodies through as the backend encoded them
		ForceAttemptHTTP2:      false,
	}
}

// newReverseProxy builds the proxy for one service.
func newReverseProxy(t *transport, errs *errorHandler) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    t,
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
	ip := upstream.ClientIP(in.RemoteAddr)
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
