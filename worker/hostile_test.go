package worker

import (
	"slices"
	"strings"
	"testing"

	"srp/worker/guard"
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
	runCases(t, w.addr, rec, framingCases)
}

// runCases sends each case to the worker at addr and checks statuses, the
// connection's end and what rec received whole.
func runCases(t *testing.T, addr string, rec *recorder, cases []hostileCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec.reset()
			n := max(len(tc.want), 1)
			resps, _, closed := exchange(t, addr, tc.raw, n, tc.closed)
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
			var got []string
			for _, s := range rec.requests() {
				if s.bodyErr == nil {
					got = append(got, s.host+s.uri)
				}
			}
			var want []string
			for _, p := range tc.paths {
				if strings.HasPrefix(p, "/") {
					p = "app.test" + p
				}
				want = append(want, p)
			}
			if !slices.Equal(got, want) {
				t.Errorf("backend received %q, want %q", got, want)
			}
		})
	}
}

// Request targets and Host headers: only Host rules route, nothing makes
// srp a forward proxy, and malformed hosts never reach a backend.
func TestHostileTargetsAndHosts(t *testing.T) {
	rec := newRecorder(t, nil)
	w := runGuarded(t, config(rec.addr()), nil)
	runCases(t, w.addr, rec, []hostileCase{
		{name: "absolute-form routes by its host", raw: "GET http://app.test/x?y=1 HTTP/1.1\r\nHost: other.test\r\n\r\n",
			want: []int{200}, paths: []string{"/x?y=1"}},
		{name: "absolute-form to a foreign host", raw: "GET http://evil.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: []int{404}},
		{name: "absolute-form https", raw: "GET https://app.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: []int{200}, paths: []string{"/x"}},
		{name: "absolute-form with userinfo", raw: "GET http://user:pw@app.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: []int{400}},
		{name: "CONNECT", raw: "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n", want: []int{405}},
		{name: "CONNECT to a path", raw: "CONNECT /x HTTP/1.1\r\nHost: app.test\r\n\r\n", want: []int{405}},
		{name: "no Host", raw: "GET /x HTTP/1.1\r\n\r\n", want: []int{400}, closed: true},
		{name: "no Host on HTTP/1.0", raw: "GET /x HTTP/1.0\r\n\r\n", want: []int{400}},
		{name: "empty Host", raw: "GET /x HTTP/1.1\r\nHost: \r\n\r\n", want: []int{400}},
		{name: "two Hosts", raw: "GET /x HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n", want: []int{400}, closed: true},
		{name: "Host with userinfo", raw: "GET /x HTTP/1.1\r\nHost: user@app.test\r\n\r\n", want: []int{400}, closed: true},
		{name: "Host list", raw: "GET /x HTTP/1.1\r\nHost: app.test, other.test\r\n\r\n", want: []int{400}, closed: true},
		{name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: []int{400}},
		{name: "Host case, port and trailing dot", raw: "GET /x HTTP/1.1\r\nHost: APP.Test.:80\r\n\r\n", want: []int{200}, paths: []string{"APP.Test.:80/x"}},
	})
}

// The guard's cost per request on a keep-alive connection: a typical
// browser-sized GET, read as the server reads it.
func BenchmarkGuardRead(b *testing.B) {
	req := "GET /static/app.js?v=3 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
		"Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Cookie: session=" + strings.Repeat("c", 200) + "\r\nConnection: keep-alive\r\n\r\n"
	stream := strings.NewReader("")
	g := guard.NewConn(&memConn{r: stream}, 0, discardLogger())
	p := make([]byte, 4096)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		stream.Reset(req)
		for n := 0; n < len(req); {
			k, err := g.Read(p)
			if err != nil {
				b.Fatal(err)
			}
			n += k
		}
	}
}
