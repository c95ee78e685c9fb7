package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// httpsSRP is srp in HTTPS mode for one test.
type httpsSRP struct {
	*proc
	httpPort, httpsPort int
	pidfile             string
}

// startHTTPS starts srp in HTTPS mode against ca (nil: a CA that is never
// reached) with the proxy's own URL https://proxy.srp.test, and waits until
// its pidfile names it, which happens once its worker is ready.
func startHTTPS(t *testing.T, ca *pebble, httpPort, httpsPort int, certs, config string, extra ...string) *httpsSRP {
	t.Helper()
	dirURL, apiCA := "https://127.0.0.1:1/dir", ""
	if ca != nil {
		dirURL, apiCA = ca.dirURL, ca.apiCA
	}
	pidfile := filepath.Join(t.TempDir(), "srp.pid")
	args := []string{"-c", writeConfig(t, config), "-url", "https://proxy.srp.test", "-pidfile", pidfile,
		"-http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"-https-addr", fmt.Sprintf("127.0.0.1:%d", httpsPort),
		"-certs", certs, "-acme-directory", dirURL}
	if apiCA != "" {
		args = append(args, "-acme-ca", apiCA)
	}
	s := &httpsSRP{proc: startSRP(t, append(args, extra...)...), httpPort: httpPort, httpsPort: httpsPort, pidfile: pidfile}
	(&lifeSRP{proc: s.proc, pidfile: pidfile}).waitPID(t, s.cmd.Process.Pid, 30*time.Second)
	t.Cleanup(func() {
		// Stop whichever srp serves (after an upgrade, no child of ours),
		// so its worker does not outlive the test. An idle keep-alive
		// connection (get's) would hold its drain for the grace period.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if pid, err := readPID(pidfile); err == nil && alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			waitGone(t, pid, 30*time.Second)
		}
	})
	return s
}

// plainDo sends one request to srp's plain listener with the given Host,
// without following redirects.
func plainDo(port int, method, host, path string) (*http.Response, string, error) {
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), strings.NewReader("payload"))
	if err != nil {
		return nil, "", err
	}
	req.Host = host
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

func httpsConfig(backend string) string {
	return fmt.Sprintf(`{"Services": {
		"www.srp.test": {"Backends": [%q]},
		"db.internal": {"Backends": [%q]},
		"old.srp.test": {"Redirect": {"URL": "https://www.srp.test"}}
	}, "API": {"Subnet": "127.0.0.0/8"}}`, backend, backend)
}

// issue makes the first HTTPS request for www.srp.test, which waits for the
// certificate, and checks it went through srp to the backend over HTTP/2
// with a certificate that chains to Pebble's root.
func issue(t *testing.T, ca *pebble, s *httpsSRP, be *backend) time.Duration {
	t.Helper()
	start := time.Now()
	resp, err := httpsClient(ca.roots, s.httpsPort).Get("https://www.srp.test/hello?x=1")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("first HTTPS request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "www" {
		t.Fatalf("first HTTPS request: %d %q, want 200 from the backend", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}
	if len(resp.TLS.VerifiedChains) == 0 || resp.TLS.PeerCertificates[0].DNSNames[0] != "www.srp.test" {
		t.Errorf("certificate not verified for www.srp.test: %v", resp.TLS.PeerCertificates[0].DNSNames)
	}
	reqs := be.requests()
	if len(reqs) == 0 {
		t.Fatal("backend saw no request")
	}
	last := reqs[len(reqs)-1]
	if got := last.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto %q, want https", got)
	}
	if last.URL.RequestURI() != "/hello?x=1" || last.Host != "www.srp.test" {
		t.Errorf("backend got %s %s", last.Host, last.URL.RequestURI())
	}
	return took
}

// TestHTTPSTLSALPN01 issues a certificate through TLS-ALPN-01 validated by
// Pebble, then checks the host policy and the TLS defaults on the same srp.
func TestHTTPSTLSALPN01(t *testing.T) {
	httpPort, httpsPort := freePort(t), freePort(t)
	ca := startPebble(t, pebbleOptions{httpPort: httpPort, tlsPort: httpsPort})
	be := newBackend(t, "www", nil)
	s := startHTTPS(t, ca, httpPort, httpsPort, filepath.Join(t.TempDir(), "certs"), httpsConfig(be.addr()))

	took := issue(t, ca, s, be)
	t.Logf("TLS-ALPN-01 issuance and first request: %v", took.Round(time.Millisecond))
	// autocert offers TLS-ALPN-01 and HTTP-01 only; Pebble logs each
	// HTTP-01 attempt, so one real validation without one is TLS-ALPN-01.
	if ca.count("Attempting to validate w/ HTTP") != 0 || ca.count("set INVALID") != 0 || ca.count("Skipping real validation") != 0 {
		t.Error("pebble did not validate by TLS-ALPN-01 alone")
	}
	if ca.count("set VALID") != 1 || ca.orders() != 1 {
		t.Errorf("pebble: %d valid authorizations, %d orders; want 1 and 1", ca.count("set VALID"), ca.orders())
	}
	s.waitLog(`msg="acme: certificate stored"`, 5*time.Second)
	if !strings.Contains(s.out.String(), "host=www.srp.test rsa=false") {
		t.Errorf("srp did not log the stored certificate:\n%s", s.out)
	}
	first, err := handshake(httpsPort, "www.srp.test", ca.roots, nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("host policy", func(t *testing.T) {
		for _, sni := range []string{"evil.srp.test", "db.internal", "127.0.0.1", "srp"} {
			if _, err := handshake(httpsPort, sni, ca.roots, &tls.Config{InsecureSkipVerify: true}); err == nil {
				t.Errorf("handshake with SNI %q succeeded, want refused", sni)
			}
		}
		st, err := handshake(httpsPort, "WWW.Srp.Test", ca.roots, nil)
		if err != nil || serial(st) != serial(first) {
			t.Errorf("SNI in other case: %v, serial %s, want the cached %s", err, serial(st), serial(first))
		}
		if n := ca.orders(); n != 1 {
			t.Errorf("pebble received %d orders, want 1: a refused name reached the CA", n)
		}
		for _, sni := range []string{"proxy.srp.test", "old.srp.test"} {
			st, err := handshake(httpsPort, sni, ca.roots, nil)
			if err != nil || st.PeerCertificates[0].DNSNames[0] != sni {
				t.Errorf("SNI %s (the proxy's own host, a redirect service): %v", sni, err)
			}
		}
		if n := ca.orders(); n != 3 {
			t.Errorf("pebble received %d orders, want 3", n)
		}
	})

	t.Run("TLS defaults", func(t *testing.T) {
		cases := []struct {
			name string
			cfg  *tls.Config
			ok   bool
		}{
			{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
			{"TLS 1.2 CBC only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, false},
			{"TLS 1.2 ECDHE GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
			{"TLS 1.2 ECDHE ChaCha20", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true},
			{"TLS 1.3 h2", &tls.Config{NextProtos: []string{"h2", "http/1.1"}}, true},
		}
		for _, c := range cases {
			_, err := handshake(httpsPort, "www.srp.test", ca.roots, c.cfg)
			if (err == nil) != c.ok {
				t.Errorf("%s: handshake error %v, want success %v", c.name, err, c.ok)
			}
		}
		st, _ := handshake(httpsPort, "www.srp.test", ca.roots, &tls.Config{NextProtos: []string{"h2", "http/1.1"}})
		if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
			t.Errorf("default client got version %x, ALPN %q; want TLS 1.3 and h2", st.Version, st.NegotiatedProtocol)
		}
	})
}

// TestHTTPSHTTP01 makes TLS-ALPN-01 impossible (Pebble validates it on a
// port where nothing listens), so the certificate can only come through
// HTTP-01 on srp's plain listener. Pebble sends "Host: www.srp.test:PORT",
// so this also proves the host policy ignores the port.
func TestHTTPSHTTP01(t *testing.T) {
	httpPort, httpsPort := freePort(t), freePort(t)
	ca := startPebble(t, pebbleOptions{httpPort: httpPort, tlsPort: freePort(t)})
	be := newBackend(t, "www", nil)
	s := startHTTPS(t, ca, httpPort, httpsPort, filepath.Join(t.TempDir(), "certs"), httpsConfig(be.addr()))

	took := issue(t, ca, s, be)
	t.Logf("HTTP-01 issuance (after the failed TLS-ALPN-01 attempt) and first request: %v", took.Round(time.Millisecond))
	want := fmt.Sprintf("Attempting to validate w/ HTTP: http://www.srp.test:%d/.well-known/acme-challenge/", httpPort)
	if ca.count(want) == 0 {
		t.Errorf("pebble log lacks %q", want)
	}
	if ca.count("set VALID") != 1 {
		t.Errorf("pebble: %d valid authorizations, want 1 (by HTTP-01)", ca.count("set VALID"))
	}
	for _, r := range be.requests() {
		if strings.HasPrefix(r.URL.Path, "/.well-known/") {
			t.Errorf("challenge request reached the backend: %s", r.URL)
		}
	}
	// The metrics show the order and the certificate's expiry.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	expiry := regexp.MustCompile(`(?m)^srp_tls_certificate_expiry_timestamp_seconds\{host="www\.srp\.test"\} (\d+)$`).FindSubmatch(metrics)
	if expiry == nil {
		t.Errorf("no certificate expiry for www.srp.test in /metrics:\n%s", metrics)
	} else if at, _ := strconv.ParseInt(string(expiry[1]), 10, 64); at <= time.Now().Unix() {
		t.Errorf("certificate expiry %d is not in the future", at)
	}
	if !regexp.MustCompile(`(?m)^srp_acme_orders_total\{result="ok"\} [1-9]`).Match(metrics) {
		t.Errorf("no successful order counted in /metrics:\n%s", metrics)
	}
}

// TestHTTPSPlainListener checks what the plain listener does in HTTPS mode.
// It needs no CA: nothing here asks for a certificate.
func TestHTTPSPlainListener(t *testing.T) {
	be := newBackend(t, "www", nil)
	s := startHTTPS(t, nil, freePort(t), freePort(t), filepath.Join(t.TempDir(), "certs"), httpsConfig(be.addr()))
	https := fmt.Sprintf("https://www.srp.test:%d", s.httpsPort)

	for _, c := range []struct{ host, path, location string }{
		{"www.srp.test", "/a/b?x=1&y=%2F", https + "/a/b?x=1&y=%2F"},
		{fmt.Sprintf("WWW.srp.test:%d", s.httpPort), "/", https + "/"},
		{"old.srp.test", "/p", fmt.Sprintf("https://old.srp.test:%d/p", s.httpsPort)},
	} {
		code, _, h := get(t, s.httpPort, c.host, c.path)
		if code != http.StatusPermanentRedirect || h.Get("Location") != c.location {
			t.Errorf("GET %s%s: %d Location %q, want 308 to %s", c.host, c.path, code, h.Get("Location"), c.location)
		}
	}
	resp, _, err := plainDo(s.httpPort, "HEAD", "www.srp.test", "/a%20b")
	if err != nil || resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != https+"/a%20b" {
		t.Errorf("HEAD: %v %v, want 308 to %s/a%%20b", err, resp, https)
	}
	for _, method := range []string{"POST", "PUT", "DELETE"} {
		resp, body, err := plainDo(s.httpPort, method, "www.srp.test", "/form")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "HTTPS") || !strings.Contains(body, https+"/form") {
			t.Errorf("%s over plain HTTP: %d %q, want 400 telling to use %s/form", method, resp.StatusCode, body, https)
		}
	}
	if n := len(be.requests()); n != 0 {
		t.Fatalf("backend got %d requests for a service that is HTTPS only", n)
	}

	for _, method := range []string{"GET", "POST"} {
		resp, body, err := plainDo(s.httpPort, method, "db.internal", "/q")
		if err != nil || resp.StatusCode != http.StatusOK || body != "www" {
			t.Fatalf("%s db.internal over plain HTTP: %v %v %q, want proxied", method, err, resp, body)
		}
	}
	reqs := be.requests()
	if len(reqs) != 2 || reqs[1].Method != "POST" || reqs[1].Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("backend requests for db.internal: %d, want GET and POST with X-Forwarded-Proto http", len(reqs))
	}

	resp, body, err := plainDo(s.httpPort, "GET", "127.0.0.1", "/services")
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(body, `"www.srp.test"`) {
		t.Errorf("internal API over plain HTTP: %v %v %q", err, resp, body)
	}

	// HTTP-01 responses come from the certificate manager, never the
	// backend: an unknown token is 404, an unconfigured host 403.
	for _, c := range []struct {
		host string
		code int
	}{
		{fmt.Sprintf("www.srp.test:%d", s.httpPort), http.StatusNotFound},
		{"proxy.srp.test", http.StatusNotFound},
		{"evil.srp.test", http.StatusForbidden},
	} {
		resp, _, err := plainDo(s.httpPort, "GET", c.host, "/.well-known/acme-challenge/unknown-token")
		if err != nil || resp.StatusCode != c.code {
			t.Errorf("challenge for %s: %v %v, want %d", c.host, err, resp, c.code)
		}
	}
	if n := len(be.requests()); n != 2 {
		t.Errorf("backend got %d requests, want only the 2 for db.internal", n)
	}
}

// TestHTTPSCacheSurvivesRestart stops srp after issuance and starts it
// again on the same cache: it serves the same certificate and orders nothing.
func TestHTTPSCacheSurvivesRestart(t *testing.T) {
	httpPort, httpsPort := freePort(t), freePort(t)
	ca := startPebble(t, pebbleOptions{httpPort: httpPort, tlsPort: httpsPort})
	be := newBackend(t, "www", nil)
	certs := filepath.Join(t.TempDir(), "certs")
	config := httpsConfig(be.addr())
	s := startHTTPS(t, ca, httpPort, httpsPort, certs, config)
	issue(t, ca, s, be)
	first, err := handshake(httpsPort, "www.srp.test", ca.roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.waitLog("acme: certificate stored", 5*time.Second)
	if _, err := os.Stat(filepath.Join(certs, "www.srp.test")); err != nil {
		t.Fatalf("certificate not in the cache: %v", err)
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("srp exited %d after SIGTERM", code)
	}

	s2 := startHTTPS(t, ca, httpPort, httpsPort, certs, config)
	st, err := handshake(httpsPort, "www.srp.test", ca.roots, nil)
	if err != nil || serial(st) != serial(first) {
		t.Fatalf("after restart: %v, serial %s, want the cached %s", err, serial(st), serial(first))
	}
	if n := ca.orders(); n != 1 {
		t.Errorf("pebble received %d orders, want 1: the restart ordered again", n)
	}
	if strings.Contains(s2.out.String(), "certificate stored") {
		t.Errorf("restarted srp stored a certificate:\n%s", s2.out)
	}
}
