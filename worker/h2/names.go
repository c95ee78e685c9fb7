package h2

import (
	"net/http"
	"strings"
)

// Header names in both spellings, so the common ones cost no allocation
// on their way in (lower case on the wire) or out.
var (
	canonicalOf = map[string]string{}
	lowerOf     = map[string]string{}
)

func init() {
	for _, k := range []string{"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language",
		"Accept-Ranges", "Age", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
		"Access-Control-Max-Age", "Access-Control-Request-Headers", "Access-Control-Request-Method",
		"Allow", "Authorization", "Cache-Control", "Content-Disposition", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Location", "Content-Range", "Content-Type",
		"Cookie", "Date", "Etag", "Expect", "Expires", "From", "Host", "If-Match", "If-Modified-Since",
		"If-None-Match", "If-Range", "If-Unmodified-Since", "Last-Modified", "Link", "Location",
		"Max-Forwards", "Origin", "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Range",
		"Referer", "Refresh", "Retry-After", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
		"Sec-Fetch-User", "Server", "Set-Cookie", "Strict-Transport-Security", "Te", "Trailer",
		"Upgrade-Insecure-Requests", "User-Agent", "Vary", "Via", "Www-Authenticate",
		"X-Content-Type-Options", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Frame-Options", "X-Request-Id", "X-Xss-Protection"} {
		l := strings.ToLower(k)
		canonicalOf[l], lowerOf[k] = k, l
	}
}

// canonical is a lower-case field name from the wire as net/http spells it.
func canonical(name string) string {
	if k, ok := canonicalOf[name]; ok {
		return k
	}
	return http.CanonicalHeaderKey(name)
}

// lower is a field name as HTTP/2 sends it.
func lower(name string) string {
	if l, ok := lowerOf[name]; ok {
		return l
	}
	return strings.ToLower(name)
}
