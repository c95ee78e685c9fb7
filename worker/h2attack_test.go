package worker

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Attacks on the HTTP/2 server behind the HTTPS listener. Each is bounded
// in what it sends and in time, and each checks that the worker's memory
// stays bounded (memWatch), that a well-behaved client on other
// connections keeps getting answers (bystander), and what the server does
// to the attacker. The protections are srp's HTTP/2 server's (package
// worker/h2, set by MaxHeaderBytes, IdleTimeout and Timeout), x/net's
// Framer and HPACK decoder below it, and srp's write-stall bound in the
// guard below TLS.

// attackTime bounds how long one attack sends.
const attackTime = 5 * time.Second

// Rapid reset (CVE-2023-44487): each stream opened and reset at once costs
// the client two small frames and the server a handler and a backend
// request. The server runs at most MAX_CONCURRENT_STREAMS handlers per
// connection and queues the rest, ending the connection with
// ENHANCE_YOUR_CALM once the queue is four times that, as net/http's
// server does; resets it catches up with never reach the backend.
func TestH2RapidReset(t *testing.T) {
	be := newH2Backend(t)
	addr, roots := runH2(t, config(be.addr()), nil)
	by := startBystander(t, addr, roots)
	mem := watchMemory(t)

	a := dialH2(t, addr, roots, nil)
	a.handshake()
	seen := a.read()
	block := requestBlock("/reset")
	const pairs = 10000
	start := time.Now()
	a.conn.SetWriteDeadline(start.Add(attackTime))
	sent := 0
	for id := uint32(1); sent < pairs && time.Since(start) < attackTime && !seen.ended(); id += 2 {
		a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
		a.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		sent++
		if sent%100 == 0 && a.flush() != nil {
			break
		}
	}
	// The server answers frames in order, so the PING's ACK says it has
	// worked through every stream before it.
	a.fr.WritePing(false, [8]byte{'d', 'o', 'n', 'e'})
	a.flush()
	answered := seen.await(20*time.Second, func(s *h2Seen) bool { return s.pingAcks > 0 || s.err != nil })
	took := time.Since(start)

	mem.check(t)
	by.check(t)
	t.Logf("rapid reset: %d HEADERS+RST_STREAM pairs, worked through in %v; backend: %d requests, at most %d at once; server: %v",
		sent, took.Round(time.Millisecond), be.requests.Load(), be.peak.Load(), seen)
	code, goAway := seen.goAwayCode()
	switch {
	case goAway && code == http2.ErrCodeEnhanceYourCalm:
		// The limit on queued handlers ended the connection.
	case !answered || seen.ended():
		t.Errorf("the server neither worked through the flood nor refused it with ENHANCE_YOUR_CALM")
	case sent < pairs:
		t.Errorf("sent %d of %d pairs while the connection stayed open", sent, pairs)
	}
	// 250 is srp's MAX_CONCURRENT_STREAMS, net/http's default.
	if p := be.peak.Load(); p > 250 {
		t.Errorf("backend had %d requests at once from one connection, want at most 250", p)
	}
}

// CONTINUATION flood (CVE-2024-27316 and its kin): a header block that
// never ends, so a server that buffers it until END_HEADERS runs out of
// memory. x/net's Framer decodes as it reads and keeps nothing past the
// header list limit (derived from srp's MaxHeaderBytes, 64 KiB), so header
// bytes past it end the connection with PROTOCOL_ERROR. Fragments with no
// header bytes cost it nothing to read and are not counted; the request is
// not open yet, so the connection counts as idle, and srp's IdleTimeout
// (75 s; 2 s here) ends it with a GOAWAY. srp's request-head timeout
// (readHeaderTimeout) applies to HTTP/1.1 only.
func TestH2ContinuationFlood(t *testing.T) {
	be := newH2Backend(t)
	const idle = 2 * time.Second
	addr, roots := runH2(t, config(be.addr()), func(o *Options) { o.idleTimeout = idle })

	flood := func(t *testing.T, fragment []byte, frames int) (*h2Seen, time.Duration) {
		by := startBystander(t, addr, roots)
		mem := watchMemory(t)
		a := dialH2(t, addr, roots, nil)
		a.handshake()
		seen := a.read()
		start := time.Now()
		a.conn.SetWriteDeadline(start.Add(attackTime))
		a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: requestBlock("/continuation"), EndStream: true})
		sent := 0
		for ; sent < frames && time.Since(start) < attackTime && !seen.ended(); sent++ {
			a.fr.WriteContinuation(1, false, fragment)
			if sent%256 == 0 && a.flush() != nil {
				break
			}
		}
		a.flush()
		seen.waitEnd(3 * time.Second)
		mem.check(t)
		by.check(t)
		after := seen.endedAt.Sub(start)
		t.Logf("%d CONTINUATION frames of %d bytes; ended after %v; backend: %d requests; server: %v",
			sent, len(fragment), after.Round(time.Millisecond), be.requests.Load(), seen)
		if !seen.ended() || !seen.closedByServer() {
			t.Fatalf("the server did not close the connection")
		}
		if n := be.requests.Load(); n != 0 {
			t.Errorf("backend got %d requests, want none", n)
		}
		return seen, after
	}

	t.Run("header bytes", func(t *testing.T) {
		var buf bytes.Buffer
		hpack.NewEncoder(&buf).WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 16000), Sensitive: true})
		seen, after := flood(t, buf.Bytes(), 1000)
		if code, ok := seen.goAwayCode(); !ok || code != http2.ErrCodeProtocol {
			t.Errorf("want GOAWAY PROTOCOL_ERROR")
		}
		// The server closes a second after the GOAWAY, reading and
		// dropping what comes meanwhile, as net/http's does.
		if after > 3*time.Second {
			t.Errorf("connection ended after %v, want about 1 s", after)
		}
	})
	t.Run("empty", func(t *testing.T) {
		seen, after := flood(t, nil, 3_000_000)
		if code, ok := seen.goAwayCode(); !ok || code != http2.ErrCodeNo {
			t.Errorf("want GOAWAY NO_ERROR from the idle timeout")
		}
		if after < idle || after > idle+2*time.Second {
			t.Errorf("connection ended after %v, want the idle timeout (%v) and a second after its GOAWAY", after, idle)
		}
	})
}

// smallReceiveBuffer keeps the attacker's socket from holding much of what
// the server sends.
var smallReceiveBuffer = &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
	return setBuffer(c, syscall.SO_RCVBUF, 4096)
}}

func setBuffer(c syscall.RawConn, opt, size int) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, size) }); cerr != nil {
		return cerr
	}
	return err
}

// shrinkSendBuffer makes the worker's sockets, which inherit the
// listener's buffer sizes, hold little unsent data, so that a client that
// never reads backs the server up after a thousand small frames rather
// than the hundred thousand the kernel's autotuned buffers (up to 4 MiB)
// would take. What the server does once backed up is the same.
func shrinkSendBuffer(t testing.TB, ln net.Listener) {
	t.Helper()
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err == nil {
		err = setBuffer(raw, syscall.SO_SNDBUF, 16<<10)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// SETTINGS and PING floods from a client that never reads: each frame asks
// for an acknowledgement the server cannot deliver once its socket is
// full. The server queues the acknowledgements without waiting for the
// socket, and closes the connection once more than 256 KiB of them wait
// (about 15,000 PING ACKs); for PING the Timeout is left long so that only
// that bound can act within the test, as with srp's default 30 s. No
// GOAWAY is expected: it could not be delivered either.
func TestH2ControlFlood(t *testing.T) {
	for _, c := range []struct {
		kind    string
		timeout time.Duration
	}{{"SETTINGS", time.Second}, {"PING", 30 * time.Second}} {
		t.Run(c.kind, func(t *testing.T) {
			be := newH2Backend(t)
			addr, roots := runH2(t, config(be.addr()), func(o *Options) {
				o.Timeout = c.timeout
				shrinkSendBuffer(t, o.HTTPS)
			})
			by := startBystander(t, addr, roots)
			mem := watchMemory(t)
			a := dialH2(t, addr, roots, smallReceiveBuffer)
			const frames = 500_000
			start := time.Now()
			a.conn.SetWriteDeadline(start.Add(attackTime))
			sent := 0
			var err error
			// Past the bound the client goes on not reading, sending a
			// frame now and then: the server may have the flood in its
			// receive buffer and not be backed up yet, and the writes fail
			// once it has closed.
			for ; time.Since(start) < attackTime; sent++ {
				if sent >= frames {
					time.Sleep(50 * time.Millisecond)
				}
				if c.kind == "PING" {
					a.fr.WritePing(false, [8]byte{byte(sent >> 8), byte(sent)})
				} else {
					a.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0})
				}
				if sent%256 == 0 || sent >= frames {
					if err = a.flush(); err != nil {
						break
					}
				}
			}
			took := time.Since(start)
			seen := a.read()
			seen.waitEnd(3 * time.Second)
			mem.check(t)
			by.check(t)
			t.Logf("%s flood: %d frames in %v, last write: %v; server: %v", c.kind, sent, took.Round(time.Millisecond), err, seen)
			// The writes fail once the server closes with the flood
			// unread; reading then ends at once.
			if err == nil || !seen.ended() || !seen.closedByServer() {
				t.Fatalf("the server did not close the connection during the flood")
			}
		})
	}
}

// bombBlock is a request head whose decoded size dwarfs its encoded one:
// one 4000-byte field enters the decoder's dynamic table, then refs
// one-byte references to it follow, about 4 KB each once decoded.
func bombBlock(path string, refs int) []byte {
	var buf bytes.Buffer
	buf.Write(requestBlock(path))
	hpack.NewEncoder(&buf).WriteField(hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 4000)})
	// 62 is the newest dynamic table entry, after the 61 static ones.
	buf.Write(bytes.Repeat([]byte{0x80 | 62}, refs))
	return buf.Bytes()
}

// HPACK bomb: 15 KB heads that decode to 48 MB each. The Framer stops
// keeping fields past the header list limit (from srp's MaxHeaderBytes)
// but still reads the block to keep its table in step: a head in one frame
// gets 431, a head continued past the limit ends the connection with
// PROTOCOL_ERROR. Nothing reaches the backend.
func TestH2HPACKBomb(t *testing.T) {
	be := newH2Backend(t)
	addr, roots := runH2(t, config(be.addr()), nil)
	by := startBystander(t, addr, roots)
	mem := watchMemory(t)

	a := dialH2(t, addr, roots, nil)
	a.handshake()
	seen := a.read()
	a.conn.SetWriteDeadline(time.Now().Add(attackTime))
	const streams = 100 // 4.8 GB of headers once decoded
	block := bombBlock("/bomb", 12000)
	for i := range streams {
		a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block, EndStream: true, EndHeaders: true})
	}
	a.flush()
	refused := seen.await(attackTime, func(s *h2Seen) bool { return s.statuses["431"] == streams || s.err != nil })
	t.Logf("whole heads: %d of %d bytes; server: %v", streams, len(block), seen)
	if !refused || seen.ended() {
		t.Errorf("want %d answers 431 on an open connection", streams)
	}

	b := dialH2(t, addr, roots, nil)
	b.handshake()
	seenB := b.read()
	b.conn.SetWriteDeadline(time.Now().Add(attackTime))
	b.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true})
	refs := bytes.Repeat([]byte{0x80 | 62}, 16000)
	sent := 0
	for ; sent < 100 && !seenB.ended(); sent++ { // another 6.4 GB
		b.fr.WriteContinuation(1, false, refs)
		if b.flush() != nil {
			break
		}
	}
	seenB.waitEnd(3 * time.Second)
	t.Logf("continued head: %d CONTINUATION frames; server: %v", sent, seenB)
	if code, ok := seenB.goAwayCode(); !ok || code != http2.ErrCodeProtocol || !seenB.closedByServer() {
		t.Errorf("want GOAWAY PROTOCOL_ERROR and the connection closed")
	}

	mem.check(t)
	by.check(t)
	if n := be.requests.Load(); n != 0 {
		t.Errorf("backend got %d requests, want none", n)
	}
}

// A client that opens its flow-control windows wide, asks for large
// answers and never reads: the server's writes block in the socket. srp's
// guard below TLS fails a write that stalls longer than Options.Timeout,
// and the server then closes the connection, ending its streams.
func TestH2StalledReader(t *testing.T) {
	be := newH2Backend(t)
	const timeout = time.Second
	addr, roots := runH2(t, config(be.addr()), func(o *Options) { o.Timeout = timeout })
	by := startBystander(t, addr, roots)
	mem := watchMemory(t)

	a := dialH2(t, addr, roots, smallReceiveBuffer, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	a.fr.WriteWindowUpdate(0, 1<<31-1-65535)
	const streams = 20 // 20 MiB, far more than the sockets hold
	for i := range streams {
		a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: requestBlock("/big"), EndStream: true, EndHeaders: true})
	}
	a.flush()
	// Reading only after the stall bound has passed: an open connection
	// would then go on to deliver all of it.
	time.Sleep(3 * timeout)
	seen := a.read()
	seen.waitEnd(3 * time.Second)
	mem.check(t)
	by.check(t)
	t.Logf("stalled reader: %d streams of %d bytes; server: %v", streams, h2BigBody, seen)
	if !seen.ended() || !seen.closedByServer() {
		t.Fatalf("the server kept the connection open")
	}
	if seen.dataBytes >= streams*h2BigBody {
		t.Errorf("all %d bytes were delivered: the server never stalled", seen.dataBytes)
	}
}

// Zero-window reader: a client that grants no flow-control window asks
// for large answers, so the server can send none of their bodies. srp
// bounds how long a write to a client may stall (Options.Timeout), but the
// guard below TLS sees socket writes only, and here the server never
// writes: each handler waits for window. The connection is not idle while
// streams are open, so IdleTimeout does not end it either. A stalled
// answer must be given up within the stall bound (the server's
// WriteStall): its stream reset, or the connection closed.
func TestH2ZeroWindow(t *testing.T) {
	be := newH2Backend(t)
	const timeout = time.Second
	addr, roots := runH2(t, config(be.addr()), func(o *Options) { o.Timeout = timeout; o.idleTimeout = 2 * time.Second })
	by := startBystander(t, addr, roots)
	mem := watchMemory(t)

	a := dialH2(t, addr, roots, nil, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	a.handshake()
	seen := a.read()
	const streams = 100
	block := requestBlock("/big")
	for i := range streams {
		a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block, EndStream: true, EndHeaders: true})
	}
	a.flush()
	start := time.Now()
	gaveUp := seen.await(3*timeout+2*time.Second, func(s *h2Seen) bool {
		resets := 0
		for _, n := range s.resets {
			resets += n
		}
		return resets == streams || s.err != nil
	})
	mem.check(t)
	by.check(t)
	t.Logf("zero window: %d streams; after %v: backend got %d requests; server: %v",
		streams, time.Since(start).Round(time.Millisecond), be.requests.Load(), seen)
	if !gaveUp {
		t.Errorf("the server still holds %d streams stalled by a zero window, %v after they were asked for (Options.Timeout %v)",
			streams, time.Since(start).Round(time.Millisecond), timeout)
	}
}

// The limit on a stalled HTTP/2 write must not end a stream that is only
// quiet: an event stream whose backend pauses for longer than -timeout
// between events gets every event.
func TestH2QuietStreamNotReset(t *testing.T) {
	be := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(2500 * time.Millisecond) // past twice the 1s -timeout
		io.WriteString(w, "data: two\n\n")
	})
	addr, roots := runH2(t, config(be.addr()), func(o *Options) { o.Timeout = time.Second })
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.test"}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://app.test/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || err != nil || string(body) != "data: one\n\ndata: two\n\n" {
		t.Errorf("%s: %q, %v; want both events", resp.Proto, body, err)
	}
}
