package upstream

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
)

// requestIDs are a random per-process prefix and a counter: unique across
// workers and restarts without a syscall or a lock per request.
var (
	idPrefix  = randomPrefix()
	idCounter atomic.Uint64
)

func randomPrefix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return hex.EncodeToString(b[:]) + "-"
}

// RequestID returns the client's X-Request-Id if it is sane, else a new one.
func RequestID(r *http.Request) string {
	if v := r.Header["X-Request-Id"]; len(v) == 1 && SaneRequestID(v[0]) {
		return v[0]
	}
	// Built on the stack: one allocation, where prefix + FormatUint made two.
	var buf [64]byte
	return string(AppendNewID(buf[:0]))
}

// SaneRequestID accepts the IDs that common proxies and tracers generate and
// nothing that could break a log line or a header.
func SaneRequestID[T string | []byte](id T) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '+', c == '/', c == '=':
		default:
			return false
		}
	}
	return true
}

// ClientIP is the peer address of the socket, the only address srp trusts.
func ClientIP(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return ""
	}
	if ap.Addr().Is4() {
		// netip accepts only the canonical dotted form, so the text before
		// the port is the answer already: no new string per request.
		return remoteAddr[:strings.LastIndexByte(remoteAddr, ':')]
	}
	return ap.Addr().Unmap().String()
}

// AppendNewID appends a new request ID to b.
func AppendNewID(b []byte) []byte {
	return strconv.AppendUint(append(b, idPrefix...), idCounter.Add(1), 16)
}
