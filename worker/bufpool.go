package worker

import "sync"

// bufferPool recycles the buffers ReverseProxy copies response bodies
// through. Without it every proxied request allocates 32 KiB, which is most
// of the worker's allocation and so most of its garbage-collection work.
// It stores array pointers so that neither Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

// copyBuffers is shared by every service of every worker in the process:
// a buffer holds no state between requests.
var copyBuffers = &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize && cap(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}
