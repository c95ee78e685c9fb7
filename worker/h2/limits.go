package h2

import "time"

// Limits, most of them net/http's HTTP/2 server's own.
const (
	maxStreams     = 250            // MAX_CONCURRENT_STREAMS
	maxQueued      = 4 * maxStreams // handlers waiting for one of maxStreams; past it, ENHANCE_YOUR_CALM
	streamWindow   = 256 << 10      // what a client may send on one stream before the handler reads it
	connWindow     = 1 << 20        // and on all its streams together
	initialWindow  = 65535          // HTTP/2's, until SETTINGS say otherwise
	maxWindow      = 1<<31 - 1
	readFrameSize  = 16 << 10 // HTTP/2's default; larger frames are FRAME_SIZE_ERROR
	prefaceTimeout = 10 * time.Second
	goAwayLinger   = time.Second     // reading on after the last GOAWAY, so the client gets it rather than a reset
	quietAfter     = 5 * time.Second // with no stream, the read buffers go after this
	maxOut         = 64 << 10        // queued for the socket; a handler writing more waits for the flush
	// A client that sends PINGs or SETTINGS without reading the answers
	// fills the queue with them; past this it is cut off.
	maxControlOut = maxOut + 256<<10
)
