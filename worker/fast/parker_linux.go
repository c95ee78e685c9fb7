package fast

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker holds idle HTTP/1.1 connections without a goroutine each: a
// goroutine blocked on a socket keeps its stack, which is most of what an
// idle connection costs. Their sockets wait in an epoll set of srp's own,
// beside the runtime's, and one that turns readable (or is closed by the
// client) goes back to a serving goroutine.
type parker struct {
	s    *Server
	epfd int
	// The set itself waits in the runtime's poller, as a socket does: a
	// goroutine blocked in epoll_wait would hold its thread and, with one
	// CPU, stall every other goroutine until the runtime took the CPU back.
	file *os.File
	rc   syscall.RawConn

	mu     sync.Mutex
	conns  map[int32]*conn // parked, by socket
	closed bool
}

func newParker(s *Server) *parker {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err == nil {
		err = syscall.SetNonblock(epfd, true)
	}
	if err != nil {
		s.log.Warn("idle connections keep their goroutines: epoll unavailable", "err", err)
		return nil
	}
	p := &parker{s: s, epfd: epfd, file: os.NewFile(uintptr(epfd), "idle connections"), conns: map[int32]*conn{}}
	if p.rc, err = p.file.SyscallConn(); err != nil {
		s.log.Warn("idle connections keep their goroutines: epoll unavailable", "err", err)
		_ = p.file.Close()
		return nil
	}
	go p.run()
	return p
}

// park takes f, idle with nothing held, and reports whether it did; the
// caller gives f up if so.
func (p *parker) park(f *conn) bool {
	if p == nil || f.raw == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	var fd int32 = -1
	var err error
	if cerr := f.raw.Control(func(u uintptr) {
		fd = int32(u)
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: fd}
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(u), &ev)
	}); cerr != nil || err != nil {
		return false
	}
	p.conns[fd] = f
	return true
}

// take removes the connection parked on fd, if it still is; whoever takes
// it owns it.
func (p *parker) take(fd int32) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.conns[fd]
	if f == nil {
		return nil
	}
	delete(p.conns, fd)
	// Before the socket can close and its number be reused. Once closed,
	// the set is about to go, and closing the socket leaves it anyway.
	if !p.closed {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	}
	return f
}

// run gives readable connections back to serving goroutines and ends
// those idle past their limit, checking once a second, until the server
// closes.
func (p *parker) run() {
	events := make([]syscall.EpollEvent, 128)
	for {
		_ = p.file.SetReadDeadline(time.Now().Add(time.Second))
		var n int
		var werr error
		err := p.rc.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			return n > 0 || werr != nil && werr != syscall.EINTR
		})
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
		case err != nil || werr != nil:
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if !closed { // closing the set ends the wait with an error too
				p.s.log.Error("idle connections: epoll failed", "err", errors.Join(err, werr))
				p.closeAll()
			}
			return
		}
		for _, ev := range events[:n] {
			if f := p.take(ev.Fd); f != nil {
				p.s.dispatch(task{f: f})
			}
		}
		p.expire(time.Now())
	}
}

// expire ends the parked connections idle for longer than the limit.
func (p *parker) expire(now time.Time) {
	var ended []int32
	p.mu.Lock()
	for fd, f := range p.conns {
		if !now.Before(f.lastWrite.Add(p.s.idleTimeout)) {
			ended = append(ended, fd)
		}
	}
	p.mu.Unlock()
	for _, fd := range ended {
		if f := p.take(fd); f != nil {
			p.end(f)
		}
	}
}

// end closes f off the parker's goroutine when closing writes: a TLS
// close_notify may wait on a client that reads nothing, and every other
// parked connection waits on this goroutine.
func (p *parker) end(f *conn) {
	if f.tls != nil {
		go f.end(false)
		return
	}
	f.end(false)
}

// closeAll ends every parked connection and parks no more: the drain.
func (p *parker) closeAll() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if !p.closed {
		_ = p.file.Close() // ends run; the sockets leave the set as they close
	}
	p.closed = true
	fds := make([]int32, 0, len(p.conns))
	for fd := range p.conns {
		fds = append(fds, fd)
	}
	p.mu.Unlock()
	for _, fd := range fds {
		if f := p.take(fd); f != nil {
			p.end(f)
		}
	}
}
