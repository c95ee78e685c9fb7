package fleet

import "time"

const (
	// storeTimeout bounds every etcd call, so a handshake that needs the
	// store fails within it when etcd is down.
	storeTimeout = 2 * time.Second
	// lockTTL is the lease of a node's locks and challenge answers: how
	// long the fleet waits for a node that died mid-order.
	lockTTL = 10 * time.Second
	// orderTimeout is autocert's own bound on getting a certificate.
	orderTimeout = 5 * time.Minute
	// orderRetry and storeRetry are how long a failure is answered from
	// memory before a handshake may try again: an order refused by the CA
	// is not placed again at once, a store fault is retried sooner.
	orderRetry = time.Minute
	storeRetry = 10 * time.Second
	// tokenBudget is how long a challenge answer's write is retried
	// before its order stops.
	tokenBudget = 10 * time.Second
)
