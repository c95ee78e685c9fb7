package h2

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// stream is one request and its response. Its fields are guarded by the
// connection's mu.
type stream struct {
	c      *conn
	id     uint32
	req    *http.Request
	ctx    context.Context
	cancel context.CancelFunc

	closed     bool // reset, or done on both sides: out of c.streams
	remoteDone bool // the client sent END_STREAM
	localDone  bool // the response's END_STREAM is queued
	sendWindow int64
	recvWindow int32 // what the client may still send
	recvOwed   int32 // read by the handler, not yet granted back

	body      []byte // received, not yet read
	bodyErr   error  // once remoteDone: io.EOF, or why the body ends
	bodyGone  bool   // the handler is done with the body: what arrives is dropped
	declared  int64  // the request's Content-Length, -1 without one
	received  int64
	trailer   http.Header // received; the handler sees the declared ones at the body's end
	continue_ bool        // the client waits for 100 Continue before sending its body

	stallAt    time.Time
	stallTimer *time.Timer
}

// closeLocked takes st out of the connection: its handler's context is
// cancelled and its writes and reads fail.
func (st *stream) closeLocked() {
	if st.closed {
		return
	}
	st.closed = true
	c := st.c
	delete(c.streams, st.id)
	if st.bodyErr == nil {
		st.bodyErr = errStreamGone
	}
	st.progressLocked()
	if st.cancel != nil {
		st.cancel()
	}
	c.cond.Broadcast()
	if c.goAway {
		c.closeIfDoneLocked()
	}
	c.armIdleLocked()
}

// endIfDoneLocked closes st once both sides have ended it.
func (st *stream) endIfDoneLocked() {
	if st.remoteDone && st.localDone {
		st.closeLocked()
	}
}

func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.streams[id]; st != nil {
		return c.onTrailers(st, f)
	}
	if id <= c.maxID {
		if c.resetByUs(id) {
			return nil
		}
		return http2.ConnectionError(http2.ErrCodeProtocol) // a stream already closed, or skipped
	}
	c.maxID = id
	if c.goAway {
		return nil // past the GOAWAY's last stream: the client will retry it elsewhere
	}
	c.lastServed = id
	if f.HasPriority() && f.Priority.StreamDep == id {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if len(c.streams) >= maxStreams {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	st := &stream{c: c, id: id, sendWindow: int64(c.peerWindow), recvWindow: streamWindow,
		remoteDone: f.StreamEnded(), declared: -1}
	// Checked even when too large, as net/http does: a malformed head is
	// reset, a well-formed one too large gets 431 without the handler.
	req, err := c.newRequest(st, f)
	if err != nil {
		return err
	}
	if !f.Truncated {
		st.req = req
	}
	if st.remoteDone {
		st.bodyErr = io.EOF
	}
	c.streams[id] = st
	if c.idle != nil {
		c.idle.Stop()
	}
	if c.running >= maxStreams {
		if len(c.queue) >= maxQueued {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		c.queue = append(c.queue, st)
		return nil
	}
	c.running++
	go c.runHandler(st)
	return nil
}

// onTrailers takes the HEADERS frame that ends a request body.
func (c *conn) onTrailers(st *stream, f *http2.MetaHeadersFrame) error {
	if st.remoteDone {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeStreamClosed}
	}
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	// As net/http: without a Trailer declaration they are dropped unread.
	for _, hf := range f.RegularFields() {
		if st.req == nil || st.req.Trailer == nil {
			break
		}
		k := canonical(hf.Name)
		if !httpguts.ValidTrailerHeader(k) {
			return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
		}
		if st.trailer == nil {
			st.trailer = http.Header{}
		}
		st.trailer[k] = append(st.trailer[k], hf.Value)
	}
	return c.endBodyLocked(st)
}

func (c *conn) endBodyLocked(st *stream) error {
	if st.declared >= 0 && st.received != st.declared {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	st.remoteDone = true
	st.bodyErr = io.EOF
	c.cond.Broadcast()
	st.endIfDoneLocked()
	return nil
}

func (c *conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	size := int32(f.Length) // padding included: it counts against the windows
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.recvWindow {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWindow -= size
	st := c.streams[id]
	if st == nil || st.remoteDone {
		if id > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
		}
		c.grantLocked(nil, size)
		if id > c.lastServed || c.resetByUs(id) {
			return nil // one the GOAWAY left out, or the server reset: its client knows
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if size > st.recvWindow {
		c.grantLocked(nil, size)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	st.recvWindow -= size
	data := f.Data()
	if pad := size - int32(len(data)); pad > 0 {
		c.grantLocked(st, pad)
	}
	st.received += int64(len(data))
	if st.declared >= 0 && st.received > st.declared {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if st.bodyGone {
		c.grantLocked(st, int32(len(data)))
	} else if len(data) > 0 {
		st.body = append(st.body, data...)
		c.cond.Broadcast()
	}
	if f.StreamEnded() {
		return c.endBodyLocked(st)
	}
	return nil
}

// grantLocked returns n bytes of window to the client, for st (if not nil
// and still open) and the connection, once enough is owed to be worth a
// frame.
func (c *conn) grantLocked(st *stream, n int32) {
	c.recvOwed += n
	if c.recvOwed >= connWindow/4 || st == nil {
		c.recvWindow += c.recvOwed
		_ = c.wf.WriteWindowUpdate(0, uint32(c.recvOwed))
		c.recvOwed = 0
	}
	if st == nil || st.remoteDone || st.closed {
		return
	}
	st.recvOwed += n
	if st.recvOwed >= streamWindow/4 {
		st.recvWindow += st.recvOwed
		_ = c.wf.WriteWindowUpdate(st.id, uint32(st.recvOwed))
		st.recvOwed = 0
	}
}

// connection-specific fields, which HTTP/2 forbids (RFC 9113, 8.2.2)
var connHeaders = map[string]bool{"connection": true, "proxy-connection": true, "keep-alive": true,
	"transfer-encoding": true, "upgrade": true}

// newRequest builds st's request from its head, or says which stream
// error the head is.
func (c *conn) newRequest(st *stream, f *http2.MetaHeadersFrame) (*http.Request, error) {
	bad := http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	var method, path, scheme, authority string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":path":
			path = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		default: // :protocol: extended CONNECT is not offered
			return nil, bad
		}
	}
	isConnect := method == "CONNECT"
	if isConnect {
		if path != "" || scheme != "" || authority == "" {
			return nil, bad
		}
	} else if method == "" || (scheme != "https" && scheme != "http") || !(strings.HasPrefix(path, "/") || path == "*") {
		return nil, bad
	}
	header := make(http.Header, len(f.Fields)-len(f.PseudoFields()))
	var cookies []string
	te := 0
	for _, hf := range f.RegularFields() {
		if hf.Name == "te" {
			te++ // two make "trailers, trailers", which net/http refuses too
		}
		if !f.Truncated && (connHeaders[hf.Name] || te > 1 || (hf.Name == "te" && hf.Value != "trailers" && hf.Value != "")) {
			return nil, bad // a head too large gets its 431 first, as from net/http
		}
		if hf.Name == "cookie" {
			cookies = append(cookies, hf.Value)
			continue
		}
		k := canonical(hf.Name)
		header[k] = append(header[k], hf.Value)
	}
	if len(cookies) > 0 {
		// Split across fields for compression (RFC 9113, 8.2.3); one line for HTTP/1.1.
		header["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	// Host and :authority must agree (RFC 9113, 8.3.1): a proxy that
	// routes by one while the backend reads the other is open to confusion.
	if hosts := header["Host"]; len(hosts) > 1 || len(hosts) == 1 && authority != "" && hosts[0] != authority {
		return nil, bad
	} else if len(hosts) == 1 {
		authority = hosts[0]
	}
	delete(header, "Host") // as net/http: it is r.Host
	if !httpguts.ValidHostHeader(authority) {
		return nil, bad
	}
	if cl := header["Content-Length"]; len(cl) > 0 && !f.Truncated {
		for _, v := range cl[1:] {
			if v != cl[0] {
				return nil, bad
			}
		}
		n, err := strconv.ParseUint(cl[0], 10, 63)
		if err != nil {
			return nil, bad
		}
		st.declared = int64(n)
		if st.remoteDone && n > 0 {
			return nil, bad
		}
	}
	var u *url.URL
	var err error
	requestURI := path
	if isConnect {
		u, requestURI = &url.URL{Host: authority}, authority
	} else if u, err = url.ParseRequestURI(path); err != nil {
		return nil, bad
	}
	var trailer http.Header
	for _, v := range header["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(textTrim(k))
			switch k {
			case "", "Transfer-Encoding", "Trailer", "Content-Length":
				continue // as net/http: these cannot be trailers
			}
			if trailer == nil {
				trailer = http.Header{}
			}
			trailer[k] = nil
		}
	}
	delete(header, "Trailer")
	if httpguts.HeaderValuesContainsToken(header["Expect"], "100-continue") {
		// The server answers it, as net/http does: the handler never sees it.
		st.continue_ = !st.remoteDone
		delete(header, "Expect")
	}
	st.ctx, st.cancel = context.WithCancel(c.ctx)
	r := &http.Request{Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: header,
		Host: authority, RemoteAddr: c.remote, RequestURI: requestURI, TLS: c.tls, Trailer: trailer}
	switch {
	case st.remoteDone:
		r.Body, r.ContentLength = http.NoBody, 0
	default:
		r.Body, r.ContentLength = &requestBody{st: st}, st.declared
	}
	return r.WithContext(st.ctx), nil
}

func textTrim(s string) string { return strings.Trim(s, " \t") }

// requestBody is what the client sends on a stream, handed to the handler
// as it arrives.
type requestBody struct {
	st     *stream
	closed bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	st := b.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if st.continue_ {
		st.continue_ = false
		if !st.closed && !st.localDone && c.werr == nil {
			c.writeHeadersLocked(st.id, func(e *hpack.Encoder) { _ = e.WriteField(hpack.HeaderField{Name: ":status", Value: "100"}) }, false)
			c.flushLocked()
		}
	}
	for len(st.body) == 0 && st.bodyErr == nil && c.werr == nil {
		c.cond.Wait()
	}
	if len(st.body) == 0 {
		if st.bodyErr == io.EOF && st.trailer != nil {
			// On the handler's goroutine, as net/http: only what the
			// request declared, once the body has been read.
			for k, v := range st.trailer {
				if _, ok := st.req.Trailer[k]; ok {
					st.req.Trailer[k] = v
				}
			}
			st.trailer = nil
		}
		if st.bodyErr != nil {
			return 0, st.bodyErr
		}
		return 0, c.werr
	}
	n := copy(p, st.body)
	st.body = st.body[n:]
	if len(st.body) == 0 {
		st.body = nil // let a large burst's buffer go
	}
	c.grantLocked(st, int32(n))
	c.flushLocked()
	return n, nil
}

// Close drops what is left: the client's further data is discarded, its
// window given back so the connection's other streams are not starved.
func (b *requestBody) Close() error {
	st := b.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	st.bodyGone = true
	if n := int32(len(st.body)); n > 0 {
		st.body = nil
		c.grantLocked(st, n)
		c.flushAsync()
	}
	return nil
}
