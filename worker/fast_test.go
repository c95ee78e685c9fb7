package worker

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Every case of fastCases through both paths: the client gets the same
// answers and the connection the same fate, the backend parses the same
// requests with the same headers (less the differences views documents),
// and the fast path serves the requests it is meant to.
func TestFastDifferential(t *testing.T) {
	p := newFastPair(t, nil, nil)
	for _, c := range fastCases() {
		t.Run(c.name, func(t *testing.T) {
			if c.bug != "" {
				t.Skip("BUG: " + c.bug)
			}
			p.reset()
			parts := c.parts
			if parts == nil {
				parts = []string{c.raw}
			}
			fast, slow := p.compare(parts, 10*time.Second, true)
			if fast.err != "" || slow.err != "" || fast.String() != slow.String() {
				t.Errorf("client saw\nfast path: %v\nnet/http:  %v", fast, slow)
			}
			if d := diffViews(views(p.fastRec), views(p.slowRec)); d != "" {
				t.Errorf("backend:\n%s", d)
			}
			if n := p.fastTap.fastHeads(); n != c.fast {
				t.Errorf("the fast path served %d requests, want %d", n, c.fast)
			}
			if n := p.slowTap.fastHeads(); n != 0 {
				t.Errorf("%d requests look fast-path-served without the fast path", n)
			}
		})
	}
}

// scripted is a backend on 127.0.0.1 that answers the n-th request on a
// connection with the exact bytes answer returns ("" sends nothing; at each
// pause it waits a moment), and closes the connection after it when answer
// says so. It counts the connections it accepted.
type scripted struct {
	net.Listener
	answer func(n int, r *http.Request) (resp string, close bool)
	mu     sync.Mutex // guards conns, open and reqs
	conns  int
	open   map[net.Conn]bool
	reqs   int
	wg     sync.WaitGroup
}

func newScripted(tb testing.TB, answer func(n int, r *http.Request) (string, bool)) *scripted {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &scripted{Listener: ln, answer: answer, open: map[net.Conn]bool{}}
	s.wg.Go(s.accept)
	tb.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *scripted) accept() {
	for {
		c, err := s.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		s.open[c] = true
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(c) })
	}
}

func (s *scripted) serve(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.open, c)
		s.mu.Unlock()
	}()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		s.mu.Lock()
		s.reqs++
		s.mu.Unlock()
		resp, close := s.answer(n, r)
		for i, part := range strings.Split(resp, pause) {
			if i > 0 {
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := io.WriteString(c, part); err != nil {
				return
			}
		}
		if close {
			return
		}
	}
}

// pause in a scripted answer splits it into writes 10ms apart.
const pause = "\x00pause\x00"

func (s *scripted) count() (conns, reqs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, s.reqs
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// answerView is what a client saw of one answer, and whether a request
// sent after it on the same connection was answered.
type answerView struct {
	statuses []int // informational ones included
	early    http.Header
	header   http.Header
	body     string
	cut      bool // the answer ended early, or never came
	trailer  http.Header
	chunked  bool
	next     bool
}

func (v answerView) String() string {
	return fmt.Sprintf("statuses %v body %q cut %v chunked %v trailer %v next %v header %v",
		v.statuses, v.body, v.cut, v.chunked, v.trailer, v.next, v.header)
}

// fetch sends method path to addr, reads the answer, then sends a GET on
// the same connection to see whether it is still served.
func fetch(t testing.TB, addr, method, path string) answerView {
	t.Helper()
	var v answerView
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: app.test\r\n\r\n", method, path)
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			v.cut = true
			return v
		}
		v.statuses = append(v.statuses, resp.StatusCode)
		if resp.StatusCode < 200 {
			if v.early == nil {
				v.early = resp.Header
			}
			continue
		}
		b, err := io.ReadAll(resp.Body)
		v.body, v.cut = string(b), err != nil
		v.header, v.trailer = resp.Header, resp.Trailer
		v.chunked = slices.Equal(resp.TransferEncoding, []string{"chunked"})
		v.header.Del("Date")
		break
	}
	if v.cut {
		return v
	}
	io.WriteString(conn, "GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err == nil {
		b, _ := io.ReadAll(resp.Body)
		v.next = resp.StatusCode == 200 && string(b) == "ok"
	}
	return v
}

// respCase is a backend's answer and what a client of the fast path gets.
type respCase struct {
	name, method, resp string
	close              bool // the backend closes the connection after resp

	status  []int // informational statuses included
	body    string
	cut     bool // the answer ends early, and the connection with it
	chunked bool
	trailer string   // the value of X-T in the trailer
	absent  []string // headers the client must not get

	// net/http answers otherwise: why, and the statuses it gives (with
	// cut, only that its answer fails too).
	differs string
	slow    []int
}

const hello = "Content-Length: 5\r\n\r\nhello"

var respCases = []respCase{
	{name: "length", resp: "HTTP/1.1 200 OK\r\n" + hello, status: []int{200}, body: "hello"},
	{name: "large length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 100000),
		status: []int{200}, body: strings.Repeat("x", 100000)},
	{name: "chunked with trailer", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
		status: []int{200}, body: "hello", chunked: true, trailer: "v"},
	{name: "chunked with extension", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
		status: []int{200}, body: "hello", chunked: true},
	{name: "large chunked", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("2710\r\n"+strings.Repeat("y", 10000)+"\r\n", 10) + "0\r\n\r\n",
		status: []int{200}, body: strings.Repeat("y", 100000), chunked: true},
	// Ended by the close: the client connection survives because the
	// body reaches it chunked (net/http re-frames it so too).
	{name: "ended by close", resp: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello", close: true,
		status: []int{200}, body: "hello", chunked: true},
	{name: "empty, ended by close", resp: "HTTP/1.1 200 OK\r\n\r\n", close: true, status: []int{200}, chunked: true,
		differs: "net/http sends it chunked or with Content-Length: 0, as its flush timer falls", slow: []int{200}},
	{name: "HTTP/1.0 ended by close", resp: "HTTP/1.0 200 OK\r\n\r\nhello", close: true, status: []int{200}, body: "hello", chunked: true},
	{name: "HTTP/1.0 length", resp: "HTTP/1.0 200 OK\r\n" + hello, status: []int{200}, body: "hello"},
	{name: "103 then 200", resp: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n" + hello,
		status: []int{103, 200}, body: "hello"},
	{name: "100 unasked then 200", resp: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" + hello, status: []int{100, 200}, body: "hello"},
	{name: "HEAD with length", method: "HEAD", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", status: []int{200}},
	{name: "204", resp: "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", status: []int{204}},
	{name: "304", resp: "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", status: []int{304}},
	{name: "status without reason", resp: "HTTP/1.1 200\r\n" + hello, status: []int{200}, body: "hello"},
	{name: "status 599", resp: "HTTP/1.1 599 Odd\r\n" + hello, status: []int{599}, body: "hello"},
	{name: "backend Connection close", resp: "HTTP/1.1 200 OK\r\nConnection: close\r\n" + hello, close: true,
		status: []int{200}, body: "hello", absent: []string{"Connection"}},
	{name: "Connection names X-Secret", resp: "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: s\r\nX-Public: p\r\n" + hello,
		status: []int{200}, body: "hello", absent: []string{"X-Secret", "Connection"}},
	{name: "hop-by-hop headers", resp: "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTe: trailers\r\nProxy-Authenticate: Basic\r\n" + hello,
		status: []int{200}, body: "hello", absent: []string{"Keep-Alive", "Proxy-Connection", "Upgrade", "Te", "Proxy-Authenticate"}},
	{name: "lower-case names", resp: "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-lower: 1\r\nconnection: x-lower\r\n\r\nhello",
		status: []int{200}, body: "hello", absent: []string{"X-Lower"}},
	{name: "two Set-Cookie", resp: "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n" + hello, status: []int{200}, body: "hello"},
	{name: "bytes after the body", resp: "HTTP/1.1 200 OK\r\n" + hello + "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
		status: []int{200}, body: "hello",
		differs: "net/http's Transport may reuse the connection, stray answer and all, before its reader sees it", slow: []int{200}},

	// Refused by both.
	{name: "two lengths that differ", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", status: []int{502}, body: "Bad Gateway\n"},
	{name: "101 unasked", resp: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", status: []int{502}, body: "Bad Gateway\n"},
	{name: "101 bare", resp: "HTTP/1.1 101 Switching Protocols\r\n\r\n", status: []int{502}, body: "Bad Gateway\n"},
	{name: "TE gzip, chunked", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", status: []int{502}, body: "Bad Gateway\n"},
	{name: "TE identity", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello", close: true, status: []int{502}, body: "Bad Gateway\n"},
	{name: "NUL in a header", resp: "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n" + hello, status: []int{502}, body: "Bad Gateway\n"},
	{name: "line without colon", resp: "HTTP/1.1 200 OK\r\nX-A a\r\n" + hello, status: []int{502}, body: "Bad Gateway\n"},
	{name: "status 1000", resp: "HTTP/1.1 1000 Odd\r\n" + hello, status: []int{502}, body: "Bad Gateway\n"},
	{name: "length negative", resp: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello", close: true, status: []int{502}, body: "Bad Gateway\n"},
	{name: "length with plus", resp: "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", status: []int{502}, body: "Bad Gateway\n"},
	{name: "length list", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", status: []int{502}, body: "Bad Gateway\n"},
	{name: "chunk data too long", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n",
		status: []int{200}, body: "hello", cut: true, chunked: true},
	{name: "chunked cut by close", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", close: true,
		status: []int{200}, body: "hel", cut: true, chunked: true},
	{name: "bare LF in trailer", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: v\n\r\n", close: true,
		status: []int{200}, body: "hello", cut: true, chunked: true},

	// The fast path refuses what net/http reads one way and another
	// parser could read another: a 502, and the connection stays.
	{name: "CL+TE", resp: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		status: []int{502}, body: "Bad Gateway\n", differs: "net/http takes the chunks, ignoring the length", slow: []int{200}},
	{name: "HTTP/1.0 chunked", resp: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", close: true,
		status: []int{502}, body: "Bad Gateway\n", differs: "net/http ignores the coding on HTTP/1.0 and reads to the close", slow: []int{200}},
	{name: "two equal lengths", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		status: []int{502}, body: "Bad Gateway\n", differs: "net/http accepts repeated equal lengths", slow: []int{200}},
	{name: "bare LF", resp: "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
		status: []int{502}, body: "Bad Gateway\n", differs: "net/http accepts bare LF line ends", slow: []int{200}},
	{name: "obsolete folding", resp: "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n" + hello,
		status: []int{502}, body: "Bad Gateway\n", differs: "net/http unfolds the line", slow: []int{200}},
	{name: "space before colon", resp: "HTTP/1.1 200 OK\r\nX-A : a\r\n" + hello,
		status: []int{502}, body: "Bad Gateway\n", differs: "net/http's response parser accepts it", slow: []int{200}},
	{name: "HTTP/2.0 status line", resp: "HTTP/2.0 200 OK\r\n" + hello,
		status: []int{502}, body: "Bad Gateway\n", differs: "net/http reads any HTTP/x.y status line", slow: []int{200}},
	{name: "HTTP/1.2 status line", resp: "HTTP/1.2 200 OK\r\n" + hello,
		status: []int{502}, body: "Bad Gateway\n", differs: "net/http reads any HTTP/x.y status line", slow: []int{200}},
	{name: "status 099", resp: "HTTP/1.1 099 Odd\r\n" + hello,
		status: []int{502}, body: "Bad Gateway\n"},

	// A body that fails: the fast path has sent the head already, so the
	// client sees the answer cut; net/http holds the head back until it
	// flushes, so its client may see no answer at all.
	{name: "length cut by close", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", close: true,
		status: []int{200}, body: "hello", cut: true, differs: "net/http holds a head back until the first flush"},
	{name: "invalid chunk size", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		status: []int{200}, cut: true, chunked: true, differs: "net/http holds a head back until the first flush"},

	// Headers that net/http's server rewrites: the answers differ only there.
	{name: "HEAD chunked", method: "HEAD", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		status: []int{200}, chunked: true, differs: "net/http drops Transfer-Encoding from a HEAD answer", slow: []int{200}},
	{name: "204 with length", resp: "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
		status: []int{204}, differs: "net/http drops Content-Length from a 204", slow: []int{204}},
	{name: "304 with length", resp: "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
		status: []int{304}, differs: "net/http drops Content-Length from a 304", slow: []int{304}},
}

// Answers from a raw backend through both paths: framing, informational
// answers, hop-by-hop headers, and malformed answers (502, or the answer
// cut) with the client connection kept whenever the answer was whole.
func TestFastResponses(t *testing.T) {
	be := newScripted(t, func(n int, r *http.Request) (string, bool) {
		for _, c := range respCases {
			if r.URL.Path == "/case/"+c.name {
				return c.resp, c.close
			}
		}
		return okAnswer, false
	})
	fast := runGuarded(t, config(be.Addr().String()), nil)
	slow := runGuarded(t, config(be.Addr().String()), func(o *Options) { o.noFastPath = true })
	for _, c := range respCases {
		t.Run(c.name, func(t *testing.T) {
			method := cmp.Or(c.method, "GET")
			path := "/case/" + strings.ReplaceAll(c.name, " ", "%20")
			f, s := fetch(t, fast.addr, method, path), fetch(t, slow.addr, method, path)
			if !slices.Equal(f.statuses, c.status) || f.body != c.body || f.cut != c.cut || f.chunked != c.chunked ||
				f.trailer.Get("X-T") != c.trailer || f.next == c.cut {
				t.Errorf("fast path: %v\nwant statuses %v body %q cut %v chunked %v trailer %q", f, c.status, c.body, c.cut, c.chunked, c.trailer)
			}
			for _, h := range c.absent {
				if _, ok := f.header[h]; ok {
					t.Errorf("fast path passed %s on: %v", h, f.header)
				}
			}
			switch {
			case c.differs != "" && c.cut:
				// Whether net/http's head went out before the body
				// failed depends on its flush timer; the answer fails.
				if !s.cut || s.next {
					t.Errorf("net/http (%s): %v, want the answer cut", c.differs, s)
				}
				return
			case c.differs != "":
				if !slices.Equal(s.statuses, c.slow) {
					t.Errorf("net/http (%s): %v, want statuses %v", c.differs, s, c.slow)
				}
				return
			}
			// net/http's server sniffs a Content-Type the backend did
			// not send; the fast path passes the answer as it is.
			if f.header != nil && f.header.Get("Content-Type") == "" {
				s.header.Del("Content-Type")
			}
			// The fast path dates informational answers too.
			if f.early != nil {
				f.early.Del("Date")
			}
			if f.String() != s.String() || fmt.Sprint(f.early) != fmt.Sprint(s.early) {
				t.Errorf("fast path and net/http differ:\nfast path: %v %v\nnet/http:  %v %v", f, f.early, s, s.early)
			}
		})
	}
}
