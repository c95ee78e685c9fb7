// Package observe is the record of a finished request that both request
// paths, net/http's and the fast path's, fill in the same way, and the
// interface every consumer of it implements (metrics, the access log). A
// consumer sees each request once, on the goroutine that served it.
package observe

import "time"

// Request describes one answered request. Its strings are valid only
// during the call that receives it: the fast path lends views of its
// buffers, so a consumer that keeps one must copy it.
type Request struct {
	Start     time.Time     // when the request head was read
	Duration  time.Duration // from Start to the response head written
	Service   string        // the configured service that answered; "" for none (404, the API)
	Host      string        // as the client sent it
	Method    string
	URI       string // the request target as the client sent it
	Proto     string // "HTTP/1.1", "HTTP/2.0", ...
	RemoteIP  string
	Referer   string // the Referer header, for the Combined Log Format
	UserAgent string // the User-Agent header, likewise
	RequestID string // "" where srp sets none (redirects, 404s, the API)
	Backend   string // the backend of the last attempt; "" if none was tried
	Status    int    // sent to the client; 499 when the client left first
	Bytes     int64  // response body bytes sent
	Retries   int    // attempts after the first
	TLS       bool
}

// Error reasons of a failed backend attempt.
const (
	Refused  = "refused"  // the dial failed: the backend saw nothing
	Timeout  = "timeout"  // no answer in time
	Reset    = "reset"    // the connection broke
	Protocol = "protocol" // an answer srp refuses to pass on
)

// Observer consumes what the request paths report.
type Observer interface {
	// Request is called once per answered request.
	Request(r *Request)
	// Attempt is called once per backend attempt: retry says it was not
	// the request's first, status is the backend's answer, or 0 with
	// reason set when the attempt failed.
	Attempt(service, backend string, retry bool, status int, reason string)
}

// Nop observes nothing.
type Nop struct{}

func (Nop) Request(*Request)                          {}
func (Nop) Attempt(string, string, bool, int, string) {}

// Tee passes everything to each observer in turn.
type Tee []Observer

func (t Tee) Request(r *Request) {
	for _, o := range t {
		o.Request(r)
	}
}

func (t Tee) Attempt(service, backend string, retry bool, status int, reason string) {
	for _, o := range t {
		o.Attempt(service, backend, retry, status, reason)
	}
}
