package worker

import "time"

// The worker's own limits and timeouts. The guard, the fast path, the
// grammar and the backend rules keep theirs in their packages' limits.go.
const (
	defaultTimeout = 30 * time.Second // Options.Timeout when unset
	maxGrace       = 5 * time.Second  // Options.Grace when unset is min(Timeout, maxGrace)

	// readHeaderTimeout bounds a request head, and the TLS handshake too
	// (see certGetter for the exception while a certificate is issued).
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 75 * time.Second // a keep-alive client connection between requests

	// abortGrace is how long handlers cancelled at the drain deadline get
	// to end their responses before every connection is cut.
	abortGrace = time.Second

	// sweepInterval: the fast path's kept backend connections are checked
	// this often for ones their backend closed or that idled too long.
	sweepInterval = 15 * time.Second

	acmeHTTPTimeout = 30 * time.Second // one request to the ACME server
	copyBufferSize  = 32 << 10         // ReverseProxy's own choice for copying a response body
)
