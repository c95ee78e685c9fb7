package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest sends req verbatim on a new connection and reads the answer.
func rawRequest(t *testing.T, port int, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestRequestHeadersToBackend(t *testing.T) {
	b := newBackend(t, "app", nil)
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	resp, _ := rawRequest(t, port, "GET /a?b=c HTTP/1.1\r\n"+
		"Host: app.test\r\n"+
		"X-Forwarded-For: 203.0.113.9\r\n"+
		"X-Forwarded-For: 198.51.100.4\r\n"+
		"X-Real-IP: 6.6.6.6\r\n"+
		"X-Forwarded-Proto: https\r\n"+
		"X-Forwarded-Host: evil.test\r\n"+
		"X-Request-ID: trace-42.abc_DEF:9/x+y=\r\n"+
		// The client names srp's own headers as hop-by-hop to get them stripped.
		"Connection: keep-alive, X-Forwarded-For, X-Real-IP, X-Forwarded-Proto, X-Forwarded-Host, X-Request-ID, X-Hop\r\n"+
		"X-Hop: secret\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Upgrade: h2c\r\n"+
		"X-Kept: yes\r\n"+
		"\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := b.requests()[0]
	for name, want := range map[string]string{
		"X-Forwarded-For":   "203.0.113.9, 198.51.100.4, 127.0.0.1",
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "app.test",
		"X-Request-Id":      "trace-42.abc_DEF:9/x+y=",
		"X-Kept":            "yes",
	} {
		if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("backend got %s %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Upgrade"} {
		if v := r.Header.Values(name); len(v) > 0 {
			t.Errorf("hop-by-hop %s reached the backend: %q", name, v)
		}
	}
	if c := r.Header.Get("Connection"); strings.Contains(strings.ToLower(c), "x-") {
		t.Errorf("backend got Connection %q", c)
	}
	if r.Host != "app.test" || r.URL.RequestURI() != "/a?b=c" {
		t.Errorf("backend got Host %q URI %q", r.Host, r.URL.RequestURI())
	}
}

func TestRequestIDKeptOrGenerated(t *testing.T) {
	b := newBackend(t, "app", nil)
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	long := strings.Repeat("a", 129)
	for _, tc := range []struct{ header, kept string }{
		{"X-Request-ID: 0af7651916cd43dd8448eb211c80319c\r\n", "0af7651916cd43dd8448eb211c80319c"},
		{"", ""},
		{"X-Request-ID: \r\n", ""},
		{"X-Request-ID: has space\r\n", ""},
		{"X-Request-ID: <script>\r\n", ""},
		{"X-Request-ID: a\"b\r\n", ""},
		{"X-Request-ID: " + long + "\r\n", ""},
		{"X-Request-ID: one\r\nX-Request-ID: two\r\n", ""},
	} {
		rawRequest(t, port, "GET / HTTP/1.1\r\nHost: app.test\r\n"+tc.header+"\r\n")
	}
	reqs := b.requests()
	seen := map[string]bool{}
	for i, r := range reqs {
		ids := r.Header.Values("X-Request-Id")
		if len(ids) != 1 || ids[0] == "" {
			t.Errorf("request %d: backend got X-Request-Id %q, want exactly one", i, ids)
			continue
		}
		id := ids[0]
		if i == 0 && id != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("sane X-Request-Id replaced by %q", id)
		}
		if i > 0 && (strings.ContainsAny(id, " <>\"") || len(id) > 128 || id == "one" || id == "two") {
			t.Errorf("request %d: unsafe X-Request-Id %q passed on", i, id)
		}
		if seen[id] {
			t.Errorf("X-Request-Id %q generated twice", id)
		}
		seen[id] = true
	}
}

func TestResponseHopByHopRemoved(t *testing.T) {
	b := newBackend(t, "app", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "X-Internal")
		h.Set("X-Internal", "backend secret")
		h.Set("Keep-Alive", "timeout=99")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "foo/1")
		h.Set("X-App", "kept")
		fmt.Fprint(w, "body")
	})
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	resp, body := rawRequest(t, port, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp.StatusCode != 200 || body != "body" || resp.Header.Get("X-App") != "kept" {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	for _, name := range []string{"X-Internal", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v := resp.Header.Values(name); len(v) > 0 {
			t.Errorf("hop-by-hop %s reached the client: %q", name, v)
		}
	}
	if c := resp.Header.Get("Connection"); strings.Contains(strings.ToLower(c), "internal") {
		t.Errorf("client got Connection %q", c)
	}
}

func TestHeaderSizeLimit(t *testing.T) {
	b := newBackend(t, "app", nil)
	port, _ := serveSRP(t, `{"Services": {"app.test": {"Backends": ["`+b.addr()+`"]}}}`)
	resp, _ := rawRequest(t, port, "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: "+strings.Repeat("x", 200<<10)+"\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("200 KiB of headers: status %d, want 431", resp.StatusCode)
	}
	if len(b.requests()) != 0 {
		t.Fatal("oversized request reached the backend")
	}
	// A large but reasonable header set still passes.
	resp, _ = rawRequest(t, port, "GET / HTTP/1.1\r\nHost: app.test\r\nCookie: "+strings.Repeat("c", 16<<10)+"\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("16 KiB cookie: status %d", resp.StatusCode)
	}
}

func TestRedirects(t *testing.T) {
	port, _ := serveSRP(t, `{"Services": {
		"perm.test": {"Redirect": {"URL": "https://new.test", "Permanent": true}},
		"temp.test": {"Redirect": {"URL": "https://new.test/base/"}},
		"gone.test": {"Redirect": {"URL": "https://new.test/landing", "DiscardPath": true, "Permanent": true}}}}`)
	c := newClient(t)
	for _, tc := range []struct {
		method, host, path string
		status             int
		location           string
	}{
		{"GET", "perm.test", "/a/b?x=1&y=%20", 308, "https://new.test/a/b?x=1&y=%20"},
		{"POST", "perm.test", "/form", 308, "https://new.test/form"},
		{"GET", "perm.test", "/", 308, "https://new.test/"},
		{"GET", "temp.test", "/a?q=1", 307, "https://new.test/base/a?q=1"},
		{"HEAD", "TEMP.test:3000", "/", 307, "https://new.test/base/"},
		{"GET", "gone.test", "/a/b?x=1", 308, "https://new.test/landing"},
	} {
		status, _, h := send(t, c, port, tc.method, tc.host, tc.path, nil)
		if status != tc.status || h.Get("Location") != tc.location {
			t.Errorf("%s %s%s: %d %q, want %d %q", tc.method, tc.host, tc.path, status, h.Get("Location"), tc.status, tc.location)
		}
	}
}

func TestInternalAPI(t *testing.T) {
	up := newBackend(t, "up", healthAnswers(200, "up"))
	down := newBackend(t, "down", healthAnswers(503, "down"))
	own := newBackend(t, "own", nil)
	services := fmt.Sprintf(`"Services": {
		"app.test": {"HealthPath": "/health", "Backends": [%q, %q]},
		"own.test": {"Backends": [%q]},
		"old.test": {"Redirect": {"URL": "https://app.test"}}}`, up.addr(), down.addr(), own.addr())

	t.Run("inside", func(t *testing.T) {
		port, _ := serveSRP(t, `{`+services+`, "API": {"Subnet": "127.0.0.0/8"}}`)
		c := newClient(t)
		status, body, h := send(t, c, port, "GET", fmt.Sprintf("127.0.0.1:%d", port), "/services", nil)
		if status != 200 || h.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /services: %d %q", status, body)
		}
		var got map[string]struct {
			HealthPath string
			Backends   []string
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		if len(got) != 2 || got["app.test"].HealthPath != "/health" ||
			fmt.Sprint(got["app.test"].Backends) != fmt.Sprint([]string{up.addr()}) ||
			fmt.Sprint(got["own.test"].Backends) != fmt.Sprint([]string{own.addr()}) {
			t.Fatalf("GET /services = %s, want app.test with only %s and own.test, no redirect", body, up.addr())
		}
		// A configured service's own /services is its backend's, never the API's.
		status, body, _ = send(t, c, port, "GET", "own.test", "/services", nil)
		if status != 200 || body != "own" {
			t.Fatalf("own.test/services: %d %q, want the backend's answer", status, body)
		}
	})

	t.Run("outside", func(t *testing.T) {
		port, _ := serveSRP(t, `{`+services+`, "API": {"Subnet": "10.0.0.0/24"}}`)
		c := newClient(t)
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/services", port), nil)
		req.Header.Set("X-Forwarded-For", "10.0.0.5")
		req.Header.Set("X-Real-IP", "10.0.0.5")
		req.Header.Set("Forwarded", "for=10.0.0.5")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantBareError(t, "API from outside the subnet", resp.StatusCode, string(body), 404)
	})
}

// The checks that run before serving decide the first routing: a backend
// that is down when srp starts never gets a request, even the very first.
func TestDownAtStartGetsNothing(t *testing.T) {
	down := newBackend(t, "down", healthAnswers(503, "down"))
	up := newBackend(t, "up", healthAnswers(200, "up"))
	port := freePort(t)
	p := startSRP(t, "-c", writeConfig(t, fmt.Sprintf(`{"Services": {"app.test": {"HealthPath": "/health", "Backends": [%q, %q]}}}`,
		down.addr(), up.addr())), "-p", fmt.Sprint(port))
	stopOnCleanup(t, p)
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Fire from the moment the port exists: no waiting for srp to look ready.
	served := 0
	for served < 20 && ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = "app.test"
		resp, err := c.Do(req)
		if err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "up" {
			t.Fatalf("request %d: %d %q", served, resp.StatusCode, body)
		}
		served++
	}
	if served < 20 || proxied(down) != 0 {
		t.Fatalf("served %d; down backend got %d requests, want 0", served, proxied(down))
	}
}
