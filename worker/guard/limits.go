package guard

// The guard's limits.
const (
	// MaxHeaderBytes bounds a request head; the server's MaxHeaderBytes must be
	// this, since headLimit is derived from it.
	MaxHeaderBytes = 64 << 10

	// headLimit is the largest request head the guard holds back and checks.
	// net/http answers 431 before reading this much (its own limit is
	// MaxHeaderBytes plus its 4 KiB buffer, plus at most one buffer of bytes
	// left over from the previous request), so a head the guard passes on
	// unchecked because of its size is never served.
	headLimit = MaxHeaderBytes + 3*4096

	// maxHandshakes bounds the TLS handshakes in progress on one listener;
	// past it, new connections wait in the kernel's accept queue until one
	// ends (each ends within the handshake timeout).
	maxHandshakes = 4096

	// maxKeptBuf: a read buffer grown for one large head is dropped rather
	// than kept for the connection's life.
	maxKeptBuf = 16 << 10
)
