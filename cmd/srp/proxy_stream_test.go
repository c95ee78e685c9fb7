package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestServerSentEventsFlushedOneByOne(t *testing.T) {
	next := make(chan struct{})
	b := newBackend(t, "sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
			w.(http.Flusher).Flush()
			// The next event exists only once the client has seen this one,
			// so a proxy that buffers never delivers it.
			select {
			case <-next:
			case <-r.Context().Done():
				return
			case <-time.After(15 * time.Second):
				return
			}
		}
	})
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/events", port), nil)
	req.Host = "app.test"
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan string)
	go func() {
		defer close(events)
		br := bufio.NewReader(resp.Body)
		var ev strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			ev.WriteString(line)
			if line == "\n" {
				events <- ev.String()
				ev.Reset()
			}
		}
	}()
	for i := range 3 {
		select {
		case ev := <-events:
			if want := fmt.Sprintf("id: %d\ndata: event %d\n\n", i, i); ev != want {
				t.Fatalf("event %d = %q, want %q", i, ev, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d never arrived: the proxy held back a flushed event", i)
		}
		next <- struct{}{}
	}
}

func TestChunkedBothWays(t *testing.T) {
	b := newBackend(t, "chunks", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Upload", fmt.Sprintf("%d %v %s", r.ContentLength, r.TransferEncoding, body))
		for i := range 5 {
			fmt.Fprintf(w, "chunk %d;", i)
			w.(http.Flusher).Flush()
		}
	})
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	// An upload of unknown length is sent chunked and passed on the same way.
	pr, pw := io.Pipe()
	go func() {
		for i := range 4 {
			fmt.Fprintf(pw, "part%d.", i)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/", port), pr)
	req.Host = "app.test"
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Header.Get("X-Upload"), "-1 [chunked] part0.part1.part2.part3."; got != want {
		t.Errorf("backend received upload as %q, want %q", got, want)
	}
	if fmt.Sprint(resp.TransferEncoding) != "[chunked]" || string(body) != "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;" {
		t.Errorf("client got %v %q", resp.TransferEncoding, body)
	}
}

// procTree returns pid and all its descendants, so a proxy that serves from
// a child process is measured too.
func procTree(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name: state, ppid, ...
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			children[ppid] = append(children[ppid], p)
		}
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// memKiB returns the largest value of field (VmRSS, VmHWM) in
// /proc/PID/status over pid's process tree.
func memKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	most := 0
	for _, p := range procTree(pid) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				most = max(most, n)
			}
		}
	}
	if most == 0 {
		t.Skipf("no %s in /proc for pid %d", field, pid)
	}
	return most
}

// randomStream is 'size' reproducible pseudo-random bytes: nothing any
// layer could compress or dedupe.
func randomStream(seed uint64, size int64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return io.LimitReader(rand.NewChaCha8(s), size)
}

func TestLargeBodiesStreamWithoutBuffering(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 100 MiB")
	}
	const size = 50 << 20
	b := newBackend(t, "big", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			sum := sha256.New()
			n, err := io.Copy(sum, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, sum.Sum(nil))
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.Copy(w, randomStream(2, size))
	})
	port, p := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	c := newClient(t)
	c.Timeout = 2 * time.Minute
	send(t, c, port, "POST", "app.test", "/warm-up", strings.NewReader("x"))
	before := memKiB(t, p.cmd.Process.Pid, "VmRSS")

	want := sha256.New()
	io.Copy(want, randomStream(1, size))
	status, body, _ := send(t, c, port, "POST", "app.test", "/upload", randomStream(1, size))
	if wantBody := fmt.Sprintf("%d %x", size, want.Sum(nil)); status != 200 || body != wantBody {
		t.Fatalf("upload: %d %q, want 200 %q", status, body, wantBody)
	}

	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/download", port), nil)
	req.Host = "app.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	want.Reset()
	io.Copy(want, randomStream(2, size))
	if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("download: %d bytes, err %v, digest match %v", n, err, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}

	peak := memKiB(t, p.cmd.Process.Pid, "VmHWM")
	t.Logf("srp RSS before %d KiB, peak %d KiB, for 50 MiB each way", before, peak)
	// Buffering either body would add 50 MiB; streaming costs a few buffers.
	if grew := peak - before; grew > 16<<10 {
		t.Fatalf("srp peak RSS grew by %d KiB moving 50 MiB each way: a body was buffered", grew)
	}
}

// wsAccept is the Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsWrite writes one final frame; a client masks, a server does not.
func wsWrite(w io.Writer, opcode byte, payload []byte, mask bool) error {
	hdr := []byte{0x80 | opcode}
	var m byte
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, m|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, m|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, m|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	data := append([]byte(nil), payload...)
	if mask {
		key := []byte{0x37, 0xfa, 0x21, 0x3d}
		hdr = append(hdr, key...)
		for i := range data {
			data[i] ^= key[i%4]
		}
	}
	_, err := w.Write(append(hdr, data...))
	return err
}

// wsRead reads one frame and returns its opcode and unmasked payload.
func wsRead(r io.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 1<<20 {
		return 0, nil, errors.New("frame too large")
	}
	var key [4]byte
	if h[1]&0x80 != 0 {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, p, nil
}

// wsEcho is a WebSocket backend that echoes every data frame until close.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
		!strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") ||
		r.Header.Get("X-Forwarded-For") == "" {
		http.Error(w, "not a proxied websocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		wsAccept(r.Header.Get("Sec-WebSocket-Key")))
	brw.Flush()
	for {
		op, p, err := wsRead(brw)
		if err != nil {
			return
		}
		if op == 8 {
			wsWrite(conn, 8, p, false)
			return
		}
		if err := wsWrite(conn, op, p, false); err != nil {
			return
		}
	}
}

func TestWebSocketPassthrough(t *testing.T) {
	b := newBackend(t, "ws", wsEcho)
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(conn, "GET /chat HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) ||
		!strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("handshake: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	for _, msg := range []string{"hello", strings.Repeat("long message ", 40), "bye"} {
		if err := wsWrite(conn, 1, []byte(msg), true); err != nil {
			t.Fatal(err)
		}
		op, p, err := wsRead(br)
		if err != nil || op != 1 || string(p) != msg {
			t.Fatalf("echo of %q: op %d %q err %v", msg, op, p, err)
		}
	}
	wsWrite(conn, 8, []byte{0x03, 0xe8}, true)
	if op, _, err := wsRead(br); err != nil || op != 8 {
		t.Fatalf("close: op %d err %v", op, err)
	}
}

// A client that sends its headers a byte at a time cannot hold a connection
// past the header timeout.
func TestSlowHeadersClientIsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the real header timeout")
	}
	t.Parallel()
	b := newBackend(t, "app", nil)
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(closed)
	}()
	start := time.Now()
	trickle := []byte("GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: " + strings.Repeat("a", 1000))
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-closed:
			t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
			if len(b.requests()) != 0 {
				t.Fatal("the incomplete request reached the backend")
			}
			return
		case <-tick.C:
			if time.Since(start) > 30*time.Second {
				t.Fatal("a client trickling headers held its connection for 30s")
			}
			conn.Write(trickle[i%len(trickle) : i%len(trickle)+1])
		}
	}
}
