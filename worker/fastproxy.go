package worker

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"srp/platform"
)

// clientPoll is how often a wait for a backend looks whether its client
// is still there; net/http's server notices at once, with a goroutine per
// request reading in the background.
const clientPoll = time.Second

// maxResponseHead is net/http Transport's default limit.
const maxResponseHead = 1 << 20

var (
	errClientGone   = errors.New("client closed the connection")
	errResponseHead = errors.New("malformed response head")
	errResponseBody = errors.New("malformed response body")
)

// proxy serves r from its service's backends with the retry rules of
// pool.RoundTrip, and reports whether the client connection stays open.
func (f *fastConn) proxy(r *request) bool {
	p := r.svc.pool
	var tried [maxTries]string
	var err error
	for n := 0; n < maxTries; n++ {
		addr := p.pick(tried[:n])
		if addr == "" {
			break
		}
		tried[n] = addr
		var keep, sent bool
		keep, sent, err = f.exchange(r, addr)
		if err == nil {
			return keep
		}
		err = &backendError{addr: addr, err: err}
		if sent {
			f.logError(r, 0, err) // the response was cut short: the client sees it end
			return false
		}
		if !f.retryable(r, err) {
			break
		}
	}
	if err == nil {
		err = errNoBackend
	}
	status := statusOf(err)
	f.logError(r, status, err)
	if status == statusClientClosed || f.aborted.Load() {
		return false
	}
	keep := !r.close && !f.s.rt.draining.Load()
	f.out = appendError(f.out[:0], status, string(r.method) == "HEAD", !keep)
	return f.write(f.out) == nil && keep
}

func (f *fastConn) retryable(r *request, err error) bool {
	if f.aborted.Load() || errors.Is(err, errClientGone) {
		return false
	}
	// The body goes whole with the head: sent once a dial succeeded.
	return mayRetry(string(r.method), r.length > 0 && !isDial(err), err)
}

func (f *fastConn) logError(r *request, status int, err error) {
	path := r.target
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	msg := "proxy error"
	if status == 0 {
		msg = "response cut short"
	}
	f.s.rt.errs.logFailure(msg, status, f.hostStr, string(r.method), string(path), string(r.id), err)
}

// write sends b to the client within the stall limit.
func (f *fastConn) write(b []byte) error {
	f.armWrite()
	_, err := f.rw.Write(b)
	return err
}

// armWrite gives the next write at least 7/8 of the stall limit and at
// most all of it; the deadline moves only when less than that is left.
func (f *fastConn) armWrite() {
	now := time.Now()
	f.lastWrite = now
	if f.stall > 0 && f.wdl.Sub(now) < f.stall-f.stall/8 {
		f.wdl = now.Add(f.stall)
		_ = f.rw.SetWriteDeadline(f.wdl)
	}
}

// exchange sends r to the backend at addr and copies its response to the
// client. sent reports that the client has seen part of a response, so
// nothing else may be sent; keep, that both connections stay open.
func (f *fastConn) exchange(r *request, addr string) (keep, sent bool, err error) {
	for fresh := false; ; fresh = true {
		bc, reused, err := f.s.rt.backends.get(f.s.base, addr, fresh)
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
		if err != nil && !sent && reused && bc.answered == 0 && f.retryable(r, err) && !isTimeout(err) {
			continue
		}
		return keep, sent, err
	}
}

func (f *fastConn) exchangeOn(bc *backendConn, r *request) (keep, sent bool, err error) {
	if f.aborted.Load() {
		_ = bc.Close()
		return false, false, errClientGone
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
	keep, backendKeep, err := f.copyResponse(bc, r, &resp)
	if err != nil || !backendKeep {
		_ = bc.Close()
	} else {
		f.s.rt.backends.put(bc)
	}
	return keep, true, err
}

// appendRequest writes the head the backend gets, and the body: the
// client's header lines as they came, less hop-by-hop headers and those
// srp sets, then srp's own.
func (f *fastConn) appendRequest(b []byte, r *request) []byte {
	line, rest := cutLine(r.head)
	b = append(b, line...)
	b = append(b, "\r\n"...)
	var xff [][]byte
	var xffBuf [4][]byte
	xff = xffBuf[:0]
	for {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		name := line[:bytes.IndexByte(line, ':')]
		if eqFold(name, "X-Forwarded-For") {
			xff = append(xff, trimOWS(line[len(name)+1:]))
		}
		if hopByHop(name) || srpSets(name) || r.conn.has(name) && !framing(name) {
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
	if r.id == nil {
		r.id = strconv.AppendUint(append(r.idBuf[:0], idPrefix...), idCounter.Add(1), 16)
	}
	b = append(b, r.id...)
	if r.trailers {
		b = append(b, "\r\nTe: trailers"...)
	}
	b = append(b, "\r\n\r\n"...)
	return append(b, r.head[len(r.head):len(r.head)+r.length]...)
}

// response is a backend's response head, parsed.
type response struct {
	head    []byte
	status  int
	length  int64 // -1: none given
	chunked bool
	close   bool // the backend closes the connection after it
	date    bool
	sse     bool // an event stream, ended properly at the drain deadline
	conn    connTokens
	noBody  bool
}

// readResponse reads the final response head, passing 1xx informational
// responses on to the client as ReverseProxy does.
func (f *fastConn) readResponse(bc *backendConn, r *request) (response, error) {
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
		if end, ok := headEnd(pending, 0); ok {
			var resp response
			if !parseResponse(&resp, pending[:end]) {
				return resp, errResponseHead
			}
			bc.off += end
			if resp.status >= 200 {
				resp.noBody = string(r.method) == "HEAD" || resp.status == 204 || resp.status == 304
				return resp, nil
			}
			if resp.status == http.StatusSwitchingProtocols {
				return resp, errResponseHead // no upgrade was asked for
			}
			f.out = f.appendResponseHead(f.out[:0], &resp, false)
			if err := f.write(f.out); err != nil {
				return resp, errClientGone
			}
			continue
		}
		if len(pending) >= maxResponseHead {
			return response{}, errResponseHead
		}
		bc.makeRoom()
		n, err := bc.Read(bc.buf[len(bc.buf):cap(bc.buf)])
		bc.buf = bc.buf[:len(bc.buf)+n]
		bc.answered += n
		if n > 0 {
			continue
		}
		if !isTimeout(err) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return response{}, err
		}
		now := time.Now()
		if !now.Before(limit) {
			return response{}, err
		}
		if f.clientGone() {
			return response{}, errClientGone
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
func (f *fastConn) clientGone() bool {
	gone := false
	check := func(fd uintptr) {
		closed, known := platform.PeerShutdown(fd)
		if !known { // only a close with nothing queued to read is seen
			closed = peekFD(fd) == peekClosed
		}
		gone = closed
	}
	if f.raw == nil || f.raw.Control(check) != nil {
		return false
	}
	return gone
}

// parseResponse parses a response head and reports whether it is one the
// fast path passes on; anything ambiguous is a 502.
func parseResponse(resp *response, h []byte) bool {
	*resp = response{head: h, length: -1}
	if byteFault(h) != "" {
		return false
	}
	line, rest := cutLine(h)
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
		return false
	}
	http10 := string(line[5:8]) == "1.0"
	if !http10 && string(line[5:8]) != "1.1" {
		return false
	}
	resp.close = http10
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 || !fieldValue(line) {
		return false
	}
	resp.status = code
	for {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':') // not found in an obsolete folded line: refused
		if colon <= 0 || !isToken(line[:colon]) {
			return false
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !fieldValue(value) {
			return false
		}
		switch {
		case eqFold(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || resp.length >= 0 {
				return false
			}
			resp.length = int64(n)
		case eqFold(name, "Transfer-Encoding"):
			if resp.chunked || !eqFold(value, "chunked") {
				return false
			}
			resp.chunked = true
		case eqFold(name, "Connection"):
			if !resp.conn.parse(value, &resp.close) {
				return false
			}
		case eqFold(name, "Date"):
			resp.date = true
		case eqFold(name, "Content-Type"):
			resp.sse = len(value) >= 17 && eqFold(value[:17], "text/event-stream")
		}
	}
	// HTTP/1.0 has no chunked coding: net/http would read such a body to
	// the close, the fast path by its chunks.
	return !(resp.chunked && (resp.length >= 0 || http10))
}

// appendResponseHead writes the head the client gets: the backend's, as
// HTTP/1.1, less hop-by-hop headers, with a Date, and with the framing
// this connection needs.
func (f *fastConn) appendResponseHead(b []byte, resp *response, close bool) []byte {
	line, rest := cutLine(resp.head)
	b = append(b, "HTTP/1.1"...)
	b = append(b, line[8:]...)
	b = append(b, "\r\n"...)
	for {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		name := line[:bytes.IndexByte(line, ':')]
		if hopByHop(name) || resp.conn.has(name) && !framing(name) {
			continue
		}
		b = append(b, line...)
		b = append(b, "\r\n"...)
	}
	if !resp.date {
		b = append(b, "Date: "...)
		b = appendDate(b)
		b = append(b, "\r\n"...)
	}
	if resp.status >= 200 && !resp.noBody && !resp.chunked && resp.length < 0 {
		b = append(b, "Transfer-Encoding: chunked\r\n"...) // re-framed: see copyResponse
	}
	if close {
		b = append(b, "Connection: close\r\n"...)
	}
	return append(b, "\r\n"...)
}
