package h2

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// holdBack is how much of a body is kept before the response head goes
// out: a short answer then leaves in one piece, with its length.
const holdBack = 4 << 10

// runHandler serves st, then starts a stream that waited for a handler.
func (c *conn) runHandler(st *stream) {
	for st != nil {
		c.serveStream(st)
		c.mu.Lock()
		st = nil
		for len(c.queue) > 0 && st == nil {
			next := c.queue[0]
			c.queue = c.queue[1:]
			if !next.closed { // reset while it waited: never handled
				st = next
			}
		}
		if st == nil {
			c.running--
			if c.goAway {
				c.closeIfDoneLocked()
			}
			c.armIdleLocked()
		}
		c.mu.Unlock()
	}
}

func (c *conn) serveStream(st *stream) {
	w := &responseWriter{st: st, header: http.Header{}, contentLength: -1}
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				log := c.s.Log
				if log == nil {
					log = slog.Default()
				}
				log.Error("http2 handler panic", "client", c.remote, "panic", fmt.Sprint(v), "stack", string(buf))
			}
			c.mu.Lock()
			if !st.closed {
				c.resetLocked(st.id, http2.ErrCodeInternal)
				c.flushLocked()
			}
			c.mu.Unlock()
			w.done()
			return
		}
		w.finish()
		w.done()
	}()
	if st.req == nil {
		w.req = &http.Request{Method: http.MethodGet}
		w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	w.req = st.req
	c.s.Handler.ServeHTTP(w, st.req)
}

// responseWriter is the http.ResponseWriter of a stream.
type responseWriter struct {
	st            *stream
	req           *http.Request
	header        http.Header
	status        int
	wroteHeader   bool
	committed     bool // the head is queued
	buf           []byte
	contentLength int64 // declared by the handler, -1 without
	written       int64
	trailers      []string
	fields        []hpack.HeaderField // the head, as WriteHeader found it
	inline        [8]hpack.HeaderField
	hasType       bool // the handler set Content-Type, if only to nothing
	hasDate       bool
	sniff         []byte // the body's first bytes, for a Content-Type
	err           error  // the stream ended: every write fails
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 {
		// 1xx answers go out at once, with the fields set so far (103 Early Hints).
		if code == http.StatusSwitchingProtocols {
			return // no such thing on HTTP/2
		}
		c := w.st.c
		c.mu.Lock()
		if !w.st.closed && c.werr == nil {
			fields := fieldsOf(nil, w.header)
			c.writeHeadersLocked(w.st.id, func(e *hpack.Encoder) {
				_ = e.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(code)})
				for _, f := range fields {
					_ = e.WriteField(f)
				}
			}, false)
			c.flushLocked()
		}
		c.mu.Unlock()
		return
	}
	w.status, w.wroteHeader = code, true
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		} else {
			w.header.Del("Content-Length")
		}
	}
	for _, v := range w.header["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = http.CanonicalHeaderKey(textTrim(k)); k != "" {
				w.trailers = append(w.trailers, k)
			}
		}
	}
	// As net/http: what the handler sets from here on is not in the head.
	w.fields = fieldsOf(w.inline[:0], w.header)
	_, w.hasType = w.header["Content-Type"]
	_, w.hasDate = w.header["Date"]
}

func (w *responseWriter) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified && w.req.Method != "HEAD"
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.status == http.StatusNoContent || w.status == http.StatusNotModified {
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.req.Method == "HEAD" {
		return len(p), nil
	}
	if !w.committed && len(w.buf)+len(p) <= holdBack {
		if w.buf == nil {
			w.buf = make([]byte, 0, min(holdBack, max(len(p), 512)))
		}
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.send(p, false, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *responseWriter) Flush() { _ = w.FlushError() }

func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	return w.send(nil, false, true)
}

// send queues the head if not yet, what is held back, then p, and ends
// the stream if end; flush writes the queue out.
func (w *responseWriter) send(p []byte, end, flush bool) error {
	st := w.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	err := w.sendLocked(p, end)
	if err == nil && (flush || end) {
		if end && !c.flushing {
			// Other streams' answers that are ready go in the same
			// record: let them queue first.
			c.mu.Unlock()
			runtime.Gosched()
			c.mu.Lock()
		}
		c.flushLocked()
		if c.werr != nil {
			err = c.werr
		}
	}
	if err != nil {
		w.err = err
	}
	return err
}

func (w *responseWriter) sendLocked(p []byte, end bool) error {
	st := w.st
	c := st.c
	if st.closed {
		return errStreamGone
	}
	if c.werr != nil {
		return c.werr
	}
	trailers := end && w.hasTrailers()
	if !w.committed {
		w.committed = true
		// Without a body to follow, the head ends the stream.
		headEnds := end && !trailers && len(w.buf) == 0 && len(p) == 0
		length := int64(-1)
		if end && w.contentLength < 0 && w.status != http.StatusNoContent && w.status != http.StatusNotModified {
			length = int64(len(w.buf) + len(p))
			if w.req.Method == "HEAD" {
				length = -1
				if w.written > 0 {
					length = w.written // as net/http: what the handler would have sent
				}
			}
		}
		w.sniff = w.buf
		if len(w.sniff) == 0 {
			w.sniff = p
		}
		c.writeHeadersLocked(st.id, func(e *hpack.Encoder) { w.encodeHead(e); w.encodeLength(e, length) }, headEnds)
		if headEnds {
			st.localDone = true
			st.endIfDoneLocked()
			return nil
		}
	}
	if len(w.buf) > 0 {
		body := w.buf
		w.buf = nil
		if _, err := c.writeDataLocked(st, body, end && !trailers && len(p) == 0); err != nil {
			return err
		}
	}
	if len(p) > 0 || (end && !trailers && !st.localDone) {
		if _, err := c.writeDataLocked(st, p, end && !trailers); err != nil {
			return err
		}
	}
	st.progressLocked()
	if trailers {
		c.writeHeadersLocked(st.id, w.encodeTrailers, true)
		st.localDone = true
	}
	if end {
		st.endIfDoneLocked()
	}
	return nil
}

// finish ends the response once the handler has returned.
func (w *responseWriter) finish() {
	if !w.wroteHeader && w.req.Context().Err() != nil {
		// Nothing answered, and the request was given up (the client
		// reset it, or the drain cut it at its deadline): a reset, not
		// an empty 200 the client would take for the answer.
		c := w.st.c
		c.mu.Lock()
		if !w.st.closed {
			c.resetLocked(w.st.id, http2.ErrCodeCancel)
			c.flushAsync()
		}
		c.mu.Unlock()
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil {
		_ = w.send(nil, true, true)
	}
}

// done is the handler's end: a client still sending a body it will not
// read is told to stop (RST_STREAM NO_ERROR, as net/http's server).
func (w *responseWriter) done() {
	st := w.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st.bodyGone = true
	if n := int32(len(st.body)); n > 0 {
		st.body = nil
		c.grantLocked(st, n)
	}
	if !st.closed {
		if !st.localDone {
			c.resetLocked(st.id, http2.ErrCodeInternal) // the answer was cut short
		} else if !st.remoteDone {
			c.resetLocked(st.id, http2.ErrCodeNo)
		}
	}
	c.flushAsync()
	st.progressLocked()
}

func (w *responseWriter) hasTrailers() bool {
	for _, k := range w.trailers {
		if len(w.header[k]) > 0 {
			return true
		}
	}
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// fieldsOf appends h's fields as HTTP/2 sends them: lower case, less
// those it forbids and those invalid.
func fieldsOf(dst []hpack.HeaderField, h http.Header) []hpack.HeaderField {
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		name := lower(k)
		if connHeaders[name] {
			continue
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				dst = append(dst, hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	return dst
}

// encodeHead encodes the status and the fields the handler had set when it
// called WriteHeader, with a Date and a sniffed Content-Type where it set
// none, as net/http's server does.
func (w *responseWriter) encodeHead(e *hpack.Encoder) {
	_ = e.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(w.status)})
	for _, f := range w.fields {
		_ = e.WriteField(f)
	}
	if !w.hasType && w.bodyAllowed() && len(w.sniff) > 0 {
		_ = e.WriteField(hpack.HeaderField{Name: "content-type", Value: http.DetectContentType(w.sniff)})
	}
	if !w.hasDate {
		_ = e.WriteField(hpack.HeaderField{Name: "date", Value: date()})
	}
}

func (w *responseWriter) encodeLength(e *hpack.Encoder, n int64) {
	if n >= 0 {
		_ = e.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(n, 10)})
	}
}

func (w *responseWriter) encodeTrailers(e *hpack.Encoder) {
	emit := func(k string, vv []string) {
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidTrailerHeader(http.CanonicalHeaderKey(k)) {
			return
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				_ = e.WriteField(hpack.HeaderField{Name: strings.ToLower(k), Value: v})
			}
		}
	}
	for _, k := range w.trailers {
		emit(k, w.header[k])
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			emit(name, vv)
		}
	}
}

func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 304:
		return "304"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// date is the Date field, formatted once a second.
func date() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.at == now {
		return d.text
	}
	d := &dated{at: now, text: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.text
}

type dated struct {
	at   int64
	text string
}

var dateCache atomic.Pointer[dated]
