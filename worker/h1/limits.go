package h1

// The grammar's own limits, set by what net/http accepts.
const (
	// Chunk-size lines net/http accepts stay below its 4 KiB read buffer.
	maxChunkLine = 4096

	// trailerLimit bounds the trailer of a chunked body; net/http accepts
	// no more than its 4 KiB read buffer.
	trailerLimit = 8 << 10
)
