package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// accessLine is one line of the JSON access log, every field required.
type accessLine struct {
	Time       string  `json:"time"`
	RemoteIP   string  `json:"remote_ip"`
	Method     string  `json:"method"`
	Host       string  `json:"host"`
	URI        string  `json:"uri"`
	Proto      string  `json:"proto"`
	Status     int     `json:"status"`
	Bytes      int64   `json:"bytes"`
	DurationMS float64 `json:"duration_ms"`
	Backend    string  `json:"backend"`
	Retries    int     `json:"retries"`
	RequestID  string  `json:"request_id"`
	TLS        bool    `json:"tls"`
}

var accessFields = []string{"time", "remote_ip", "method", "host", "uri", "proto", "status", "bytes", "duration_ms", "backend", "retries", "request_id", "tls"}

// parseAccessJSON parses every line of a JSON access log; any line that is
// not one object with exactly the access log's fields fails the test.
func parseAccessJSON(t testing.TB, data []byte) []accessLine {
	t.Helper()
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("access log does not end in a newline: %q", data[max(0, len(data)-200):])
	}
	var out []accessLine
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" && len(data) == 0 {
			break
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Errorf("access log line %d is not a JSON object: %v: %q", i+1, err, line)
			continue
		}
		var keys []string
		for k := range fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := slices.Sorted(slices.Values(accessFields))
		if !slices.Equal(keys, want) {
			t.Errorf("access log line %d has fields %v, want %v: %q", i+1, keys, want, line)
		}
		var l accessLine
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Errorf("access log line %d: %v: %q", i+1, err, line)
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, l.Time); err != nil {
			t.Errorf("access log line %d: time %q: %v", i+1, l.Time, err)
		}
		out = append(out, l)
	}
	return out
}

// rawExchange sends req as written on a new connection and returns the
// status srp answered with, reading the answer to its end.
func rawExchange(t testing.TB, port int, req string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write %q: %v", req, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: read response: %v", req, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// asLogged is s as a JSON string field gives it back: each byte that is
// not UTF-8 becomes U+FFFD.
func asLogged(s string) string { return string([]rune(s)) }

// logRequest is a request of the access log tests and what its line must say.
type logRequest struct {
	name    string
	raw     string // the request as sent
	host    string
	method  string
	uri     string
	proto   string
	ua      string
	referer string
	status  int
	backend bool // a backend answered
	// lenient: srp may refuse the request as malformed (400), and then
	// need not log it; any line it writes must still be right.
	lenient bool
}

const hostileUA = "Mozilla/5.0 \"quoted\" \\back\\slash 'single' \u00fcn\u00efc\u00f6d\u00e9 \u2028 \xff\xfe end"

func logRequests(port int) []logRequest {
	rs := []logRequest{
		{name: "fast path", method: "GET", host: "app.test", uri: "/fast?m=1", proto: "HTTP/1.1", ua: "ua-fast", status: 200, backend: true},
		{name: "net/http (HTTP/1.0)", method: "GET", host: "app.test", uri: "/http10?m=2", proto: "HTTP/1.0", ua: "ua-http10", status: 200, backend: true},
		{name: "404", method: "GET", host: "nowhere.test", uri: "/missing?m=3", proto: "HTTP/1.1", status: 404},
		{name: "502", method: "GET", host: "down.test", uri: "/down?m=4", proto: "HTTP/1.1", status: 502},
		{name: "hostile on the fast path", method: "GET", host: "app.test",
			uri: `/h1/q"uote/back\slash/%22%0A%0D%00%FF/%E2%80%A8?a="b"&c=\n&d=%5C`, proto: "HTTP/1.1",
			ua: hostileUA, referer: `http://x.test/"ref"\` + "\u00e9", status: 200, backend: true},
		{name: "hostile on net/http", method: "GET", host: "app.test",
			uri: `/h2/q"uote/back\slash/%22%0A%0D%00%FF?a="b"`, proto: "HTTP/1.0",
			ua: hostileUA, referer: `"` + "\xc3\x28", status: 200, backend: true},
		{name: "hostile POST", method: "POST", host: "app.test",
			uri: `/h3/%7B%22json%22%3A1%7D/"}{"`, proto: "HTTP/1.1", ua: `"}, {"status": 200, "x": "`, status: 200, backend: true},
		{name: "raw UTF-8 and invalid bytes in the target", method: "GET", host: "app.test", uri: "/r0/\xc3\xa9\xff\xfe\"\\\u2028", proto: "HTTP/1.1",
			ua: hostileUA, status: 200, backend: true},
		// Bytes that make no valid request target, Host or method.
		{name: "raw bytes in the target, fast path", method: "GET", host: "app.test", uri: "/r1/\xc3\xa9\xff\x01\\?q=\x7f\"", proto: "HTTP/1.1",
			status: 200, backend: true, lenient: true},
		{name: "raw bytes in the target, net/http", method: "GET", host: "app.test", uri: "/r2/\xc3\xa9\xff\x01\\?q=\x7f\"", proto: "HTTP/1.0",
			status: 200, backend: true, lenient: true},
		{name: "a tab in the target", method: "GET", host: "app.test", uri: "/r3/a\tb", proto: "HTTP/1.1", status: 200, backend: true, lenient: true},
		{name: "quotes and backslashes in Host", method: "GET", host: `a"b\c.test`, uri: "/r4", proto: "HTTP/1.1", status: 404, lenient: true},
		{name: "non-ASCII Host", method: "GET", host: "\xc3\xa9\xff.test", uri: "/r5", proto: "HTTP/1.0", status: 404, lenient: true},
		{name: "a quote in the method", method: `G"ET`, host: "app.test", uri: "/r6", proto: "HTTP/1.1", status: 200, backend: true, lenient: true},
	}
	for i := range rs {
		r := &rs[i]
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %s\r\nHost: %s\r\n", r.method, r.uri, r.proto, r.host)
		if r.ua != "" {
			fmt.Fprintf(&b, "User-Agent: %s\r\n", r.ua)
		}
		if r.referer != "" {
			fmt.Fprintf(&b, "Referer: %s\r\n", r.referer)
		}
		if r.method == "POST" {
			b.WriteString("Content-Length: 4\r\n")
		}
		if r.proto == "HTTP/1.1" {
			b.WriteString("Connection: close\r\n")
		}
		b.WriteString("\r\n")
		if r.method == "POST" {
			b.WriteString("body")
		}
		r.raw = b.String()
	}
	return rs
}

// accessConfig proxies app.test to b, and down.test to a port where
// nothing listens.
func accessConfig(b string) string {
	return fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}, "down.test": {"Backends": ["127.0.0.1:1"]}}}`, b)
}

// -access-log json: a request on each path, a 404, a 502 and requests
// with hostile input each give one line that encoding/json parses, with
// the fields the request had.
func TestAccessLogJSON(t *testing.T) {
	be := newBackend(t, "app-backend", nil)
	file := filepath.Join(t.TempDir(), "access.log")
	s := startLife(t, srpBin, accessConfig(be.addr()), "-access-log", "json", "-access-log-file", file)
	reqs := logRequests(s.port)
	statuses := sendLogRequests(t, s.port, reqs)
	var lines []accessLine
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines = parseAccessJSON(t, data)
		if haveLines(reqs, statuses, func(r logRequest) bool { return jsonLine(lines, r) != nil }) || time.Now().After(deadline) {
			t.Logf("access log:\n%s", data)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ids := map[string]bool{}
	logged := 0
	for i, r := range reqs {
		l := jsonLine(lines, r)
		if l == nil {
			if statuses[i] != 400 {
				t.Errorf("%s: answered %d, and no line has uri %q", r.name, statuses[i], asLogged(r.uri))
			} else {
				t.Logf("%s: refused with 400, not logged", r.name)
			}
			continue
		}
		logged++
		if statuses[i] == 400 {
			t.Logf("%s: refused with 400, logged", r.name)
			r.status, r.backend = 400, false
		}
		if l.URI != asLogged(r.uri) || l.Method != r.method || l.Host != r.host || l.Proto != r.proto || l.Status != r.status {
			t.Errorf("%s: line %+v, want %s %q %s host %q status %d", r.name, l, r.method, asLogged(r.uri), r.proto, r.host, r.status)
		}
		if l.RemoteIP != "127.0.0.1" || l.TLS || l.Retries != 0 || l.DurationMS < 0 || !utf8.ValidString(l.URI) {
			t.Errorf("%s: remote_ip %q tls %v retries %d duration_ms %v", r.name, l.RemoteIP, l.TLS, l.Retries, l.DurationMS)
		}
		switch {
		case r.backend:
			if l.Backend != be.addr() || l.Bytes != int64(len("app-backend")) || l.RequestID == "" {
				t.Errorf("%s: backend %q bytes %d request_id %q, want %s, %d and an ID", r.name, l.Backend, l.Bytes, l.RequestID, be.addr(), len("app-backend"))
			}
		case r.status == 404:
			if l.Backend != "" || l.Bytes != int64(len("Not Found\n")) {
				t.Errorf("%s: backend %q bytes %d, want none and %d", r.name, l.Backend, l.Bytes, len("Not Found\n"))
			}
		case r.status == 502:
			if l.RequestID == "" {
				t.Errorf("%s: no request_id", r.name)
			}
		}
		if l.RequestID != "" {
			if ids[l.RequestID] {
				t.Errorf("%s: request_id %q used twice", r.name, l.RequestID)
			}
			ids[l.RequestID] = true
		}
	}
	if logged != len(lines) {
		t.Errorf("%d lines for %d requests", len(lines), logged)
	}
	// The backend got the request IDs the log shows.
	for _, req := range be.requests() {
		if id := req.Header.Get("X-Request-Id"); id != "" && !ids[id] {
			t.Errorf("backend saw X-Request-Id %q, which no log line has", id)
		}
	}
}

// sendLogRequests sends each request on its own connection and returns
// the statuses srp answered with; a lenient request may be refused.
func sendLogRequests(t testing.TB, port int, reqs []logRequest) []int {
	t.Helper()
	var out []int
	for _, r := range reqs {
		got := rawExchange(t, port, r.raw)
		if got != r.status && !(r.lenient && got == 400) {
			t.Errorf("%s: status %d, want %d", r.name, got, r.status)
		}
		out = append(out, got)
	}
	return out
}

// haveLines reports whether every request srp did not refuse has a line.
func haveLines(reqs []logRequest, statuses []int, has func(logRequest) bool) bool {
	for i, r := range reqs {
		if statuses[i] != 400 && !has(r) {
			return false
		}
	}
	return true
}

// jsonLine is the line for r's URI, or nil; each URI is sent once.
func jsonLine(lines []accessLine, r logRequest) *accessLine {
	for i := range lines {
		if lines[i].URI == asLogged(r.uri) {
			return &lines[i]
		}
	}
	return nil
}

// A request answered 502 because its only backend refused the connection
// gives the same line on both request paths, the fast path's (HTTP/1.1)
// and net/http's (HTTP/1.0): the same status, retries and backend.
func TestAccessLogFailedAttemptSameOnBothPaths(t *testing.T) {
	be := newBackend(t, "app-backend", nil)
	file := filepath.Join(t.TempDir(), "access.log")
	s := startLife(t, srpBin, accessConfig(be.addr()), "-access-log", "json", "-access-log-file", file)
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		if code := rawExchange(t, s.port, "GET /down/"+proto+" "+proto+"\r\nHost: down.test\r\nConnection: close\r\n\r\n"); code != 502 {
			t.Fatalf("%s: status %d, want 502", proto, code)
		}
	}
	var lines []accessLine
	deadline := time.Now().Add(5 * time.Second)
	for len(lines) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines = parseAccessJSON(t, data)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines for 2 requests", len(lines))
	}
	for _, l := range lines {
		if l.Status != 502 || l.Retries != 0 || l.RequestID == "" {
			t.Errorf("%s: status %d retries %d request_id %q; want 502, 0 and an ID", l.Proto, l.Status, l.Retries, l.RequestID)
		}
	}
	if lines[0].Proto != "HTTP/1.1" {
		lines[0], lines[1] = lines[1], lines[0]
	}
	if fast, std := lines[0], lines[1]; fast.Backend != std.Backend {
		t.Errorf("a request whose one attempt was refused logs backend %q on the fast path (%s) and %q on net/http's (%s)",
			fast.Backend, fast.Proto, std.Backend, std.Proto)
	}
}

// combinedLine is nginx's combined format with the request time appended;
// every field between quotes escapes '"' and '\' as \xHH.
var combinedLine = regexp.MustCompile(`^(\S+) - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000)\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+) "([^"\\]*(?:\\x[0-9A-F]{2}[^"\\]*)*)" "([^"\\]*(?:\\x[0-9A-F]{2}[^"\\]*)*)" (\d+\.\d{3})$`)

// unCLF undoes the \xHH escapes of a combined log field.
func unCLF(t testing.TB, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			v, err := hex.DecodeString(s[i+2 : i+4])
			if err != nil {
				t.Errorf("bad escape in %q", s)
				return s
			}
			b.Write(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// -access-log combined, to standard error (the default), shares it with
// the event log: every line there is either an event or a well-formed
// combined line, and each request's line gives back what it sent.
func TestAccessLogCombined(t *testing.T) {
	be := newBackend(t, "app-backend", nil)
	s := startLife(t, srpBin, accessConfig(be.addr()), "-access-log", "combined")
	reqs := logRequests(s.port)
	statuses := sendLogRequests(t, s.port, reqs)
	// combinedFor is the line whose request target is r's.
	var lines [][]string
	combinedFor := func(r logRequest) []string {
		for _, m := range lines {
			if unCLF(t, m[4]) == r.uri {
				return m
			}
		}
		return nil
	}
	var bad []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines, bad = lines[:0], bad[:0]
		for _, line := range strings.Split(s.out.String(), "\n") {
			if line == "" || strings.HasPrefix(line, "time=") {
				continue
			}
			if m := combinedLine.FindStringSubmatch(line); m != nil {
				lines = append(lines, m)
			} else {
				bad = append(bad, line)
			}
		}
		if haveLines(reqs, statuses, func(r logRequest) bool { return combinedFor(r) != nil }) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, line := range bad {
		t.Errorf("standard error line is neither an event nor a combined log line: %q", line)
	}
	logged := 0
	for i, r := range reqs {
		m := combinedFor(r)
		if m == nil {
			if statuses[i] != 400 {
				t.Errorf("%s: answered %d, and no combined line has its target %q:\n%s", r.name, statuses[i], r.uri, s.out)
			}
			continue
		}
		logged++
		if statuses[i] == 400 {
			r.status, r.backend = 400, false
		}
		if m[1] != "127.0.0.1" || unCLF(t, m[3]) != r.method || m[5] != r.proto || m[6] != strconv.Itoa(r.status) {
			t.Errorf("%s: line %q, want %s %q %s %d", r.name, m[0], r.method, r.uri, r.proto, r.status)
		}
		if ua := unCLF(t, m[9]); ua != r.ua && !(r.ua == "" && ua == "-") {
			t.Errorf("%s: user agent %q, want %q", r.name, ua, r.ua)
		}
		if ref := unCLF(t, m[8]); ref != r.referer && !(r.referer == "" && ref == "-") {
			t.Errorf("%s: referer %q, want %q", r.name, ref, r.referer)
		}
		if r.backend && m[7] != strconv.Itoa(len("app-backend")) {
			t.Errorf("%s: %s bytes, want %d", r.name, m[7], len("app-backend"))
		}
		for j := 0; j < len(m[0]); j++ {
			if c := m[0][j]; c < 0x20 || c >= 0x7f {
				t.Errorf("%s: combined line has byte %#x: %q", r.name, c, m[0])
				break
			}
		}
	}
	if logged != len(lines) {
		t.Errorf("%d combined lines for %d requests", len(lines), logged)
	}
}
