package worker

import (
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The fast path's byte-level checks. Each accepts a subset of what net/http
// accepts: anything else goes to net/http, which answers it as before.

// eqFold compares an ASCII header name or token with a known one.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if c|0x20 != d|0x20 || c|0x20 < 'a' || c|0x20 > 'z' {
			return false
		}
	}
	return true
}

// tokenChars are RFC 9110 tchar.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// targetChars are the bytes an origin-form target may hold as they are:
// RFC 3986 pchar, '/' and '?', with '%' checked separately.
var targetChars = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = tokenChars[c]
	}
	for _, c := range "/?:@!$&'()*+,;=-._~" {
		t[c] = true
	}
	for _, c := range "#^`|" { // tchar, but not allowed unescaped in a target
		t[c] = false
	}
	return t
}()

// originForm accepts "/path?query" with valid percent-escapes only, and
// no ';' in the query: ReverseProxy rewrites such a query (it drops the
// pairs with one), so the fast path must not pass it on as it is.
func originForm(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	query := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		query = query || c == '?'
		if query && c == ';' {
			return false
		}
		if c == '%' {
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return false
			}
			i += 2
			continue
		}
		if !targetChars[c] {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	_, ok := unhex(c)
	return ok
}

// fieldValue rejects the control bytes net/http refuses in a header value.
func fieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// hostChars accepts a registered name or IPv4 address with an optional
// port; IPv6 literals and anything odd go to net/http.
func hostChars(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == ':':
		default:
			return false
		}
	}
	return true
}

// cutComma splits a list value at its first comma, trimming whitespace.
func cutComma(v []byte) (item, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return trimOWS(v[:i]), v[i+1:]
	}
	return trimOWS(v), nil
}

func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		t, v = cutComma(v)
		if eqFold(t, tok) {
			return true
		}
	}
	return false
}

// hopByHop reports the headers that describe one connection, never passed
// on in either direction (RFC 9110 7.6.1, as ReverseProxy's list).
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return eqFold(name, "Te")
	case 7:
		return eqFold(name, "Upgrade")
	case 10:
		return eqFold(name, "Connection") || eqFold(name, "Keep-Alive")
	case 16:
		return eqFold(name, "Proxy-Connection")
	case 18:
		return eqFold(name, "Proxy-Authenticate")
	case 19:
		return eqFold(name, "Proxy-Authorization")
	}
	return false
}

// srpSets reports the forwarding headers a client may not set: srp writes
// its own, or none (Forwarded), as ReverseProxy's Rewrite does.
func srpSets(name []byte) bool {
	switch len(name) {
	case 9:
		return eqFold(name, "X-Real-Ip") || eqFold(name, "Forwarded")
	case 12:
		return eqFold(name, "X-Request-Id")
	case 15:
		return eqFold(name, "X-Forwarded-For")
	case 16:
		return eqFold(name, "X-Forwarded-Host")
	case 17:
		return eqFold(name, "X-Forwarded-Proto")
	}
	return false
}

// framing reports the headers a Connection header cannot remove: those
// that frame a message (the fast path forwards bodies as they are framed)
// and Host, which net/http keeps apart from the other headers.
func framing(name []byte) bool {
	return eqFold(name, "Content-Length") || eqFold(name, "Transfer-Encoding") ||
		eqFold(name, "Trailer") || eqFold(name, "Host")
}

// dateValue is the Date header value, formatted once a second.
type dateValue struct {
	sec int64
	b   []byte
}

var dateCache atomic.Pointer[dateValue]

func appendDate(b []byte) []byte {
	now := time.Now()
	d := dateCache.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateValue{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
		dateCache.Store(d)
	}
	return append(b, d.b...)
}

// appendError writes the answer http.Error gives, so a client cannot tell
// which path answered.
func appendError(b []byte, status int, head, close bool) []byte {
	text := http.StatusText(status)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: "...)
	b = appendDate(b)
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
