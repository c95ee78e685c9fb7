package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A connection quiet past quietAfter lets its buffers go, its reader
// waiting on the socket alone, and serves the client's next request as
// before: the reader's buffers come back, and the HPACK tables, which the
// client's next head refers to, were kept.
func TestQuietConnectionDropsBuffers(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.Header.Get("X-Seq"))
	})}
	defer s.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			s.ServeConn(c)
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(quietAfter + 10*time.Second))
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	ask := func(id uint32, seq string) string {
		t.Helper()
		hbuf.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/"},
			{":authority", "example.com"}, {"x-seq", seq}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		var body []byte
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("stream %d: %v", id, err)
			}
			if d, ok := f.(*http2.DataFrame); ok && d.StreamID == id {
				body = append(body, d.Data()...)
				if d.StreamEnded() {
					return string(body)
				}
			}
		}
	}
	_, _ = nc.Write([]byte(http2.ClientPreface))
	_ = fr.WriteSettings()
	if got := ask(1, "one"); got != "hello one" {
		t.Fatalf("first answer %q", got)
	}
	time.Sleep(quietAfter + time.Second)
	s.mu.Lock()
	var c *conn
	for c = range s.conns {
	}
	s.mu.Unlock()
	if c == nil {
		t.Fatal("the connection is gone")
	}
	c.mu.Lock()
	kept := cap(c.out) + cap(c.spare) + cap(c.hbuf)
	c.mu.Unlock()
	if kept != 0 {
		t.Errorf("a quiet connection keeps %d bytes of write buffers", kept)
	}
	// The same field again: the client's encoder refers to its table entry.
	if got := ask(3, "one"); got != "hello one" {
		t.Errorf("answer after the quiet spell %q", got)
	}
}
