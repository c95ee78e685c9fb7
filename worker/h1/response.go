package h1

import (
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Response is a backend's Response head, parsed.
type Response struct {
	Head    []byte
	Status  int
	Length  int64 // -1: none given
	Chunked bool
	Close   bool // the backend closes the connection after it
	Date    bool
	SSE     bool // an event stream, ended properly at the drain deadline
	Conn    ConnTokens
	NoBody  bool // set by the caller: the request or the status allows no body
}

// ParseResponse parses a Response head and reports whether it is one the
// fast path passes on; anything ambiguous is a 502.
func ParseResponse(resp *Response, h []byte) bool {
	*resp = Response{Head: h, Length: -1}
	if ByteFault(h) != "" {
		return false
	}
	line, rest := CutLine(h)
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
		return false
	}
	http10 := string(line[5:8]) == "1.0"
	if !http10 && string(line[5:8]) != "1.1" {
		return false
	}
	resp.Close = http10
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 || !FieldValue(line) {
		return false
	}
	resp.Status = code
	for {
		line, rest = CutLine(rest)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':') // not found in an obsolete folded line: refused
		if colon <= 0 || !IsToken(line[:colon]) {
			return false
		}
		name, value := line[:colon], TrimOWS(line[colon+1:])
		if !FieldValue(value) {
			return false
		}
		switch {
		case EqFold(name, "Content-Length"):
			n, ok := ParseLength(value)
			if !ok || resp.Length >= 0 {
				return false
			}
			resp.Length = int64(n)
		case EqFold(name, "Transfer-Encoding"):
			if resp.Chunked || !EqFold(value, "chunked") {
				return false
			}
			resp.Chunked = true
		case EqFold(name, "Connection"):
			if !resp.Conn.Parse(value, &resp.Close) {
				return false
			}
		case EqFold(name, "Date"):
			resp.Date = true
		case EqFold(name, "Content-Type"):
			resp.SSE = len(value) >= 17 && EqFold(value[:17], "text/event-stream")
		}
	}
	// HTTP/1.0 has no chunked coding: net/http would read such a body to
	// the close, the fast path by its chunks.
	return !(resp.Chunked && (resp.Length >= 0 || http10))
}

// dateValue is the Date header value, formatted once a second.
type dateValue struct {
	sec int64
	b   []byte
}

var dateCache atomic.Pointer[dateValue]

func AppendDate(b []byte) []byte {
	now := time.Now()
	d := dateCache.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateValue{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
		dateCache.Store(d)
	}
	return append(b, d.b...)
}

// AppendError writes the answer http.Error gives, so a client cannot tell
// which path answered.
func AppendError(b []byte, status int, head, close bool) []byte {
	text := http.StatusText(status)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: "...)
	b = AppendDate(b)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(text)+1), 10)
	if close {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	if !head {
		b = append(b, text...)
		b = append(b, '\n')
	}
	return b
}
