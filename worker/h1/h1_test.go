package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

func TestCheckHead(t *testing.T) {
	for _, tc := range []struct {
		head   string
		reason string
		kind   BodyKind
		length uint64
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "", BodyNone, 0},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", "", BodyLength, 12},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "", BodyChunked, 0},
		{"GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n", "NUL in request head", 0, 0},
		{"GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF in request head", 0, 0},
		{"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "bare CR in request head", 0, 0},
		{"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", "obsolete line folding", 0, 0},
		{"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "whitespace before colon", 0, 0},
		{"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", "duplicate Content-Length", 0, 0},
		{"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", "invalid Content-Length", 0, 0},
		{"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding", 0, 0},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding before HTTP/1.1", 0, 0},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported Transfer-Encoding", 0, 0},
	} {
		info, reason := CheckHead([]byte(tc.head))
		if reason != tc.reason || reason == "" && (info.Kind != tc.kind || info.Length != tc.length) {
			t.Errorf("%q: %+v %q, want kind %d length %d %q", tc.head, info, reason, tc.kind, tc.length, tc.reason)
		}
	}
}

// A response ambiguous to any reader is refused, so the client gets a 502
// rather than whatever one reader made of it.
func TestParseResponse(t *testing.T) {
	for head, ok := range map[string]bool{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n":                               true,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n":                      true,
		"HTTP/1.0 200 OK\r\n\r\n":                                                    true,
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n":          false,
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n": false,
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n":                      false,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n":                         false,
		"HTTP/1.1 200 OK\nContent-Length: 5\n\n":                                     false,
		"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n":                                     false,
		"HTTP/2.0 200 OK\r\n\r\n":                                                    false,
		"HTTP/1.1 20 OK\r\n\r\n":                                                     false,
		"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n":                                      false,
	} {
		var r Response
		if got := ParseResponse(&r, []byte(head)); got != ok {
			t.Errorf("%q: accepted %v, want %v", head, got, ok)
		}
	}
}

// FuzzCheckHead holds the grammar to net/http's own reader: a head
// CheckHead accepts, net/http reads, with the same body framing.
func FuzzCheckHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		end, complete := HeadEnd(raw, 0)
		if !complete {
			return
		}
		head := raw[:end]
		info, reason := CheckHead(head)
		if reason != "" {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			return // refused by net/http: srp answers 400 either way
		}
		chunked := len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
		switch info.Kind {
		case BodyChunked:
			if !chunked {
				t.Fatalf("chunked to the grammar, %v to net/http: %q", req.TransferEncoding, head)
			}
		case BodyLength:
			if chunked || req.ContentLength != int64(info.Length) {
				t.Fatalf("length %d to the grammar, %d (chunked %v) to net/http: %q", info.Length, req.ContentLength, chunked, head)
			}
		case BodyNone:
			if chunked || req.ContentLength > 0 {
				t.Fatalf("no body to the grammar, length %d (chunked %v) to net/http: %q", req.ContentLength, chunked, head)
			}
		}
	})
}

// FuzzParseResponse holds the response parser to net/http's: a head it
// accepts, net/http reads, with the same status and framing.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		end, complete := HeadEnd(raw, 0)
		if !complete {
			return
		}
		head := raw[:end]
		var r Response
		if !ParseResponse(&r, head) {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), nil)
		if err != nil {
			t.Fatalf("accepted, but net/http refuses it (%v): %q", err, head)
		}
		if resp.StatusCode != r.Status {
			t.Fatalf("status %d, net/http %d: %q", r.Status, resp.StatusCode, head)
		}
		chunked := len(resp.TransferEncoding) > 0
		if r.Chunked != chunked && r.Status >= 200 && r.Status != 204 && r.Status != 304 {
			t.Fatalf("chunked %v, net/http %v: %q", r.Chunked, chunked, head)
		}
		if !r.Chunked && r.Length >= 0 && resp.ContentLength != r.Length && r.Status >= 200 && r.Status != 204 && r.Status != 304 {
			t.Fatalf("length %d, net/http %d: %q", r.Length, resp.ContentLength, head)
		}
	})
}
