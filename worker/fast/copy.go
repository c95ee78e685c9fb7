package fast

import (
	"io"
	"net"
	"strconv"
	"time"

	"srp/worker/h1"
	"srp/worker/upstream"
)

// copyResponse sends the response head and its body to the client. keep
// says the client connection stays open, backendKeep the backend's.
func (f *conn) copyResponse(bc *backendConn, r *request, resp *h1.Response) (keep, backendKeep bool, err error) {
	keep = !r.close && !f.s.router.Draining()
	f.out = f.appendResponseHead(f.out[:0], resp, !keep)
	f.bodyFrom = f.wrote + int64(len(f.out))
	body := bc.buf[bc.off:]
	switch {
	case resp.NoBody:
		return keep, !resp.Close && len(body) == 0, f.write(f.out)
	case resp.Length >= 0:
		n := resp.Length
		take := min(int64(len(body)), n)
		bc.off += int(take)
		if err := f.writeWith(body[:take]); err != nil {
			return false, false, err
		}
		for n -= take; n > 0; {
			got, err := f.readBody(bc)
			if err != nil {
				return false, false, err
			}
			take = min(int64(got), n)
			bc.off = int(take)
			if err := f.write(bc.buf[:take]); err != nil {
				return false, false, err
			}
			n -= take
		}
		return keep, !resp.Close && bc.off == len(bc.buf), nil
	case resp.Chunked:
		fr := h1.Chunked()
		k, reason := fr.Body(body)
		bc.off += k
		if err := f.writeWith(body[:k]); err != nil {
			return false, false, err
		}
		for fr.InBody() {
			if reason != "" {
				return false, false, errResponseBody
			}
			if _, err := f.readBody(bc); err != nil {
				return false, false, f.endStream(resp, fr.AtChunkStart(), err)
			}
			k, reason = fr.Body(bc.buf)
			bc.off = k
			if err := f.write(bc.buf[:k]); err != nil {
				return false, false, err
			}
		}
		return keep, !resp.Close && bc.off == len(bc.buf), nil
	}
	// No length and not chunked: the body ends when the backend closes.
	// It goes on to the client chunked, so the client connection survives.
	if len(body) > 0 {
		f.out = appendChunk(f.out, body)
	}
	if err := f.write(f.out); err != nil {
		return false, false, err
	}
	for {
		_, err := f.readBody(bc)
		if err == io.EOF {
			return keep, false, f.write([]byte("0\r\n\r\n"))
		}
		if err != nil {
			return false, false, f.endStream(resp, true, err)
		}
		f.out = appendChunk(f.out[:0], bc.buf)
		if err := f.write(f.out); err != nil {
			return false, false, err
		}
	}
}

// endStream ends an event stream that the drain deadline cut between two
// chunks with the last chunk, so its client reconnects instead of seeing
// an error; any other body stays cut, never mistaken for a whole one.
func (f *conn) endStream(resp *h1.Response, boundary bool, err error) error {
	if f.aborted.Load() && resp.SSE && boundary {
		_ = f.write([]byte("0\r\n\r\n"))
		return nil
	}
	return err
}

func appendChunk(b, data []byte) []byte {
	b = strconv.AppendUint(b, uint64(len(data)), 16)
	b = append(b, "\r\n"...)
	b = append(b, data...)
	return append(b, "\r\n"...)
}

// readBody reads the next bytes of a response body into bc.buf, seeing
// every clientPoll whether the client is still there.
func (f *conn) readBody(bc *backendConn) (int, error) {
	bc.buf, bc.off = bc.buf[:0], 0
	for {
		n, err := bc.Read(bc.buf[:cap(bc.buf)])
		if n > 0 {
			bc.buf = bc.buf[:n]
			return n, nil
		}
		if !upstream.IsTimeout(err) || f.aborted.Load() {
			return 0, err
		}
		if f.clientGone() {
			return 0, upstream.ErrClientGone
		}
		bc.setReadDeadline(time.Now().Add(clientPoll))
	}
}

// writeWith writes f.out and body with one system call: small bodies are
// copied behind the head, larger ones go out with writev.
func (f *conn) writeWith(body []byte) error {
	if len(body) <= 4096 || f.tls != nil {
		f.out = append(f.out, body...)
		return f.write(f.out)
	}
	f.armWrite()
	f.vec = append(net.Buffers(f.vecArr[:0]), f.out, body)
	n, err := f.vec.WriteTo(f.rw)
	f.wrote += n
	return err
}
