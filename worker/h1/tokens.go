package h1

import (
	"bytes"
)

// Byte-level checks. Each accepts a subset of what net/http accepts: what
// they refuse, the fast path hands to net/http, which answers it as before.

// EqFold compares an ASCII header name or token with a known one.
func EqFold(b []byte, s string) bool {
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

func IsToken(b []byte) bool {
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

// OriginForm accepts "/path?query" with valid percent-escapes only, and
// no ';' in the query: ReverseProxy rewrites such a query (it drops the
// pairs with one), so the fast path must not pass it on as it is.
func OriginForm(b []byte) bool {
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

// FieldValue rejects the control bytes net/http refuses in a header value.
func FieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// HostChars accepts a registered name or IPv4 address with an optional
// port; IPv6 literals and anything odd go to net/http.
func HostChars(b []byte) bool {
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

// CutComma splits a list value at its first comma, trimming whitespace.
func CutComma(v []byte) (item, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return TrimOWS(v[:i]), v[i+1:]
	}
	return TrimOWS(v), nil
}

func HasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		t, v = CutComma(v)
		if EqFold(t, tok) {
			return true
		}
	}
	return false
}

// HopByHop reports the headers that describe one connection, never passed
// on in either direction (RFC 9110 7.6.1, as ReverseProxy's list).
func HopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return EqFold(name, "Te")
	case 7:
		return EqFold(name, "Upgrade")
	case 10:
		return EqFold(name, "Connection") || EqFold(name, "Keep-Alive")
	case 16:
		return EqFold(name, "Proxy-Connection")
	case 18:
		return EqFold(name, "Proxy-Authenticate")
	case 19:
		return EqFold(name, "Proxy-Authorization")
	}
	return false
}

// Framing reports the headers a Connection header cannot remove: those
// that frame a message (the fast path forwards bodies as they are framed)
// and Host, which net/http keeps apart from the other headers.
func Framing(name []byte) bool {
	return EqFold(name, "Content-Length") || EqFold(name, "Transfer-Encoding") ||
		EqFold(name, "Trailer") || EqFold(name, "Host")
}

// ConnTokens are header names listed in a Connection header, to be removed.
type ConnTokens struct {
	n    int
	list [16][]byte
}

func (t *ConnTokens) add(name []byte) bool {
	if t.n == len(t.list) {
		return false
	}
	t.list[t.n] = name
	t.n++
	return true
}

func (t *ConnTokens) Has(name []byte) bool {
	for _, v := range t.list[:t.n] {
		if EqFold(name, string(v)) {
			return true
		}
	}
	return false
}

// Parse adds the header names a Connection value lists; close reports a
// "close" among them.
func (t *ConnTokens) Parse(v []byte, close *bool) bool {
	for len(v) > 0 {
		var tok []byte
		tok, v = CutComma(v)
		switch {
		case len(tok) == 0:
		case !IsToken(tok):
			return false
		case EqFold(tok, "close"):
			*close = true
		case EqFold(tok, "keep-alive"):
		default:
			if !t.add(tok) {
				return false
			}
		}
	}
	return true
}
