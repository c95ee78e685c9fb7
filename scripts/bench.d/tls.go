package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// cert writes one self-signed ECDSA P-256 certificate for name, in the
// forms the servers read: cert.pem and key.pem (nginx, Caddy, the Go
// baseline), haproxy.pem (certificate then key, HAProxy's crt file) and
// srp-certs/NAME (key then chain, the autocert cache srp's -certs reads, so
// srp serves it without asking an ACME server).
func cert(args []string) error {
	fs := flag.NewFlagSet("cert", flag.ExitOnError)
	dir := fs.String("dir", ".", "output `directory`")
	name := fs.String("name", "bench.test", "DNS `name` the certificate is for")
	_ = fs.Parse(args)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: *name},
		DNSNames:     []string{*name},
		// A year: autocert renews 30 days before the end, and must not try.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := os.MkdirAll(filepath.Join(*dir, "srp-certs"), 0o700); err != nil {
		return err
	}
	files := map[string][]byte{
		"cert.pem":                        certPEM,
		"key.pem":                         keyPEM,
		"haproxy.pem":                     slices.Concat(certPEM, keyPEM),
		filepath.Join("srp-certs", *name): slices.Concat(keyPEM, certPEM),
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(*dir, f), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// tlsload opens a new TLS connection per request from c concurrent
// clients for a duration: dial, handshake, one HTTP/1.1 GET with
// "Connection: close", read the whole answer, close. With -resume each
// client keeps the session ticket of its last connection and offers it on
// the next (TLS 1.3 PSK with a fresh key exchange, as browsers do); it
// prints how many connections offered a ticket and how many of those the
// server actually resumed, so a server that ignores tickets, or sends none,
// shows. Latency runs from the dial to the answer's last byte, handshake
// included. The key share is X25519's alone, as with the OpenSSL clients,
// so every server does the same key exchange. It prints
//
//	requests N seconds S rps R p50_us P p99_us P errors E offered K resumed M
func tlsload(args []string) error {
	fs := flag.NewFlagSet("tlsload", flag.ExitOnError)
	addr := fs.String("addr", "", "server `address` to dial")
	name := fs.String("name", "bench.test", "server name: SNI and Host header")
	path := fs.String("path", "/64", "request path")
	conns := fs.Int("c", 64, "concurrent clients")
	dur := fs.Duration("d", 5*time.Second, "how long to run")
	resume := fs.Bool("resume", false, "offer the last session ticket on each new connection")
	_ = fs.Parse(args)
	req := "GET " + *path + " HTTP/1.1\r\nHost: " + *name + "\r\nConnection: close\r\n\r\n"
	type result struct {
		lat           []time.Duration
		errs, resumed int
		firstErr      error
		cache         *countingCache
	}
	results := make([]result, *conns)
	start := time.Now()
	// Clients start no request past the end, and finish the one under way.
	end := start.Add(*dur)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			r := &results[i]
			cfg := clientTLS(*name)
			cfg.NextProtos = []string{"http/1.1"}
			if *resume {
				r.cache = &countingCache{ClientSessionCache: tls.NewLRUClientSessionCache(1)}
				cfg.ClientSessionCache = r.cache
			}
			for time.Now().Before(end) {
				t0 := time.Now()
				didResume, err := fetchOnce(*addr, cfg, req)
				if err != nil {
					r.errs++
					if r.firstErr == nil {
						r.firstErr = err
					}
					continue
				}
				r.lat = append(r.lat, time.Since(t0))
				if didResume {
					r.resumed++
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var lat []time.Duration
	var errs, resumed, offered int
	var firstErr error
	for _, r := range results {
		lat = append(lat, r.lat...)
		errs += r.errs
		resumed += r.resumed
		if r.cache != nil {
			offered += r.cache.offered
		}
		if firstErr == nil {
			firstErr = r.firstErr
		}
	}
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "bench.d: tlsload: first error:", firstErr)
	}
	if len(lat) == 0 {
		return errors.New("tlsload: no request completed")
	}
	slices.Sort(lat)
	pct := func(p float64) int64 { return lat[int(p*float64(len(lat)-1))].Microseconds() }
	fmt.Printf("requests %d seconds %.2f rps %.1f p50_us %d p99_us %d errors %d offered %d resumed %d\n", len(lat),
		elapsed.Seconds(), float64(len(lat))/elapsed.Seconds(), pct(0.50), pct(0.99), errs, offered, resumed)
	return nil
}

// countingCache counts the handshakes that found a session to offer. Each
// client has its own and handshakes one connection at a time.
type countingCache struct {
	tls.ClientSessionCache
	offered int
}

func (c *countingCache) Get(key string) (*tls.ClientSessionState, bool) {
	s, ok := c.ClientSessionCache.Get(key)
	if ok {
		c.offered++
	}
	return s, ok
}

// fetchOnce does one request on a new TLS connection and reports whether
// the handshake resumed a session.
func fetchOnce(addr string, cfg *tls.Config, req string) (bool, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, err
	}
	c := tls.Client(raw, cfg)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return false, err
	}
	if _, err := io.WriteString(c, req); err != nil {
		return false, err
	}
	// Reading the answer also takes in the server's session tickets, which
	// TLS 1.3 sends after the handshake.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return c.ConnectionState().DidResume, err
}

// openIdleTLS opens an HTTPS connection to addr for name and has one GET
// of path answered on it, over HTTP/1.1 or HTTP/2, for bench.d idle.
func openIdleTLS(addr, name, path string, h2 bool) (io.Closer, error) {
	var protos http.Protocols
	protos.SetHTTP1(!h2)
	protos.SetHTTP2(h2)
	tr := &http.Transport{Protocols: &protos, TLSClientConfig: clientTLS(name)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := tr.NewClientConn(ctx, "https", addr)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+name+path, nil)
	if err != nil {
		return cc, err
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return cc, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
	case resp.StatusCode != 200 || resp.Close:
		err = fmt.Errorf("status %d, close %v", resp.StatusCode, resp.Close)
	case resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2]:
		err = fmt.Errorf("answered over %s", resp.Proto)
	}
	return cc, err
}

// clientTLS is the bench clients' TLS setup for the server name.
func clientTLS(name string) *tls.Config {
	return &tls.Config{
		ServerName: name,
		// The certificate is self-signed; the handshake still checks the
		// server's signature with its key, which is the cost that counts.
		InsecureSkipVerify: true,
		// A key share for X25519 only, as OpenSSL's clients send; P-256
		// is listed too, or autocert (srp) takes the client for one
		// without ECDSA and looks for an RSA certificate.
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
	}
}
