package fast

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"

	"srp/platform"
	"srp/worker/upstream"
)

// backendConn is a keep-alive connection to one backend on the fast path.
type backendConn struct {
	net.Conn
	addr string
	raw  syscall.RawConn
	buf  []byte // response bytes read; buf[off:] not consumed
	off  int
	used time.Time // when it went idle
	rdl  time.Time // the read deadline in place

	answered int // response bytes read for the request in progress
}

// backends keeps the fast path's idle backend connections, by address.
type backends struct {
	dialer net.Dialer
	idle   map[string]*idleConns // fixed at build time
}

type idleConns struct {
	mu     sync.Mutex
	conns  []*backendConn
	closed bool
}

func newBackends(addrs []string) *backends {
	b := &backends{dialer: net.Dialer{Timeout: upstream.DialTimeout, KeepAlive: upstream.KeepAlive},
		idle: make(map[string]*idleConns, len(addrs))}
	for _, a := range addrs {
		b.idle[a] = &idleConns{}
	}
	return b
}

// get returns an idle connection to addr that the backend has not closed,
// or with fresh a new one. A failed dial is a *dialError: nothing was sent.
//
// Every kept connection is peeked before reuse, even when the request
// could be sent again after a failure: bytes a backend sent after its
// answer would otherwise be read as the next request's answer, which may
// be another client's.
func (b *backends) get(ctx context.Context, addr string, fresh bool) (c *backendConn, reused bool, err error) {
	ic := b.idle[addr]
	for ic != nil && !fresh {
		ic.mu.Lock()
		n := len(ic.conns)
		if n == 0 {
			ic.mu.Unlock()
			break
		}
		c := ic.conns[n-1]
		ic.conns = ic.conns[:n-1]
		ic.mu.Unlock()
		if time.Since(c.used) < upstream.IdleTimeout && c.alive() {
			c.answered = 0
			return c, true, nil
		}
		_ = c.Close()
	}
	nc, err := b.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, &upstream.DialError{Err: err}
	}
	c = &backendConn{Conn: nc, addr: addr, buf: make([]byte, 0, backendBufSize)}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c, false, nil
}

// put keeps c for the next request to its backend.
func (b *backends) put(c *backendConn) {
	ic := b.idle[c.addr]
	if cap(c.buf) > backendBufSize {
		c.buf = make([]byte, 0, backendBufSize) // grown for one large head
	}
	c.buf, c.off, c.used = c.buf[:0], 0, time.Now()
	ic.mu.Lock()
	if ic.closed || len(ic.conns) >= upstream.MaxIdlePerBackend {
		ic.mu.Unlock()
		_ = c.Close()
		return
	}
	ic.conns = append(ic.conns, c)
	ic.mu.Unlock()
}

// sweep closes the idle connections past upstream.IdleTimeout or closed by
// their backend. get looks only at the most recently used ones, so under
// steady load the others would otherwise stay until the worker ends.
func (b *backends) sweep() {
	for _, ic := range b.idle {
		var stale []*backendConn
		ic.mu.Lock()
		kept := ic.conns[:0]
		for _, c := range ic.conns {
			if time.Since(c.used) < upstream.IdleTimeout && c.alive() {
				kept = append(kept, c)
			} else {
				stale = append(stale, c)
			}
		}
		clear(ic.conns[len(kept):])
		ic.conns = kept
		ic.mu.Unlock()
		for _, c := range stale {
			_ = c.Close()
		}
	}
}

// sweepEvery sweeps until ctx ends.
func (b *backends) sweepEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.sweep()
		}
	}
}

// closeIdle closes every idle connection and keeps no more.
func (b *backends) closeIdle() {
	for _, ic := range b.idle {
		ic.mu.Lock()
		for _, c := range ic.conns {
			_ = c.Close()
		}
		ic.conns, ic.closed = nil, true
		ic.mu.Unlock()
	}
}

func (c *backendConn) setReadDeadline(t time.Time) {
	c.rdl = t
	_ = c.SetReadDeadline(t)
}

// alive reports whether the backend kept the idle connection open and sent
// nothing on it. A peek costs one system call, where a reader goroutine per
// connection (as net/http's Transport keeps) costs a wake-up per response.
func (c *backendConn) alive() bool {
	return c.raw != nil && platform.Peek(c.raw) == platform.PeekEmpty
}
