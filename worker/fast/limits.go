package fast

import "time"

// The fast path's sizes and timeouts. Backend dial and keep-alive settings
// are shared with net/http's Transport and live in upstream.
const (
	readBufSize = 4 << 10  // a client connection's read buffer
	maxHeld     = 16 << 10 // the largest head plus body the fast path holds
	maxKeptOut  = 8 << 10  // a write buffer grown past this is dropped after its request

	// backendBufSize holds a response head and a 16 KiB body, a common
	// size that then takes one read and one write.
	backendBufSize = 20 << 10

	// maxResponseHead is the response head limit of all three backend
	// transports.
	maxResponseHead = 1 << 20

	// clientPoll is how often a wait for a backend looks whether its
	// client is still there; net/http's server notices at once, with a
	// goroutine per request reading in the background.
	clientPoll = time.Second

	// maxAcceptDelay caps the back-off after temporary accept errors, as
	// http.Server's own accept loop does.
	maxAcceptDelay = time.Second
)

// workerIdle is how long a serving goroutine waits for a next connection
// before it ends: long enough to span the gaps of a steady load, short
// enough that a burst's goroutines and stacks are soon given back.
const workerIdle = 5 * time.Second
