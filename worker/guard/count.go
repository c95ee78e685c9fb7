package guard

import "sync"

// Conns counts the client connections open on a worker's listeners, on
// both request paths, so the drain knows when the last one has gone. A
// connection counts from its accept, handshake included, until it is
// closed or hijacked for a tunnel: whoever serves it, and however often it
// changes hands, one Conn holds its count.
type Conns struct {
	// Observe, if set before the first connection, is told of every
	// connection opening (+1) and closing (-1), by listener ("http" or
	// "https"), for the metrics.
	Observe func(listener string, delta int)

	mu   sync.Mutex
	n    int
	gone []chan struct{} // closed when n reaches 0
}

func (c *Conns) add(listener string, delta int) {
	if c.Observe != nil {
		c.Observe(listener, delta)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += delta
	if c.n == 0 {
		for _, ch := range c.gone {
			close(ch)
		}
		c.gone = nil
	}
}

// Gone returns a channel closed once no connection is open: at once if
// none is now.
func (c *Conns) Gone() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if c.n == 0 {
		close(ch)
	} else {
		c.gone = append(c.gone, ch)
	}
	return ch
}
