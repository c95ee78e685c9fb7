package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// resumed makes one HTTPS request for www.srp.test on a new connection,
// with cache holding the client's session tickets, and reports whether
// the TLS session was resumed. Reading the answer also reads the tickets
// TLS 1.3 sends after the handshake.
func resumed(t *testing.T, port int, roots *x509.CertPool, cache tls.ClientSessionCache) bool {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", port),
		&tls.Config{ServerName: "www.srp.test", RootCAs: roots, ClientSessionCache: cache})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: www.srp.test\r\nConnection: close\r\n\r\n")
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("HTTPS request: %v", err)
	}
	return c.ConnectionState().DidResume
}

// TestTLSResumptionAcrossReloadAndUpgrade checks that a client resumes its
// TLS session with a new worker after a reload and with a new binary after
// an upgrade: the session-ticket keys belong to the supervisor and are
// handed to every worker and to the next binary.
func TestTLSResumptionAcrossReloadAndUpgrade(t *testing.T) {
	httpPort, httpsPort := freePort(t), freePort(t)
	ca := startPebble(t, pebbleOptions{httpPort: httpPort, tlsPort: httpsPort})
	be := newBackend(t, "www", nil)
	s := startHTTPS(t, ca, httpPort, httpsPort, filepath.Join(t.TempDir(), "certs"), httpsConfig(be.addr()), "-timeout", "3s")
	issue(t, ca, s, be)

	cache := tls.NewLRUClientSessionCache(16)
	if resumed(t, httpsPort, ca.roots, cache) {
		t.Fatal("first connection resumed a session it never had")
	}
	if !resumed(t, httpsPort, ca.roots, cache) {
		t.Fatal("no resumption even with the same worker")
	}

	if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
		t.Fatalf("srp reload: %d %s", code, out)
	}
	// Only the new worker accepts once the old one logged its exit.
	s.waitLog(`msg="worker exited"`, 10*time.Second)
	if !resumed(t, httpsPort, ca.roots, cache) {
		t.Error("TLS session not resumed by the worker started by a reload")
	}

	oldPID := s.cmd.Process.Pid
	if code, out := srpCLI(t, "upgrade", "-pidfile", s.pidfile); code != 0 {
		t.Fatalf("srp upgrade: %d %s", code, out)
	}
	waitGone(t, oldPID, 10*time.Second)
	if !resumed(t, httpsPort, ca.roots, cache) {
		t.Error("TLS session not resumed by the binary started by an upgrade")
	}
}
