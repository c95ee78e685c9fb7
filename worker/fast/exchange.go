package fast

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"time"

	"srp/platform"
	"srp/worker/h1"
	"srp/worker/upstream"
)

var (
	errResponseHead = &upstream.ProtocolError{Msg: "malformed response head"}
	errResponseBody = &upstream.ProtocolError{Msg: "malformed response body"}
)

// proxy serves r from its service's backends with the retry rules of
// pool.RoundTrip, and reports whether the client connection stays open.
func (f *conn) proxy(r *request) bool {
	p := r.pool
	if r.id == nil {
		// Made before any attempt, so a failure that reaches no backend is
		// logged with the ID too.
		r.id = upstream.AppendNewID(r.idBuf[:0])
	}
	var tried [upstream.MaxTries]string
	var err error
	for n := 0; n < upstream.MaxTries; n++ {
		addr := p.Pick(tried[:n])
		if addr == "" {
			break
		}
		tried[n] = addr
		var keep, sent bool
		keep, sent, err = f.exchange(r, addr)
		switch {
		case sent:
			f.s.obs.Attempt(p.Service, addr, n > 0, f.status, "")
		case !errors.Is(err, upstream.ErrClientGone):
			f.s.obs.Attempt(p.Service, addr, n > 0, 0, upstream.Reason(err))
		}
		if err == nil {
			f.finish(r, f.status, addr, n)
			return keep
		}
		err = &upstream.BackendError{Addr: addr, Err: err}
		if sent {
			f.logError(r, 0, err) // the response was cut short: the client sees it end
			f.finish(r, f.status, addr, n)
			return false
		}
		if !f.retryable(r, err) {
			break
		}
	}
	if err == nil {
		err = upstream.ErrNoBackend
	}
	status := upstream.StatusOf(err)
	f.logError(r, status, err)
	var backend string
	if be := (*upstream.BackendError)(nil); errors.As(err, &be) {
		backend = be.Addr
	}
	tries := 0
	for _, a := range tried {
		if a != "" {
			tries++
		}
	}
	if status == upstream.StatusClientClosed || f.aborted.Load() {
		f.finish(r, upstream.StatusClientClosed, backend, tries-1)
		return false
	}
	keep := !r.close && !f.s.router.Draining()
	head := string(r.method) == "HEAD"
	f.out = h1.AppendError(f.out[:0], status, head, !keep)
	f.bodyFrom = f.wrote + int64(len(f.out))
	if !head {
		f.bodyFrom -= int64(len(http.StatusText(status)) + 1)
	}
	ok := f.write(f.out) == nil && keep
	f.finish(r, status, backend, tries-1)
	return ok
}

func (f *conn) retryable(r *request, err error) bool {
	if f.aborted.Load() || errors.Is(err, upstream.ErrClientGone) {
		return false
	}
	// The body goes whole with the head: sent once a dial succeeded.
	return upstream.MayRetry(string(r.method), r.length > 0 && !upstream.IsDial(err), err)
}

func (f *conn) logError(r *request, status int, err error) {
	path := r.target
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	msg := "proxy error"
	if status == 0 {
		msg = "response cut short"
	}
	f.s.router.LogFailure(msg, status, f.hostStr, string(r.method), string(path), string(r.id), err)
}

// write sends b to the client within the stall limit.
func (f *conn) write(b []byte) error {
	f.armWrite()
	n, err := f.rw.Write(b)
	f.wrote += int64(n)
	return err
}

// armWrite gives the next write at least 7/8 of the stall limit and at
// most all of it; the deadline moves only when less than that is left.
func (f *conn) armWrite() {
	now := time.Now()
	f.lastWrite = now
	if f.headAt.IsZero() {
		f.headAt = now
	}
	if f.stall > 0 && f.wdl.Sub(now) < f.stall-f.stall/8 {
		f.wdl = now.Add(f.stall)
		_ = f.rw.SetWriteDeadline(f.wdl)
	}
}

// exchange sends r to the backend at addr and copies its response to the
// client. sent reports that the client has seen part of a response, so
// nothing else may be sent; keep, that both connections stay open.
func (f *conn) exchange(r *request, addr string) (keep, sent bool, err error) {
	for fresh := false; ; fresh = true {
		bc, reused, err := f.s.backends.get(f.s.base, addr, fresh)
		if err != nil {
			return false, false, err
		}
		f.be.Store(bc)
		keep, sent, err = f.exchangeOn(bc, r)
		f.be.Store(nil)
		// A kept connection the backend closed just as it was reused (it
		// was alive when peeked): the backend saw nothing it could have
		// answered, so the request goes again on a new connection, as
		// net/http's Transport retries it.
		if err != nil && !sent && reused && bc.answered == 0 && f.retryable(r, err) && !upstream.IsTimeout(err) {
			continue
		}
		return keep, sent, err
	}
}

func (f *conn) exchangeOn(bc *backendConn, r *request) (keep, sent bool, err error) {
	if f.aborted.Load() {
		_ = bc.Close()
		return false, false, upstream.ErrClientGone
	}
	f.out = f.appendRequest(f.out[:0], r)
	if _, err := bc.Write(f.out); err != nil {
		_ = bc.Close()
		return false, false, err
	}
	resp, err := f.readResponse(bc, r)
	if err != nil {
		_ = bc.Close()
		return false, false, err
	}
	f.status = resp.Status
	keep, backendKeep, err := f.copyResponse(bc, r, &resp)
	if err != nil || !backendKeep {
		_ = bc.Close()
	} else {
		f.s.backends.put(bc)
	}
	return keep, true, err
}

// appendRequest writes the head the backend gets, and the body: the
// client's header lines as they came, less hop-by-hop headers and those
// srp sets, then srp's own.
func (f *conn) appendRequest(b []byte, r *request) []byte {
	line, rest := h1.CutLine(r.head)
	b = append(b, line...)
	b = append(b, "\r\n"...)
	var xff [][]byte
	var xffBuf [4][]byte
	xff = xffBuf[:0]
	for {
		line, rest = h1.CutLine(rest)
		if len(line) == 0 {
			break
		}
		name := line[:bytes.IndexByte(line, ':')]
		if h1.EqFold(name, "X-Forwarded-For") {
			xff = append(xff, h1.TrimOWS(line[len(name)+1:]))
		}
		if h1.HopByHop(name) || srpSets(name) || r.conn.Has(name) && !h1.Framing(name) {
			continue
		}
		b = append(b, line...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-For: "...)
	for _, v := range xff {
		b = append(b, v...)
		b = append(b, ", "...)
	}
	b = append(b, f.ip...)
	b = append(b, "\r\nX-Real-Ip: "...)
	b = append(b, f.ip...)
	b = append(b, "\r\nX-Forwarded-Host: "...)
	b = append(b, r.host...)
	if f.tls != nil {
		b = append(b, "\r\nX-Forwarded-Proto: https\r\nX-Request-Id: "...)
	} else {
		b = append(b, "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: "...)
	}
	b = append(b, r.id...)
	if r.trailers {
		b = append(b, "\r\nTe: trailers"...)
	}
	b = append(b, "\r\n\r\n"...)
	return append(b, r.head[len(r.head):len(r.head)+r.length]...)
}

// readResponse reads the final response head, passing 1xx informational
// responses on to the client as ReverseProxy does.
func (f *conn) readResponse(bc *backendConn, r *request) (h1.Response, error) {
	now := time.Now()
	limit := now.Add(f.s.timeout)
	// The read deadline is a wake-up to look at the client and the clock.
	// One set for an earlier request is earlier than this one's limit and
	// may stay if it is not too close.
	if wake := min(clientPoll, f.s.timeout); bc.rdl.Sub(now) < wake/2 {
		bc.setReadDeadline(now.Add(wake))
	}
	for {
		pending := bc.buf[bc.off:]
		if end, ok := h1.HeadEnd(pending, 0); ok {
			var resp h1.Response
			if !h1.ParseResponse(&resp, pending[:end]) {
				return resp, errResponseHead
			}
			bc.off += end
			if resp.Status >= 200 {
				resp.NoBody = string(r.method) == "HEAD" || resp.Status == 204 || resp.Status == 304
				return resp, nil
			}
			if resp.Status == http.StatusSwitchingProtocols {
				return resp, errResponseHead // no upgrade was asked for
			}
			f.out = f.appendResponseHead(f.out[:0], &resp, false)
			if err := f.write(f.out); err != nil {
				return resp, upstream.ErrClientGone
			}
			continue
		}
		if len(pending) >= maxResponseHead {
			return h1.Response{}, errResponseHead
		}
		bc.makeRoom()
		n, err := bc.Read(bc.buf[len(bc.buf):cap(bc.buf)])
		bc.buf = bc.buf[:len(bc.buf)+n]
		bc.answered += n
		if n > 0 {
			continue
		}
		if !upstream.IsTimeout(err) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return h1.Response{}, err
		}
		now := time.Now()
		if !now.Before(limit) {
			return h1.Response{}, err
		}
		if f.clientGone() {
			return h1.Response{}, upstream.ErrClientGone
		}
		bc.setReadDeadline(now.Add(min(clientPoll, limit.Sub(now))))
	}
}

// makeRoom frees or adds space after the unread bytes of the buffer.
func (bc *backendConn) makeRoom() {
	if bc.off > 0 {
		n := copy(bc.buf, bc.buf[bc.off:])
		bc.buf, bc.off = bc.buf[:n], 0
	}
	if len(bc.buf) == cap(bc.buf) {
		bc.buf = slices.Grow(bc.buf, cap(bc.buf))
	}
}

// clientGone reports whether the client closed its connection. A request
// it pipelined behind this one does not hide that.
func (f *conn) clientGone() bool {
	gone := false
	check := func(fd uintptr) {
		closed, known := platform.PeerShutdown(fd)
		if !known { // only a close with nothing queued to read is seen
			closed = platform.PeekFD(fd) == platform.PeekClosed
		}
		gone = closed
	}
	if f.raw == nil || f.raw.Control(check) != nil {
		return false
	}
	return gone
}

// appendResponseHead writes the head the client gets: the backend's, as
// HTTP/1.1, less hop-by-hop headers, with a Date, and with the framing
// this connection needs.
func (f *conn) appendResponseHead(b []byte, resp *h1.Response, close bool) []byte {
	line, rest := h1.CutLine(resp.Head)
	b = append(b, "HTTP/1.1"...)
	b = append(b, line[8:]...)
	b = append(b, "\r\n"...)
	for {
		line, rest = h1.CutLine(rest)
		if len(line) == 0 {
			break
		}
		name := line[:bytes.IndexByte(line, ':')]
		if h1.HopByHop(name) || resp.Conn.Has(name) && !h1.Framing(name) {
			continue
		}
		b = append(b, line...)
		b = append(b, "\r\n"...)
	}
	if !resp.Date {
		b = append(b, "Date: "...)
		b = h1.AppendDate(b)
		b = append(b, "\r\n"...)
	}
	if resp.Status >= 200 && !resp.NoBody && !resp.Chunked && resp.Length < 0 {
		b = append(b, "Transfer-Encoding: chunked\r\n"...) // re-framed: see copyResponse
	}
	if close {
		b = append(b, "Connection: close\r\n"...)
	}
	return append(b, "\r\n"...)
}

// srpSets reports the forwarding headers a client may not set: srp writes
// its own, or none (Forwarded), as ReverseProxy's Rewrite does.
func srpSets(name []byte) bool {
	switch len(name) {
	case 9:
		return h1.EqFold(name, "X-Real-Ip") || h1.EqFold(name, "Forwarded")
	case 12:
		return h1.EqFold(name, "X-Request-Id")
	case 15:
		return h1.EqFold(name, "X-Forwarded-For")
	case 16:
		return h1.EqFold(name, "X-Forwarded-Host")
	case 17:
		return h1.EqFold(name, "X-Forwarded-Proto")
	}
	return false
}
