package h2

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"srp/platform"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var (
	errClosed     = errors.New("h2: connection closed")
	errStreamGone = errors.New("h2: stream reset")
)

// conn is one client connection. Its reader goroutine (serve) reads and
// answers frames; each stream's handler writes its response on its own
// goroutine, and whichever goroutine finds the queue unflushed writes it.
type conn struct {
	s      *Server
	nc     net.Conn
	tls    *tls.ConnectionState // nil without TLS
	remote string
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc
	raw    syscall.RawConn // the socket, to wait on without buffers; nil if out of reach
	br     *bufio.Reader   // nil while waiting without buffers
	rf     *http2.Framer   // read side: the reader goroutine only
	hdec   *hpack.Decoder  // the client's header table, kept while rf is not

	mu           sync.Mutex
	cond         sync.Cond          // a window grew, the queue drained, a stream or the connection ended
	streams      map[uint32]*stream // not yet closed on both sides
	maxID        uint32             // highest stream the client opened
	lastServed   uint32             // highest stream given a handler, as GOAWAY reports it
	resets       [32]uint32         // the streams the server reset last
	nResets      int
	running      int       // handlers running
	queue        []*stream // opened while maxStreams handlers ran
	out          []byte    // frames for the socket
	spare        []byte
	flushing     bool // a goroutine is writing out
	werr         error
	wf           *http2.Framer // writes into out
	henc         *hpack.Encoder
	hbuf         []byte
	sendWindow   int64  // the client's window for the connection
	peerWindow   int32  // its SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame    uint32 // its SETTINGS_MAX_FRAME_SIZE
	recvWindow   int32  // what the client may still send on the connection
	recvOwed     int32  // read by handlers, not yet granted back
	goAway       bool   // GOAWAY sent: no new stream is served
	started      bool   // the server's SETTINGS are queued, after the client's preface
	drainOnStart bool   // shut down before that: GOAWAY right after them
	closing      bool   // closing after goAwayLinger
	closed       bool
	idle         *time.Timer
	idleAt       time.Time // when the last stream ended
	atFrame      bool      // the reader waits for a frame to start
	woken        bool      // idleFired set a read deadline to wake it
}

type outWriter struct{ c *conn }

func (w outWriter) Write(p []byte) (int, error) {
	w.c.out = append(w.c.out, p...)
	return len(p), nil
}

func newConn(s *Server, nc net.Conn) *conn {
	base := s.BaseContext
	if base == nil {
		base = context.Background()
	}
	c := &conn{s: s, nc: nc, remote: nc.RemoteAddr().String(),
		streams: map[uint32]*stream{}, sendWindow: initialWindow, peerWindow: initialWindow,
		peerFrame: readFrameSize, recvWindow: connWindow}
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.tls = &st
	}
	c.ctx, c.cancel = context.WithCancel(base)
	c.cond.L = &c.mu
	under := nc
	for {
		u, ok := under.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		under = u.NetConn()
	}
	if sc, ok := under.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.hdec = hpack.NewDecoder(4096, nil)
	c.newReader()
	c.wf = http2.NewFramer(outWriter{c}, nil)
	c.henc = hpack.NewEncoder(hbufWriter{c})
	return c
}

// newReader sets up the read side: a buffer, and a Framer over it that
// goes on with the client's header table.
func (c *conn) newReader() {
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(c.nc)
	c.rf = http2.NewFramer(nil, c.br)
	c.rf.SetMaxReadFrameSize(readFrameSize)
	c.rf.MaxHeaderListSize = c.s.maxHeaderList()
	c.rf.ReadMetaHeaders = c.hdec
	c.rf.SetReuseFrames()
}

var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// dropReader lets the read side's buffers go, between frames.
func (c *conn) dropReader() {
	c.br.Reset(nil)
	readers.Put(c.br)
	c.br, c.rf = nil, nil
}

// maxHeaderList is what a request head may take decoded: as net/http's
// server, MaxHeaderBytes and room for the fields' HPACK overhead.
func (s *Server) maxHeaderList() uint32 {
	n := s.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	return uint32(n + 10*32)
}

type hbufWriter struct{ c *conn }

func (w hbufWriter) Write(p []byte) (int, error) {
	w.c.hbuf = append(w.c.hbuf, p...)
	return len(p), nil
}

// serve reads frames until the connection ends.
func (c *conn) serve() {
	defer c.teardown()
	_ = c.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
		c.s.debug("http2 preface", c.remote, err)
		return
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.started = true
	_ = c.wf.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.rf.MaxHeaderListSize},
	)
	_ = c.wf.WriteWindowUpdate(0, connWindow-initialWindow)
	if c.drainOnStart {
		c.writeGoAwayLocked(http2.ErrCodeNo)
	}
	c.closeIfDoneLocked()
	c.armIdleLocked()
	c.mu.Unlock()

	first := true
	for {
		if c.br.Buffered() == 0 {
			// About to wait for the client: send what its frames asked
			// for, then wait at a frame's start.
			c.mu.Lock()
			c.flushAsync()
			c.mu.Unlock()
			if !c.waitFrame() {
				return
			}
		}
		fh, err := c.rf.ReadFrameHeader()
		var f http2.Frame
		if err == nil {
			f, err = c.rf.ReadFrameForHeader(fh)
		}
		if se := (http2.StreamError{}); errors.As(err, &se) && fh.Type == http2.FrameHeaders {
			c.mu.Lock()
			c.maxID = max(c.maxID, se.StreamID) // a HEADERS refused still opened and closed its stream
			c.mu.Unlock()
		}
		if err == nil && first {
			if _, ok := f.(*http2.SettingsFrame); !ok {
				err = http2.ConnectionError(http2.ErrCodeProtocol)
			}
			first = false
		}
		if err == nil {
			err = c.handle(f)
		}
		if err != nil && !c.failed(err) {
			return
		}
	}
}

// waitFrame waits for the client to send the start of a frame, and
// reports false if it left instead. A connection quiet for quietAfter
// lets its read buffers go meanwhile (see idleFired): most idle
// connections stay idle, and each would hold them for nothing.
func (c *conn) waitFrame() bool {
	for {
		c.mu.Lock()
		c.atFrame = true
		c.mu.Unlock()
		_, err := c.br.Peek(1)
		c.mu.Lock()
		c.atFrame = false
		woken := c.woken
		c.woken = false
		c.mu.Unlock()
		if woken {
			_ = c.nc.SetReadDeadline(time.Time{})
		}
		if err == nil {
			return true
		}
		var ne net.Error
		if !woken || !errors.As(err, &ne) || !ne.Timeout() {
			c.s.debug("http2 read", c.remote, err)
			return false
		}
		// The read that timed out returned nothing, and crypto/tls hands
		// out decrypted bytes before it reads the socket: it holds none,
		// and the bytes to come are all on the socket.
		c.dropReader()
		err = c.raw.Read(func(fd uintptr) bool { return platform.PeekFD(fd) != platform.PeekEmpty })
		c.newReader()
		if err != nil {
			return false
		}
	}
}

// failed deals with err from reading or handling a frame and reports
// whether the connection goes on.
func (c *conn) failed(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) {
		c.mu.Lock()
		c.resetLocked(se.StreamID, se.Code)
		c.mu.Unlock()
		return true
	}
	code := http2.ErrCodeProtocol
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		code = http2.ErrCode(ce)
	case errors.Is(err, http2.ErrFrameTooLarge):
		code = http2.ErrCodeFrameSize
	default: // the connection itself failed, or the client left
		c.s.debug("http2 read", c.remote, err)
		return false
	}
	c.s.debug("http2 connection error", c.remote, errors.Join(err, c.rf.ErrorDetail()))
	c.mu.Lock()
	c.writeGoAwayLocked(code)
	c.flushAsync()
	c.mu.Unlock()
	c.linger()
	return false
}

// linger reads and drops what the client sends for goAwayLinger, so it
// reads the GOAWAY before the connection closes.
func (c *conn) linger() {
	_ = c.nc.SetReadDeadline(time.Now().Add(goAwayLinger))
	_, _ = io.Copy(io.Discard, c.br)
}

func (c *conn) writeGoAwayLocked(code http2.ErrCode) {
	if c.goAway && code == http2.ErrCodeNo {
		return
	}
	c.goAway = true
	_ = c.wf.WriteGoAway(c.lastServed, code, nil)
}

// teardown ends every stream and closes the connection.
func (c *conn) teardown() {
	c.mu.Lock()
	c.closed = true
	if c.werr == nil {
		c.werr = errClosed
	}
	for _, st := range c.streams {
		st.closeLocked()
	}
	c.queue = nil
	if c.idle != nil {
		c.idle.Stop()
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.cancel()
	_ = c.nc.Close()
}

func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		_ = c.wf.WritePing(true, f.Data)
		return c.controlQueuedLocked()
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
	case *http2.GoAwayFrame:
		if f.ErrCode != http2.ErrCodeNo {
			c.s.debug("http2 client goaway", c.remote, errors.New(f.ErrCode.String()))
		}
		c.mu.Lock()
		c.writeGoAwayLocked(http2.ErrCodeNo)
		c.closeIfDoneLocked()
		c.mu.Unlock()
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // clients never push
	}
	return nil // unknown frames and extensions are ignored
}

// controlQueuedLocked bounds what the reader queues for a client that
// does not read its answers.
func (c *conn) controlQueuedLocked() error {
	if len(c.out) > maxControlOut {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil // srp never changes its settings after the first
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		if s.ID == http2.SettingNoRFC7540Priorities && s.Val > 1 {
			return http2.ConnectionError(http2.ErrCodeProtocol) // RFC 9218, 2.1
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(c.peerWindow)
			c.peerWindow = int32(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerFrame = s.Val
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	_ = c.wf.WriteSettingsAck()
	c.cond.Broadcast()
	return c.controlQueuedLocked()
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.sendWindow += inc
		if c.sendWindow > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else {
		st := c.streams[f.StreamID]
		if st == nil {
			if f.StreamID > c.maxID {
				return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
			}
			return nil
		}
		st.sendWindow += inc
		if st.sendWindow > maxWindow {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
		}
	}
	c.cond.Broadcast()
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID > c.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
	}
	if st := c.streams[f.StreamID]; st != nil {
		st.closeLocked()
	}
	return nil
}

// resetLocked closes stream id, if open, and tells the client.
func (c *conn) resetLocked(id uint32, code http2.ErrCode) {
	if st := c.streams[id]; st != nil {
		st.closeLocked()
	}
	_ = c.wf.WriteRSTStream(id, code)
	c.resets[c.nResets%len(c.resets)] = id
	c.nResets++
}

// resetByUs reports whether the server reset stream id lately. What the
// client sent on it before it saw the reset is dropped (RFC 9113, 5.1),
// not taken for an error that would end the connection.
func (c *conn) resetByUs(id uint32) bool {
	return slices.Contains(c.resets[:], id)
}

// armIdleLocked starts the idle timer once no stream is left, and lets
// the buffers go.
func (c *conn) armIdleLocked() {
	if len(c.streams) > 0 || c.running > 0 || c.closed {
		return
	}
	c.dropBuffersLocked()
	c.idleAt = time.Now()
	d := quietAfter
	if c.s.IdleTimeout > 0 {
		d = min(d, c.s.IdleTimeout)
	}
	if c.idle == nil {
		c.idle = time.AfterFunc(d, c.idleFired)
		return
	}
	c.idle.Reset(d)
}

// idleFired first wakes the reader of a quiet connection to let its
// buffers go, then ends the connection at the idle limit.
func (c *conn) idleFired() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.streams) > 0 || c.running > 0 || c.closed {
		return
	}
	if idle := time.Since(c.idleAt); c.s.IdleTimeout <= 0 || idle < c.s.IdleTimeout {
		if c.atFrame && c.raw != nil && !c.woken {
			// A deadline only here: the reader waits at a frame's start.
			c.woken = true
			_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		}
		if c.s.IdleTimeout > 0 {
			c.idle.Reset(c.s.IdleTimeout - idle)
		}
		return
	}
	c.writeGoAwayLocked(http2.ErrCodeNo)
	c.closeIfDoneLocked()
}

// goAwayGraceful refuses new streams and closes the connection once the
// streams under way are done.
func (c *conn) goAwayGraceful() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		// The server's first frame must be its SETTINGS: the GOAWAY
		// follows them once the client's preface is in.
		c.drainOnStart = true
		return
	}
	c.writeGoAwayLocked(http2.ErrCodeNo)
	c.closeIfDoneLocked()
}

// closeIfDoneLocked closes a connection that sent GOAWAY once its last
// stream is done, a moment after the GOAWAY is flushed.
func (c *conn) closeIfDoneLocked() {
	if !c.goAway || c.closing || len(c.streams) > 0 || c.running > 0 {
		c.flushAsync()
		return
	}
	c.closing = true
	c.flushAsync()
	time.AfterFunc(goAwayLinger, func() { _ = c.nc.Close() })
}
