package worker

import (
	"context"
	"net/http"
	"sync"
	"time"

	"srp/worker/observe"
	"srp/worker/upstream"
)

// observed is the ResponseWriter every request on the net/http path is
// served through: it notes what the observers are told of the request.
// It is pooled, so it costs no allocation.
type observed struct {
	http.ResponseWriter
	rec    observe.Request
	headAt time.Time
}

var observedPool = sync.Pool{New: func() any { return new(observed) }}

// Unwrap lets http.ResponseController reach Flush, Hijack and deadlines.
func (o *observed) Unwrap() http.ResponseWriter { return o.ResponseWriter }

func (o *observed) WriteHeader(code int) {
	if o.headAt.IsZero() && (code >= 200 || code == http.StatusSwitchingProtocols) {
		o.rec.Status, o.headAt = code, time.Now()
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *observed) Write(b []byte) (int, error) {
	if o.headAt.IsZero() {
		o.WriteHeader(http.StatusOK)
	}
	n, err := o.ResponseWriter.Write(b)
	o.rec.Bytes += int64(n)
	return n, err
}

// recordOf finds the record of the request w answers, through any
// wrappers; nil when w is not observed (a test calling a handler).
func recordOf(w http.ResponseWriter) *observe.Request {
	for {
		switch v := w.(type) {
		case *observed:
			return &v.rec
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return nil
		}
	}
}

// recordKey finds the record from the backend transport, which sees the
// request but not its ResponseWriter. Only the access log needs what the
// transport adds (backend, retries), so the request carries it only then:
// the context costs two allocations per request.
type recordKey struct{}

// observeHTTP serves r through h and reports it once done, whatever h did.
func (s *servers) observeHTTP(h http.Handler, w http.ResponseWriter, r *http.Request) {
	o := observedPool.Get().(*observed)
	o.ResponseWriter, o.rec, o.headAt = w, observe.Request{Start: time.Now()}, time.Time{}
	if s.linkRecords {
		r = r.WithContext(context.WithValue(r.Context(), recordKey{}, &o.rec))
	}
	defer func() {
		rec := &o.rec
		end := o.headAt
		if end.IsZero() {
			end = time.Now()
		}
		if rec.Status == 0 {
			rec.Status = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		rec.Duration = end.Sub(rec.Start)
		rec.Host, rec.Method, rec.URI, rec.Proto = r.Host, r.Method, r.RequestURI, r.Proto
		rec.RemoteIP = upstream.ClientIP(r.RemoteAddr)
		rec.Referer, rec.UserAgent = r.Header.Get("Referer"), r.Header.Get("User-Agent")
		rec.TLS = r.TLS != nil
		s.obs.Request(rec)
		o.ResponseWriter = nil
		observedPool.Put(o)
	}()
	h.ServeHTTP(o, r)
}
