package h2_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawConn is a client speaking frames, for what the x/net client hides
// or will not do: exact frames, small or no flow-control window, frames
// the server must tolerate. A goroutine reads and records every frame.
type rawConn struct {
	t      *testing.T
	nc     net.Conn
	fr     *http2.Framer
	grant  bool  // give the window back as DATA arrives, as a client that reads
	window int64 // our SETTINGS_INITIAL_WINDOW_SIZE; guarded by mu

	wmu  sync.Mutex // writes, from the test and the reader
	enc  *hpack.Encoder
	hbuf bytes.Buffer

	mu       sync.Mutex
	changed  chan struct{} // closed at each frame
	frames   []http2.FrameType
	streams  map[uint32]*rawStream
	goAways  []goAway
	pings    int
	connWin  int64  // what the server may still send on the connection
	connOwed int64  // received, not yet given back
	overrun  string // a DATA frame past a window we gave
	err      error  // why reading ended
	endedAt  time.Time
	done     chan struct{}
}

type rawStream struct {
	info       []int         // 1xx statuses
	infoHeader []http.Header // and their fields
	status     int
	header     http.Header
	headEnded  bool // the final HEADERS carried END_STREAM
	body       []byte
	dataFrames int
	maxData    int
	trailer    http.Header
	ended      bool // END_STREAM
	endedAt    time.Time
	reset      bool
	code       http2.ErrCode
	window     int64 // what the server may still send
	owed       int64 // received, not yet given back
}

type goAway struct {
	code http2.ErrCode
	last uint32
	at   time.Time
}

func (g goAway) String() string { return fmt.Sprintf("GOAWAY %v, last stream %d", g.code, g.last) }

// dialRaw connects and sends the preface with settings.
func dialRaw(t *testing.T, addr string, grant bool, settings ...http2.Setting) *rawConn {
	t.Helper()
	c := connectRaw(t, addr, grant)
	c.preface(settings...)
	return c
}

// connectRaw connects without sending the preface.
func connectRaw(t *testing.T, addr string, grant bool) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawConn{t: t, nc: nc, grant: grant, window: 65535, connWin: 65535,
		changed: make(chan struct{}), streams: map[uint32]*rawStream{}, done: make(chan struct{})}
	c.fr = http2.NewFramer(nc, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	go c.readLoop()
	t.Cleanup(func() {
		_ = nc.Close()
		<-c.done
	})
	return c
}

func (c *rawConn) preface(settings ...http2.Setting) {
	c.t.Helper()
	c.mu.Lock()
	for _, s := range settings {
		if s.ID == http2.SettingInitialWindowSize {
			c.window = int64(s.Val)
		}
	}
	c.mu.Unlock()
	err := c.write(func() error {
		if _, err := c.nc.Write([]byte(http2.ClientPreface)); err != nil {
			return err
		}
		return c.fr.WriteSettings(settings...)
	})
	if err != nil {
		c.t.Fatalf("preface: %v", err)
	}
}

func (c *rawConn) write(f func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return f()
}

func (c *rawConn) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		c.mu.Lock()
		if err != nil {
			c.err, c.endedAt = err, time.Now()
			c.notifyLocked()
			c.mu.Unlock()
			return
		}
		c.frames = append(c.frames, f.Header().Type)
		var ack bool
		var grant, grantStream, streamGrant uint32
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			c.onHeaders(f)
		case *http2.DataFrame:
			st := c.streamLocked(f.StreamID)
			n := int64(f.Length)
			c.connWin -= n
			st.window -= n
			if (c.connWin < 0 || st.window < 0) && c.overrun == "" {
				c.overrun = fmt.Sprintf("DATA of %d on stream %d left windows %d (connection), %d (stream)", n, f.StreamID, c.connWin, st.window)
			}
			st.body = append(st.body, f.Data()...)
			st.dataFrames++
			st.maxData = max(st.maxData, len(f.Data()))
			if f.StreamEnded() {
				st.ended, st.endedAt = true, time.Now()
			}
			// Window goes back only once used up (the stream's) or a
			// frame's worth (the connection's): were it given back at
			// each frame, a server overstepping it would not show.
			if c.grant && n > 0 {
				c.connOwed += n
				if c.connOwed >= 16<<10 {
					grant, c.connWin, c.connOwed = uint32(c.connOwed), c.connWin+c.connOwed, 0
				}
				st.owed += n
				if !st.ended && st.window <= 0 {
					grantStream, streamGrant = f.StreamID, uint32(st.owed)
					st.window, st.owed = st.window+st.owed, 0
				}
			}
		case *http2.RSTStreamFrame:
			st := c.streamLocked(f.StreamID)
			st.reset, st.code, st.endedAt = true, f.ErrCode, time.Now()
		case *http2.GoAwayFrame:
			c.goAways = append(c.goAways, goAway{f.ErrCode, f.LastStreamID, time.Now()})
		case *http2.PingFrame:
			if f.IsAck() {
				c.pings++
			}
		case *http2.SettingsFrame:
			ack = !f.IsAck()
		}
		c.notifyLocked()
		c.mu.Unlock()
		if ack || grant > 0 || grantStream != 0 {
			_ = c.write(func() error {
				if ack {
					_ = c.fr.WriteSettingsAck()
				}
				if grant > 0 {
					_ = c.fr.WriteWindowUpdate(0, grant)
				}
				if grantStream != 0 {
					_ = c.fr.WriteWindowUpdate(grantStream, streamGrant)
				}
				return nil
			})
		}
	}
}

func (c *rawConn) onHeaders(f *http2.MetaHeadersFrame) {
	st := c.streamLocked(f.StreamID)
	h := http.Header{}
	for _, hf := range f.RegularFields() {
		k := http.CanonicalHeaderKey(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	switch code, _ := strconv.Atoi(f.PseudoValue("status")); {
	case st.status != 0:
		st.trailer = h
	case code >= 100 && code < 200:
		st.info = append(st.info, code)
		st.infoHeader = append(st.infoHeader, h)
	default:
		st.status, st.header, st.headEnded = code, h, f.StreamEnded()
	}
	if f.StreamEnded() {
		st.ended, st.endedAt = true, time.Now()
	}
}

func (c *rawConn) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// streamLocked is stream id's record, made on first use.
func (c *rawConn) streamLocked(id uint32) *rawStream {
	st := c.streams[id]
	if st == nil {
		st = &rawStream{window: c.window}
		c.streams[id] = st
	}
	return st
}

// await waits up to d for cond, evaluated with c.mu held; it gives up
// early once the connection has ended and cond is still false.
func (c *rawConn) await(d time.Duration, cond func() bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ok, ended, ch := cond(), c.err != nil, c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		if ended {
			return false
		}
		select {
		case <-ch:
		case <-timer.C:
			return false
		}
	}
}

func (c *rawConn) must(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	if !c.await(d, cond) {
		c.mu.Lock()
		ended := c.err != nil
		c.mu.Unlock()
		if ended {
			c.t.Fatalf("connection ended before the %s; connection: %s", what, c.describe())
		}
		c.t.Fatalf("no %s within %v; connection: %s", what, d, c.describe())
	}
}

func (c *rawConn) describe() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d frames read", len(c.frames))
	for _, g := range c.goAways {
		fmt.Fprintf(&b, ", %v", g)
	}
	if c.err != nil {
		fmt.Fprintf(&b, ", ended: %v", c.err)
	}
	return b.String()
}

// result is a copy of what stream id has received so far.
func (c *rawConn) result(id uint32) rawStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := *c.streamLocked(id)
	st.body = bytes.Clone(st.body)
	st.info = append([]int(nil), st.info...)
	return st
}

// response waits for stream id to end, by END_STREAM or RST_STREAM.
func (c *rawConn) response(id uint32) rawStream {
	c.t.Helper()
	c.must(5*time.Second, fmt.Sprintf("end of stream %d", id), func() bool {
		st := c.streamLocked(id)
		return st.ended || st.reset
	})
	return c.result(id)
}

func (c *rawConn) goAwaysSeen() []goAway {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]goAway(nil), c.goAways...)
}

// ping returns once the server has answered a PING, so has dealt with
// every frame sent before it.
func (c *rawConn) ping() {
	c.t.Helper()
	if !c.tryPing() {
		c.t.Fatalf("no PING answer within 5s; connection: %s", c.describe())
	}
}

// tryPing is ping for a test that goes on without the answer.
func (c *rawConn) tryPing() bool {
	c.mu.Lock()
	n := c.pings
	c.mu.Unlock()
	if err := c.write(func() error { return c.fr.WritePing(false, [8]byte{'b', 'a', 'r', 'r', 'i', 'e', 'r'}) }); err != nil {
		return false
	}
	return c.await(5*time.Second, func() bool { return c.pings > n })
}

func (c *rawConn) headers(id uint32, end bool, fields ...string) {
	c.t.Helper()
	c.mu.Lock()
	c.streamLocked(id)
	c.mu.Unlock()
	err := c.write(func() error {
		c.hbuf.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			_ = c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: end, EndHeaders: true})
	})
	if err != nil {
		c.t.Errorf("HEADERS on stream %d: %v", id, err)
	}
}

// request opens stream id; extra are more fields, name then value.
func (c *rawConn) request(id uint32, method, path string, end bool, extra ...string) {
	c.t.Helper()
	c.headers(id, end, append([]string{":method", method, ":scheme", "http", ":authority", "example.test", ":path", path}, extra...)...)
}

func (c *rawConn) data(id uint32, end bool, p []byte) {
	c.t.Helper()
	if err := c.write(func() error { return c.fr.WriteData(id, end, p) }); err != nil {
		c.t.Errorf("DATA on stream %d: %v", id, err)
	}
}

func (c *rawConn) rst(id uint32, code http2.ErrCode) {
	c.t.Helper()
	if err := c.write(func() error { return c.fr.WriteRSTStream(id, code) }); err != nil {
		c.t.Errorf("RST_STREAM on stream %d: %v", id, err)
	}
}
