package worker

import (
	"slices"
	"strings"
	"testing"
)

// hostileCase is raw bytes from a client and what must come of them.
type hostileCase struct {
	name   string
	raw    string
	want   []int    // statuses, in order
	paths  []string // what the backend receives whole, in order
	closed bool     // srp closes the connection after the last answer
}

const (
	get  = "GET /ok HTTP/1.1\r\nHost: app.test\r\n\r\n"
	next = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"
)

// post returns a POST to app.test with the given extra header lines.
func post(headers ...string) string {
	return "POST /p HTTP/1.1\r\nHost: app.test\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n"
}

var framingCases = []hostileCase{
	// Content-Length and Transfer-Encoding together: net/http would take
	// the chunks and run what a Content-Length reader sees as body as a
	// second request.
	{name: "CL+TE", raw: post("Content-Length: 5", "Transfer-Encoding: chunked") + "0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "TE+CL", raw: post("Transfer-Encoding: chunked", "Content-Length: 5") + "0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "CL+TE lower case", raw: post("content-length: 5", "transfer-encoding: chunked") + "0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "CL+TE zero length", raw: post("Content-Length: 0", "Transfer-Encoding: chunked") + "0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "CL+TE after a good request", raw: get + post("Content-Length: 4", "Transfer-Encoding: chunked") + "0\r\n\r\n" + next,
		want: []int{200, 400}, paths: []string{"/ok"}, closed: true},
	{name: "CL+TE behind a chunked body", raw: post("Transfer-Encoding: chunked") + "3\r\nabc\r\n0\r\n\r\n" + post("Content-Length: 4", "Transfer-Encoding: chunked") + "0\r\n\r\n" + next,
		want: []int{200, 400}, paths: []string{"/p"}, closed: true},

	{name: "duplicate CL same value", raw: post("Content-Length: 3", "Content-Length: 3") + "abc" + next, want: []int{400}, closed: true},
	{name: "duplicate CL different", raw: post("Content-Length: 3", "Content-Length: 40") + "abc" + next, want: []int{400}, closed: true},
	{name: "CL plus sign", raw: post("Content-Length: +3") + "abc", want: []int{400}, closed: true},
	{name: "CL negative", raw: post("Content-Length: -1") + "abc", want: []int{400}, closed: true},
	{name: "CL hex", raw: post("Content-Length: 0x3") + "abc", want: []int{400}, closed: true},
	{name: "CL list", raw: post("Content-Length: 3, 3") + "abc", want: []int{400}, closed: true},
	{name: "CL empty", raw: post("Content-Length: ") + "abc", want: []int{400}, closed: true},
	{name: "CL overflow", raw: post("Content-Length: 99999999999999999999") + "abc", want: []int{400}, closed: true},

	{name: "TE identity", raw: post("Transfer-Encoding: identity") + "abc", want: []int{400}, closed: true},
	{name: "TE gzip, chunked", raw: post("Transfer-Encoding: gzip, chunked") + "0\r\n\r\n", want: []int{400}, closed: true},
	{name: "TE chunked twice", raw: post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked") + "0\r\n\r\n", want: []int{400}, closed: true},
	{name: "TE chunked, chunked", raw: post("Transfer-Encoding: chunked, chunked") + "0\r\n\r\n", want: []int{400}, closed: true},
	{name: "TE empty", raw: post("Transfer-Encoding: ", "Content-Length: 3") + "abc", want: []int{400}, closed: true},
	{name: "TE on HTTP/1.0", raw: "POST /p HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "TE with tab", raw: post("Transfer-Encoding:\tchunked") + "0\r\n\r\n" + next, want: []int{200, 200}, paths: []string{"/p", "/smuggled"}},

	{name: "bare LF line ends", raw: "GET /ok HTTP/1.1\nHost: app.test\n\n", want: []int{400}, closed: true},
	{name: "bare LF in one line", raw: "GET /ok HTTP/1.1\r\nHost: app.test\nX-A: b\r\n\r\n", want: []int{400}, closed: true},
	{name: "bare LF ends head", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\n\n", want: []int{400}, closed: true},
	{name: "bare CR in value", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-A: b\rc\r\n\r\n", want: []int{400}, closed: true},
	{name: "CR before CRLF", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\r\n\r\n", want: []int{400}, closed: true},
	{name: "NUL in value", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-A: b\x00c\r\n\r\n", want: []int{400}, closed: true},
	{name: "NUL in name", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\nX\x00A: b\r\n\r\n", want: []int{400}, closed: true},
	{name: "NUL in target", raw: "GET /o\x00k HTTP/1.1\r\nHost: app.test\r\n\r\n", want: []int{400}, closed: true},
	{name: "space before colon", raw: post("Content-Length : 3") + "abc", want: []int{400}, closed: true},
	{name: "tab before colon", raw: post("Transfer-Encoding\t: chunked", "Content-Length: 3") + "abc", want: []int{400}, closed: true},
	{name: "obsolete folding", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-A: b\r\n c\r\n\r\n", want: []int{400}, closed: true},
	{name: "folded TE", raw: post("X-A: b", " Transfer-Encoding: chunked", "Content-Length: 3") + "abc", want: []int{400}, closed: true},
	{name: "line without colon", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-A b\r\n\r\n", want: []int{400}, closed: true},
	{name: "empty name", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\n: b\r\n\r\n", want: []int{400}, closed: true},
	{name: "empty request line", raw: "\r\n" + get, want: []int{400}, closed: true},
	{name: "oversize head", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("x", 200<<10) + "\r\n\r\n", want: []int{431}, closed: true},
	{name: "oversize head without end", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("x", 200<<10), want: []int{431}, closed: true},

	// Chunked bodies: errors end the connection, nothing reaches the
	// backend whole, nothing after them is run.
	{name: "chunk size 0x", raw: post("Transfer-Encoding: chunked") + "0x3\r\nabc\r\n0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "chunk size empty", raw: post("Transfer-Encoding: chunked") + "\r\nabc\r\n0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "chunk size too long", raw: post("Transfer-Encoding: chunked") + "10000000000000003\r\nabc\r\n0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "chunk size bare LF", raw: post("Transfer-Encoding: chunked") + "3\nabc\r\n0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "chunk longer than size", raw: post("Transfer-Encoding: chunked") + "3\r\nabcdef\r\n0\r\n\r\n" + next, want: []int{400}, closed: true},
	{name: "trailer bare LF", raw: post("Transfer-Encoding: chunked") + "3\r\nabc\r\n0\r\nX-T: 1\n\n" + next, want: []int{400}, closed: true},
	{name: "trailer without colon", raw: post("Transfer-Encoding: chunked") + "3\r\nabc\r\n0\r\nX-T 1\r\n\r\n" + next, want: []int{400}, closed: true},

	// What must keep working.
	{name: "pipelined", raw: get + post("Content-Length: 3") + "abc" + get, want: []int{200, 200, 200}, paths: []string{"/ok", "/p", "/ok"}},
	{name: "chunked with extension and trailer", raw: post("Transfer-Encoding: chunked") + "3;x=\"y\"\r\nabc\r\n2 \r\nde\r\n0\r\nX-T: 1\r\n\r\n" + get,
		want: []int{200, 200}, paths: []string{"/p", "/ok"}},
	{name: "CL with spaces and zeros", raw: post("Content-Length:  003 ") + "abc" + get, want: []int{200, 200}, paths: []string{"/p", "/ok"}},
	{name: "GET with body", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc" + get, want: []int{200, 200}, paths: []string{"/ok", "/ok"}},
	{name: "HTTP/1.0 with CL", raw: "POST /p HTTP/1.0\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc", want: []int{200}, paths: []string{"/p"}, closed: true},
	{name: "8-bit value", raw: "GET /ok HTTP/1.1\r\nHost: app.test\r\nX-A: \xff\xfe\r\n\r\n", want: []int{200}, paths: []string{"/ok"}},
}

// Every framing case through a real worker, against a backend that keeps
// what it received: refused requests never reach it, and nothing after a
// refusal on the same connection does either.
func TestHostileFraming(t *testing.T) {
	rec := newRecorder(t, nil)
	w := runGuarded(t, config(rec.addr()), nil)
	for _, tc := range framingCases {
		t.Run(tc.name, func(t *testing.T) {
			rec.reset()
			n := len(tc.want)
			if n == 0 {
				n = 1
			}
			resps, _, closed := exchange(t, w.addr, tc.raw, n, tc.closed)
			if got := statuses(resps); !slices.Equal(got, tc.want) {
				t.Errorf("statuses %v, want %v", got, tc.want)
			}
			if tc.closed && !closed {
				t.Error("connection left open")
			}
			for i, resp := range resps {
				if tc.want[i] >= 400 && resp.Header.Get("X-Backend") != "" {
					t.Errorf("answer %d came from the backend", i)
				}
			}
			var paths []string
			for _, s := range rec.requests() {
				if s.bodyErr == nil {
					paths = append(paths, s.uri)
				}
			}
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("backend received %q, want %q", paths, tc.paths)
			}
		})
	}
}
