package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"srp/scripts/testkit"
	"strings"
	"sync"
	"testing"
	"time"
)

// pebble is Let's Encrypt's test CA and its mock DNS server, run on
// loopback for one test. Pebble keeps everything in memory: each instance
// has a new issuing root and knows no account or order.
type pebble struct {
	dirURL  string          // ACME directory, for -acme-directory
	apiCA   string          // PEM file of the API listener's certificate, for -acme-ca
	roots   *x509.CertPool  // Pebble's issuing root: what srp's certificates chain to
	out     *testkit.Buffer // Pebble's log
	mgmtURL string          // Pebble's management API (HTTPS, apiCA)
	dnsMgmt string          // pebble-challtestsrv's management API (HTTP)

	t    testing.TB
	api  *http.Client // trusts apiCA
	mu   sync.Mutex   // guards sans
	sans map[string][]string
}

type pebbleOptions struct {
	httpPort, tlsPort int // where Pebble validates HTTP-01 and TLS-ALPN-01
	authzRetry        int // Retry-After (s) on a pending authorization; 0 means 1
	// Lifetime of the certificates Pebble issues, in whole seconds; 0
	// means 90 days. Pebble 2.10.1 takes it from the profile's
	// validityPeriod only: the top-level certificateValidityPeriod is
	// still parsed but nothing reads it. Pebble does not backdate:
	// NotBefore is the second of issuance and NotAfter validity-1s later
	// (ca/ca.go, newCertificate), so a renewal test waits from issuance.
	validity time.Duration
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

	// Every A query is answered with 127.0.0.1, unless pointA says
	// otherwise for a name, and AAAA gets nothing, so Pebble dials srp on
	// the IPv4 loopback.
	dnsPort, dnsMgmtPort := freePort(t), freePort(t)
	startTool(t, dnsBin, nil, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-management", fmt.Sprintf("127.0.0.1:%d", dnsMgmtPort),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", dnsPort))
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", dnsMgmtPort))

	validity := uint64(7776000)
	if o.validity != 0 {
		if o.validity < time.Second || o.validity%time.Second != 0 {
			t.Fatalf("pebble validity %v: Pebble counts whole seconds", o.validity)
		}
		validity = uint64(o.validity / time.Second)
	}
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
		"profiles": map[string]any{"default": map[string]any{"description": "tests", "validityPeriod": validity}},
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
		dirURL:  fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort),
		apiCA:   certFile,
		out:     startTool(t, caBin, env, "-config", cfgFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort)),
		mgmtURL: fmt.Sprintf("https://127.0.0.1:%d", mgmtPort),
		dnsMgmt: fmt.Sprintf("http://127.0.0.1:%d", dnsMgmtPort),
		t:       t,
		sans:    map[string][]string{},
	}

	api := x509.NewCertPool()
	pemData, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	api.AppendCertsFromPEM(pemData)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: api}}}
	p.api = c
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
	status, root, err := fetch(c, p.mgmtURL+"/roots/0")
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

// pointA makes the mock DNS answer A queries for host with ip alone, so
// Pebble validates host at ip: its VA dials the first address the DNS
// gives, for HTTP-01 (redirects included) and TLS-ALPN-01 alike (va/va.go,
// resolveIP), not 127.0.0.1 regardless. Other names keep 127.0.0.1.
func (p *pebble) pointA(t testing.TB, host, ip string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	// add-a appends to the name's addresses; clearing first replaces them.
	for _, call := range []struct {
		path string
		body map[string]any
	}{
		{"/clear-a", map[string]any{"host": host}},
		{"/add-a", map[string]any{"host": host, "addresses": []string{ip}}},
	} {
		body, err := json.Marshal(call.body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Post(p.dnsMgmt+call.path, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatalf("mock DNS %s: %v", call.path, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("mock DNS %s %s: %s %s", call.path, body, resp.Status, msg)
		}
	}
}

// issuedRE matches the line Pebble logs once a certificate is signed and
// stored (ca/ca.go, CompleteOrder). It names the serial and the order but
// no host.
var issuedRE = regexp.MustCompile(`Issued certificate serial ([0-9a-f]+) for order`)

// issued is how many certificates Pebble has issued that name any of
// hosts, or all it has issued when no host is given. Its log names no
// host, so each serial's certificate is fetched once from Pebble's
// management API.
func (p *pebble) issued(hosts ...string) int {
	p.t.Helper()
	n := 0
	for _, m := range issuedRE.FindAllStringSubmatch(p.out.String(), -1) {
		if len(hosts) == 0 || slices.ContainsFunc(p.certNames(m[1]), func(name string) bool {
			return slices.ContainsFunc(hosts, func(h string) bool { return strings.EqualFold(h, name) })
		}) {
			n++
		}
	}
	return n
}

// certNames returns the DNS and IP names of the certificate with the
// given hex serial, revoked ones included. A failed lookup fails the test
// by Errorf, which any goroutine may call, and names nothing.
func (p *pebble) certNames(serial string) []string {
	p.mu.Lock()
	names, ok := p.sans[serial]
	p.mu.Unlock()
	if ok {
		return names
	}
	status, body, err := fetch(p.api, p.mgmtURL+"/cert-status-by-serial/"+serial)
	if err != nil || status != http.StatusOK {
		p.t.Errorf("pebble certificate %s: %d %v %s", serial, status, err, body)
		return nil
	}
	var st struct{ Certificate string }
	if err := json.Unmarshal(body, &st); err != nil {
		p.t.Errorf("pebble certificate %s: %v", serial, err)
		return nil
	}
	block, _ := pem.Decode([]byte(st.Certificate))
	if block == nil {
		p.t.Errorf("pebble certificate %s is not PEM: %s", serial, body)
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		p.t.Errorf("pebble certificate %s: %v", serial, err)
		return nil
	}
	names = append([]string{}, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	p.mu.Lock()
	p.sans[serial] = names
	p.mu.Unlock()
	return names
}

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
