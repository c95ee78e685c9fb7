package worker

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A TLS connection opened for one name cannot be used to reach another
// host: 421, over HTTP/1.1 and HTTP/2, and nothing reaches a backend.
func TestSNIMustMatchHost(t *testing.T) {
	rec := newRecorder(t, nil)
	certSrv := httptest.NewUnstartedServer(nil)
	certSrv.StartTLS()
	cert := certSrv.TLS.Certificates[0]
	certSrv.Close()
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}, "other.test": {"Backends": [%q]}}}`, rec.addr(), rec.addr())
	runGuarded(t, conf, func(o *Options) {
		o.HTTPS = tlsLn
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	})
	for _, h2 := range []bool{false, true} {
		for _, tc := range []struct {
			sni, host string
			want      int
		}{
			{"other.test", "app.test", http.StatusMisdirectedRequest},
			{"app.test", "app.test", 200},
			{"APP.test.", "app.test:443", 200},
			{"", "app.test", 200}, // no SNI at all: nothing to contradict
		} {
			rec.reset()
			tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			req, _ := http.NewRequest("GET", "https://"+tlsLn.Addr().String()+"/x", nil)
			req.Host = tc.host
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatalf("SNI %q Host %q: %v", tc.sni, tc.host, err)
			}
			resp.Body.Close()
			tr.CloseIdleConnections()
			if resp.StatusCode != tc.want || (h2 && resp.ProtoMajor != 2) {
				t.Errorf("h2 %v SNI %q Host %q: %s %d, want %d", h2, tc.sni, tc.host, resp.Proto, resp.StatusCode, tc.want)
			}
			if n := len(rec.requests()); tc.want != 200 && n != 0 {
				t.Errorf("SNI %q Host %q: backend got %d requests", tc.sni, tc.host, n)
			}
		}
	}
}

// What a client says about addresses and protocols is never taken as srp's
// own word, and naming srp's headers in Connection does not remove them.
func TestClientCannotForgeProxyHeaders(t *testing.T) {
	rec := newRecorder(t, nil)
	w := runGuarded(t, config(rec.addr()), nil)
	resps, _, _ := exchange(t, w.addr, "GET /x HTTP/1.1\r\nHost: app.test\r\n"+
		"X-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 10.0.0.2\r\nForwarded: for=10.0.0.3;proto=https\r\n"+
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: admin.test\r\n"+
		"Connection: X-Real-IP, X-Forwarded-For, X-Request-Id, X-Forwarded-Proto, X-Forwarded-Host, Forwarded\r\n\r\n", 1, false)
	if got := statuses(resps); len(got) != 1 || got[0] != 200 {
		t.Fatalf("statuses %v", got)
	}
	h := rec.requests()[0].header
	for name, want := range map[string]string{
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-For":   "10.0.0.1, 127.0.0.1", // the chain is kept, the peer appended
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "app.test",
		"Forwarded":         "",
	} {
		if got := strings.Join(h.Values(name), "|"); got != want {
			t.Errorf("backend got %s %q, want %q", name, got, want)
		}
	}
	if id := h.Values("X-Request-Id"); len(id) != 1 || id[0] == "" {
		t.Errorf("backend got X-Request-Id %q", id)
	}
}

// The internal API answers by socket address only.
func TestAPIIgnoresAddressHeaders(t *testing.T) {
	rec := newRecorder(t, nil)
	for _, tc := range []struct {
		subnet string
		want   int
	}{{"10.0.0.0/8", 404}, {"::ffff:127.0.0.0/104", 200}, {"127.0.0.1/32", 200}} {
		w := runGuarded(t, fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}}, "API": {"Subnet": %q}}`, rec.addr(), tc.subnet), nil)
		resps, _, _ := exchange(t, w.addr, "GET /services HTTP/1.1\r\nHost: srp.test\r\n"+
			"X-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\n\r\n", 1, false)
		if got := statuses(resps); len(got) != 1 || got[0] != tc.want {
			t.Errorf("subnet %s: statuses %v, want %d", tc.subnet, got, tc.want)
		}
		w.stop()
	}
}

// Hop-by-hop headers of a backend's answer stay between srp and the backend.
func TestBackendHopByHopNotForwarded(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "X-Secret, Keep-Alive")
		h.Set("X-Secret", "internal")
		h.Set("Keep-Alive", "timeout=99")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Proxy-Connection", "keep-alive")
		h.Set("Upgrade", "h2c")
		h.Set("Te", "trailers")
		h.Set("X-App", "kept")
		io.WriteString(w, "ok")
	})
	w := runGuarded(t, config(rec.addr()), nil)
	resps, bodies, _ := exchange(t, w.addr, get, 1, false)
	if len(resps) != 1 || resps[0].StatusCode != 200 || bodies[0] != "ok" || resps[0].Header.Get("X-App") != "kept" {
		t.Fatalf("got %v %q", statuses(resps), bodies)
	}
	for _, name := range []string{"X-Secret", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Upgrade", "Te"} {
		if v := resps[0].Header.Values(name); len(v) > 0 {
			t.Errorf("client got %s %q", name, v)
		}
	}
	if c := resps[0].Header.Get("Connection"); c != "" {
		t.Errorf("client got Connection %q", c)
	}
}

// Upgrades other than WebSocket (h2c above all) never reach a backend as
// upgrades: the request is served as plain HTTP/1.1.
func TestOnlyWebSocketUpgrades(t *testing.T) {
	rec := newRecorder(t, nil)
	w := runGuarded(t, config(rec.addr()), nil)
	for _, up := range []string{"h2c", "websocket, h2c", "h2c, websocket", "TLS/1.2", "foo"} {
		rec.reset()
		resps, _, _ := exchange(t, w.addr, "GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
			"Upgrade: "+up+"\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", 1, false)
		if got := statuses(resps); len(got) != 1 || got[0] != 200 {
			t.Errorf("Upgrade %q: statuses %v", up, got)
			continue
		}
		h := rec.requests()[0].header
		if h.Get("Upgrade") != "" || h.Get("Http2-Settings") != "" || strings.Contains(strings.ToLower(h.Get("Connection")), "upgrade") {
			t.Errorf("Upgrade %q: backend got %v", up, h)
		}
	}
}

// wsBackend answers a WebSocket handshake with 101 and then echoes raw
// bytes, so a test sees exactly what came through the tunnel.
func wsBackend(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		io.WriteString(w, "plain")
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	io.Copy(conn, brw)
}

const wsHandshake = "GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// Bytes a client sends in the same write as its handshake reach the
// backend through the tunnel, whatever they look like, and are never taken
// for requests.
func TestWebSocketEarlyBytesKept(t *testing.T) {
	rec := newRecorder(t, wsBackend)
	w := runGuarded(t, config(rec.addr()), nil)
	for _, early := range []string{
		"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", // a masked "Hello" frame
		"GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		strings.Repeat("z", 20000),
	} {
		rec.reset()
		conn, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, wsHandshake+early)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("handshake: %v %v", resp, err)
		}
		got := make([]byte, len(early))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != early {
			t.Errorf("early bytes %q came back as %q (%v)", early[:min(len(early), 40)], got[:min(len(got), 40)], err)
		}
		io.WriteString(conn, "later")
		later := make([]byte, 5)
		if _, err := io.ReadFull(br, later); err != nil || string(later) != "later" {
			t.Errorf("after early bytes: %q %v", later, err)
		}
		conn.Close()
		if n := len(rec.requests()); n != 1 {
			t.Errorf("backend parsed %d requests, want the handshake only", n)
		}
	}
}

// A handshake the backend does not accept leaves an ordinary HTTP
// connection: the next request on it is served, and checked.
func TestRefusedUpgradeThenNextRequest(t *testing.T) {
	rec := newRecorder(t, nil) // answers every request with 200, no 101
	w := runGuarded(t, config(rec.addr()), nil)
	runCases(t, w.addr, rec, []hostileCase{
		{name: "next request served", raw: wsHandshake + get, want: []int{200, 200}, paths: []string{"/ws", "/ok"}},
		{name: "next request checked", raw: wsHandshake + post("Content-Length: 4", "Transfer-Encoding: chunked") + "0\r\n\r\n" + next,
			want: []int{200, 400}, paths: []string{"/ws"}, closed: true},
		{name: "h2c then next", raw: "GET /h HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + get,
			want: []int{200, 200}, paths: []string{"/h", "/ok"}},
	})
}
