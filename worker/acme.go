package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"srp/registry"
)

// ACME turns on HTTPS mode: certificates for every service host and the
// proxy's own host come from an ACME CA through autocert, the TLS listener
// serves them, and the plain listener answers challenges and sends clients
// to HTTPS.
type ACME struct {
	URL       string // the proxy's own https URL; required. Its host gets a certificate too
	CacheDir  string // certificate cache, created if missing; required
	Directory string // ACME directory URL; "" means Let's Encrypt production
	CAFile    string // PEM roots trusted for the ACME server; "" means the system roots
	Email     string // account contact; "" registers without one
	Etcd      *Etcd  // fleet mode: ACME state shared through etcd; nil keeps it on this node
}

// errNotConfigured refuses a name before anything is sent to the CA.
var errNotConfigured = errors.New("host not configured for HTTPS")

// httpsMode is what HTTPS mode adds to a worker: the TLS config of the HTTPS
// listener and the handler of the plain one.
type httpsMode struct {
	tls   *tls.Config
	plain http.Handler
	close func() // after the drain
}

// newHTTPSMode checks everything HTTPS mode needs before the worker serves,
// so a bad CA file or an unwritable cache stops the start with a clear
// error instead of failing the first handshake.
func newHTTPSMode(o Options, rt *router) (*httpsMode, error) {
	a := o.ACME
	self, err := ownHost(a.URL)
	if err != nil {
		return nil, err
	}
	if a.CacheDir == "" {
		return nil, errors.New("certificate cache directory is required")
	}
	if err := probeCache(a.CacheDir); err != nil {
		return nil, err
	}
	roots, err := loadRoots(a.CAFile)
	if err != nil {
		return nil, err
	}
	hosts := certHosts(o.Snapshot, self)
	if !hosts[self] {
		o.Logger.Warn("acme: the proxy's own host gets no certificate: IP addresses and *.internal names are never sent to the CA", "host", self)
	}
	dir := a.Directory
	if dir == "" {
		dir = autocert.DefaultACMEDirectory
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	client := &acme.Client{
		DirectoryURL: dir,
		UserAgent:    "srp",
		HTTPClient:   &http.Client{Timeout: acmeHTTPTimeout, Transport: transport},
	}
	src, err := newCertSource(o, rt, hosts, client)
	if err != nil {
		return nil, err
	}
	g := &certGetter{get: src.get, hosts: hosts, log: o.Logger, rest: readHeaderTimeout,
		failed: func() { rt.metrics.ACMEOrder(false) }}
	rt.metrics.SetCertExpiry(certExpiry(autocert.DirCache(a.CacheDir), hosts))
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// TLS 1.2 is limited to forward-secret AEAD suites; TLS 1.3's are all fine.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		// acme-tls/1 must be offered, or every TLS-ALPN-01 validation fails
		// and counts against the CA's failed-validation limit.
		NextProtos:     []string{"h2", "http/1.1", acme.ALPNProto},
		GetCertificate: g.getCertificate,
	}
	o.Logger.Info("acme: https mode", "directory", dir, "cache", a.CacheDir, "hosts", strings.Join(slices.Sorted(maps.Keys(hosts)), ","))
	p := &plainHTTPS{rt: rt, httpsPort: listenerPort(o.HTTPS)}
	p.challenges = src.m.HTTPHandler(http.HandlerFunc(p.toHTTPS))
	return &httpsMode{tls: tc, plain: p, close: src.close}, nil
}

// ownHost returns the normalized host of the proxy's own URL.
func ownHost(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("proxy URL %q: %w", raw, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("proxy URL %q: must be an https URL such as https://proxy.example.com", raw)
	}
	host := registry.NormalizeHost(u.Host)
	if host == "" {
		return "", fmt.Errorf("proxy URL %q: invalid host", raw)
	}
	return host, nil
}

// probeCache creates the cache directory and writes a file into it, so a
// cache that cannot be used fails now rather than at the first issuance,
// when autocert would keep the certificate in memory only.
func probeCache(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certificate cache %s cannot be created: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("certificate cache %s is not writable: %w", dir, err)
	}
	_, werr := f.WriteString("srp")
	cerr := f.Close()
	rerr := os.Remove(f.Name())
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("certificate cache %s is not writable: %w", dir, err)
	}
	return nil
}

// loadRoots reads the roots trusted for the ACME server. Without a file it
// loads the system roots now, while the worker may still read them.
func loadRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("load system roots for the ACME server: %w", err)
		}
		return pool, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read ACME CA roots: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("read ACME CA roots %s: no PEM certificate in the file", file)
	}
	return pool, nil
}

// certHosts lists the names srp may ask the CA for: every service host and
// the proxy's own, but never an IP address (no certificate for it) or a
// *.internal name (served in plain HTTP only).
func certHosts(snap *registry.Snapshot, self string) map[string]bool {
	hosts := map[string]bool{}
	add := func(h string) {
		if h != "" && !internalHost(h) && !isIP(h) {
			hosts[h] = true
		}
	}
	for _, svc := range snap.Services() {
		add(svc.Host)
	}
	add(self)
	return hosts
}

// hostPolicy allows hosts only. It normalizes first: HTTP-01 validators
// send "Host: name:port", and SNI may differ in case or end in a dot.
func hostPolicy(hosts map[string]bool) autocert.HostPolicy {
	return func(_ context.Context, host string) error {
		if !hosts[registry.NormalizeHost(host)] {
			return fmt.Errorf("%w: %q", errNotConfigured, host)
		}
		return nil
	}
}

// internalHost reports whether a normalized host is under .internal, which
// is private by definition and never gets a public certificate.
func internalHost(host string) bool {
	return host == "internal" || strings.HasSuffix(host, ".internal")
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// certGetter wraps autocert's GetCertificate for the HTTPS listener.
type certGetter struct {
	get    func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	hosts  map[string]bool
	log    *slog.Logger
	failed func()        // no certificate for a configured name: its order failed
	rest   time.Duration // the rest of the handshake, once the certificate is there
}

// getCertificate lets a first handshake wait for its certificate. The
// HTTPS listener gives the whole handshake the read-header timeout, and an issuance
// can outlast it (seconds with Let's Encrypt; autocert allows 5 minutes):
// the server's hello would then miss the deadline and the client get a
// closed connection although the certificate came. Nothing is read or
// written while the certificate is awaited, so the deadline is set anew
// once it is there, for the rest of the handshake. A client that sends no
// hello is still cut at the read-header timeout, and the listener clears
// the deadline after the handshake.
func (g *certGetter) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	start := time.Now()
	cert, err := g.get(hello)
	if hello.Conn != nil {
		_ = hello.Conn.SetDeadline(time.Now().Add(g.rest))
	}
	if err != nil {
		// Unknown names are the client's mistake or a scan: not worth a warning.
		level := slog.LevelDebug
		if g.hosts[registry.NormalizeHost(hello.ServerName)] && !errors.Is(err, errNotConfigured) {
			level = slog.LevelWarn
			g.failed()
		}
		g.log.Log(context.Background(), level, "acme: no certificate for handshake", "sni", hello.ServerName, "took", time.Since(start).Round(time.Millisecond).String(), "err", err)
	}
	return cert, err
}

// loggedCache logs what the operator must know about the certificate cache:
// a certificate stored, and above all a write that failed, since autocert
// then serves the certificate from memory and loses it on restart.
type loggedCache struct {
	autocert.Cache
	log    *slog.Logger
	issued func() // a certificate was stored: an order succeeded
}

func (c *loggedCache) Put(ctx context.Context, key string, data []byte) error {
	err := c.Cache.Put(ctx, key, data)
	if err != nil {
		c.log.Error("acme: certificate cache write failed", "key", key, "err", err)
		return err
	}
	// Keys: "acme_account+key", "HOST", "HOST+rsa", "HOST+token", "TOKEN+http-01".
	if host, kind, _ := strings.Cut(key, "+"); kind == "" || kind == "rsa" {
		c.log.Info("acme: certificate stored", "host", host, "rsa", kind == "rsa")
		c.issued()
	}
	return nil
}

// plainHTTPS serves the plain listener in HTTPS mode.
type plainHTTPS struct {
	rt         *router
	challenges http.Handler // autocert's HTTP-01 responder, falling back to toHTTPS
	httpsPort  string       // "" when it is 443
}

func (p *plainHTTPS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := registry.NormalizeHost(r.Host)
	if internalHost(host) || p.rt.snap.Lookup(r.Host) == nil && (p.rt.api.Match(r) || r.URL.Path == ReadyPath) {
		p.rt.ServeHTTP(w, r)
		return
	}
	if p.rt.draining.Load() && r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	p.challenges.ServeHTTP(w, r)
}

// toHTTPS sends a plain-HTTP client to the same URL over HTTPS. Only GET
// and HEAD are redirected: a client would resend any other request over
// plain HTTP first, body included, so it is refused instead.
func (p *plainHTTPS) toHTTPS(w http.ResponseWriter, r *http.Request) {
	host := registry.NormalizeHost(r.Host)
	if !redirectable(host) {
		http.Error(w, "missing or invalid Host header", http.StatusBadRequest)
		return
	}
	if p.httpsPort != "" {
		host = net.JoinHostPort(host, p.httpsPort)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	target := (&url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}).String()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		http.Redirect(w, r, target, http.StatusPermanentRedirect)
	default:
		http.Error(w, "this site is served over HTTPS only: send the request to "+target, http.StatusBadRequest)
	}
}

// redirectable reports whether a normalized Host may go into a Location
// header: a DNS name or an IP address, nothing else.
func redirectable(host string) bool {
	if host == "" {
		return false
	}
	if isIP(host) {
		return true
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// listenerPort is the TCP port ln serves, or "" for 443, which URLs leave out.
func listenerPort(ln net.Listener) string {
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil || port == "443" {
		return ""
	}
	return port
}
