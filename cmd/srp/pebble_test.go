package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"srp/scripts/testkit"
	"strings"
	"testing"
	"time"
)

// pebble is Let's Encrypt's test CA and its mock DNS server, run on
// loopback for one test. Pebble keeps everything in memory: each instance
// has a new issuing root and knows no account or order.
type pebble struct {
	dirURL string          // ACME directory, for -acme-directory
	apiCA  string          // PEM file of the API listener's certificate, for -acme-ca
	roots  *x509.CertPool  // Pebble's issuing root: what srp's certificates chain to
	out    *testkit.Buffer // Pebble's log
}

type pebbleOptions struct {
	httpPort, tlsPort int // where Pebble validates HTTP-01 and TLS-ALPN-01
	authzRetry        int // Retry-After (s) on a pending authorization; 0 means 1
}

// pebbleBins finds pebble and pebble-challtestsrv in $PEBBLE_BIN_DIR or
// on PATH (see testkit.Server).
func pebbleBins(t *testing.T) (ca, dns string) {
	t.Helper()
	const install = "scripts/test installs them, or set $PEBBLE_BIN_DIR"
	in := func(name string) string {
		if dir := os.Getenv("PEBBLE_BIN_DIR"); dir != "" {
			return filepath.Join(dir, name)
		}
		return ""
	}
	return testkit.Server(t, install, in("pebble"), "pebble"),
		testkit.Server(t, install, in("pebble-challtestsrv"), "pebble-challtestsrv")
}

func startPebble(t *testing.T, o pebbleOptions) *pebble {
	t.Helper()
	caBin, dnsBin := pebbleBins(t)
	dir := t.TempDir()
	// A throwaway CA certificate for 127.0.0.1 serves Pebble's API, so
	// the tests depend on no certificate that expires.
	apiCert, _ := testkit.SelfSigned(t)
	certFile, keyFile := testkit.WritePEM(t, apiCert, dir)

	// Every A query is answered with 127.0.0.1 and AAAA gets nothing, so
	// Pebble dials srp on the IPv4 loopback.
	dnsPort := freePort(t)
	startTool(t, dnsBin, nil, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", dnsPort))

	acmePort, mgmtPort := freePort(t), freePort(t)
	retry := max(o.authzRetry, 1)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       o.httpPort,
		"tlsPort":                        o.tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": retry, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		// One profile only: with several, Pebble picks one at random per order.
		"profiles": map[string]any{"default": map[string]any{"description": "tests", "validityPeriod": 7776000}},
	}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}
	p := &pebble{
		dirURL: fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort),
		apiCA:  certFile,
		out:    startTool(t, caBin, env, "-config", cfgFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort)),
	}

	api := x509.NewCertPool()
	pemData, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	api.AppendCertsFromPEM(pemData)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: api}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, err := fetch(c, p.dirURL)
		if err == nil && status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble directory did not answer: %v; log:\n%s", err, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	status, root, err := fetch(c, fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
	if err != nil || status != http.StatusOK {
		t.Fatalf("pebble root: %d %v", status, err)
	}
	p.roots = x509.NewCertPool()
	if !p.roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble root is not PEM:\n%s", root)
	}
	return p
}

// count returns how often substr appears in Pebble's log.
func (p *pebble) count(substr string) int { return strings.Count(p.out.String(), substr) }

// orders is how many certificate orders Pebble has received.
func (p *pebble) orders() int { return p.count("Added order") }

// startTool runs a helper program until the test ends, and shows its
// output if the test failed.
func startTool(t *testing.T, bin string, env []string, args ...string) *testkit.Buffer {
	t.Helper()
	out := &testkit.Buffer{}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out)
		}
	})
	return out
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fetch(c *http.Client, url string) (int, []byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// httpsClient talks to srp's HTTPS listener on 127.0.0.1 whatever the URL's
// host, so the URL's host is the SNI and the Host header, and it trusts
// only the given roots. It never follows redirects.
func httpsClient(roots *x509.CertPool, port int) *http.Client {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return &http.Client{
		Timeout: 60 * time.Second, // the first request waits for issuance
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true,
			DisableKeepAlives: true, // leave no connection to hold srp's drain at the end
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// handshake opens a TLS connection to srp with the given SNI and returns
// its state. cfg may set versions and suites; RootCAs and ServerName are
// filled in.
func handshake(port int, sni string, roots *x509.CertPool, cfg *tls.Config) (tls.ConnectionState, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	cfg.ServerName, cfg.RootCAs = sni, roots
	d := &net.Dialer{Timeout: 60 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", port), cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// serial is the hex serial of the leaf certificate a connection got.
func serial(st tls.ConnectionState) string {
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].SerialNumber.Text(16)
}
