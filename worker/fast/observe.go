package fast

import (
	"time"
	"unsafe"

	"srp/worker/observe"
)

// begin starts the record of a request whose head was just read.
func (f *conn) begin() {
	f.rec = observe.Request{Start: time.Now()}
	f.status, f.headAt, f.wrote, f.bodyFrom = 0, time.Time{}, 0, 0
}

// finish reports r, answered with status after retries attempts beyond
// the first. The record lends views of the connection's buffers: it is
// reused for the next request, so reporting allocates nothing.
func (f *conn) finish(r *request, status int, backend string, retries int) {
	rec := &f.rec
	end := f.headAt
	if end.IsZero() {
		end = time.Now()
	}
	rec.Duration = end.Sub(rec.Start)
	rec.Service = r.pool.Service
	rec.Host = f.hostStr
	rec.Method = view(r.method)
	rec.URI = view(r.target)
	rec.Proto = "HTTP/1.1"
	rec.RemoteIP = f.ip
	rec.Referer = view(r.referer)
	rec.UserAgent = view(r.userAgent)
	rec.RequestID = view(r.id)
	rec.Backend = backend
	rec.Status = status
	rec.Bytes = max(0, f.wrote-f.bodyFrom)
	rec.Retries = max(0, retries)
	rec.TLS = f.tls != nil
	f.s.obs.Request(rec)
}

// dropViews ends the record's views of the connection's buffers, for a
// connection that gives its buffers up while idle: a view would keep the
// buffer it points into, and the request the ID was made in, alive.
func (f *conn) dropViews() { f.rec = observe.Request{} }

// view is b as a string without a copy, valid while b is.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
