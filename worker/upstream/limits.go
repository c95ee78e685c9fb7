package upstream

import "time"

// Limits both paths apply to backends; net/http's Transport, the direct
// transport and the fast path's kept connections are configured from
// these alone (the fast path keeps no more than MaxIdlePerBackend).
const (
	MaxTries          = 3                // backends one request may be offered to
	DialTimeout       = 5 * time.Second  // to connect to a backend
	KeepAlive         = 30 * time.Second // TCP keep-alive probes on backend connections
	IdleTimeout       = 90 * time.Second // a kept backend connection unused this long is closed
	MaxIdlePerBackend = 256              // kept connections per backend address
	MaxIdle           = 1024             // kept connections over all backends, per transport
)
