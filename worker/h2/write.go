package h2

import (
	"crypto/tls"
	"encoding/binary"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// flushLocked writes the queue to the socket on the calling goroutine,
// unless another goroutine is already at it: that one writes what is
// queued meanwhile too. The lock is released during each write, so other
// streams go on queueing, and their frames share the next TLS record.
func (c *conn) flushLocked() {
	if c.flushing || len(c.out) == 0 {
		return
	}
	c.flushing = true
	c.writeOutLocked()
}

// flushAsync is flushLocked for the reader, which must never wait for a
// client that does not read: another goroutine writes.
func (c *conn) flushAsync() {
	if c.flushing || len(c.out) == 0 || c.werr != nil {
		return
	}
	c.flushing = true
	go func() {
		c.mu.Lock()
		c.writeOutLocked()
		c.mu.Unlock()
	}()
}

func (c *conn) writeOutLocked() {
	for len(c.out) > 0 && c.werr == nil {
		buf := c.out
		c.out = c.spare[:0]
		c.mu.Unlock()
		// The guard below TLS bounds how long this may stall.
		_, err := c.nc.Write(buf)
		c.mu.Lock()
		c.spare = buf[:0]
		if err != nil && c.werr == nil {
			c.werr = err
			c.cut() // the reader ends, and with it every stream
		}
	}
	if c.werr != nil {
		c.out = c.out[:0]
	}
	if cap(c.spare) > 4*maxOut {
		c.spare = nil // grown under a burst: not kept for the connection's life
	}
	c.flushing = false
	if len(c.streams) == 0 && c.running == 0 {
		c.dropBuffersLocked()
	}
	c.cond.Broadcast()
}

// dropBuffersLocked lets an idle connection's write buffers go.
func (c *conn) dropBuffersLocked() {
	if !c.flushing && len(c.out) == 0 {
		c.out, c.spare, c.hbuf = nil, nil, nil
	}
}

// cut closes the connection below TLS: a close_notify would wait for the
// client that stopped reading, with the lock held.
func (c *conn) cut() {
	if tc, ok := c.nc.(*tls.Conn); ok {
		_ = tc.NetConn().Close()
		return
	}
	_ = c.nc.Close()
}

// writeHeadersLocked queues a header block for st, split into HEADERS
// and CONTINUATION frames as the client's frame size requires. Encoding
// and queueing happen together: the HPACK table depends on the order.
func (c *conn) writeHeadersLocked(id uint32, fields func(enc *hpack.Encoder), end bool) {
	c.hbuf = c.hbuf[:0]
	fields(c.henc)
	block := c.hbuf
	max := int(c.peerFrame)
	first := true
	for first || len(block) > 0 {
		frag := block
		if len(frag) > max {
			frag = frag[:max]
		}
		block = block[len(frag):]
		if first {
			_ = c.wf.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag,
				EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			_ = c.wf.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}

// writeDataLocked queues p as DATA frames on st as flow control allows,
// waiting for window and for the queue to drain. It returns how much was
// queued; an error means the stream or the connection ended first.
func (c *conn) writeDataLocked(st *stream, p []byte, end bool) (int, error) {
	done := 0
	for {
		if st.closed {
			return done, errStreamGone
		}
		if c.werr != nil {
			return done, c.werr
		}
		if len(p) == 0 && !end {
			return done, nil
		}
		if len(c.out) >= maxOut {
			if !c.flushing {
				c.flushLocked()
				continue
			}
			if !c.waitLocked(st) {
				return done, errStreamGone
			}
			continue
		}
		n := min(int64(len(p)), st.sendWindow, c.sendWindow, int64(c.peerFrame))
		if n <= 0 && len(p) > 0 {
			if !c.waitLocked(st) {
				return done, errStreamGone
			}
			continue
		}
		last := end && int(n) == len(p)
		c.appendData(st.id, p[:n], last)
		st.sendWindow -= n
		c.sendWindow -= n
		done += int(n)
		p = p[n:]
		if last {
			st.localDone = true
			return done, nil
		}
	}
}

// appendData queues one DATA frame; the Framer would copy p twice.
func (c *conn) appendData(id uint32, p []byte, end bool) {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
	h[3] = byte(http2.FrameData)
	if end {
		h[4] = byte(http2.FlagDataEndStream)
	}
	binary.BigEndian.PutUint32(h[5:], id)
	c.out = append(append(c.out, h[:]...), p...)
}

// waitLocked waits for st's writer to be able to go on. A stream whose
// client grants no window, or whose connection does not drain, is reset
// after the server's WriteStall, so it cannot hold its handler and a
// backend connection for ever.
func (c *conn) waitLocked(st *stream) bool {
	if len(c.out) > 0 && !c.flushing {
		c.flushLocked() // what is queued may be what the client waits for to grant more
		return true
	}
	if c.s.WriteStall > 0 {
		if st.stallAt.IsZero() {
			st.stallAt = time.Now().Add(c.s.WriteStall)
			st.stallTimer = time.AfterFunc(c.s.WriteStall, func() {
				c.mu.Lock()
				c.cond.Broadcast()
				c.mu.Unlock()
			})
		} else if !time.Now().Before(st.stallAt) {
			c.resetLocked(st.id, http2.ErrCodeCancel)
			c.flushAsync()
			return false
		}
	}
	c.cond.Wait()
	return true
}

// progressLocked ends the stall bound of a write that went through.
func (st *stream) progressLocked() {
	if st.stallTimer != nil {
		st.stallTimer.Stop()
		st.stallTimer = nil
	}
	st.stallAt = time.Time{}
}
