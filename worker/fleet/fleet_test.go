package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"srp/scripts/testkit"
)

// certPEM returns a self-signed certificate for name in autocert's cache
// format: the key, then the certificate.
func certPEM(t *testing.T, name string, notBefore, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
}

func TestParseCert(t *testing.T) {
	now := time.Now()
	good := certPEM(t, "a.test", now.Add(-time.Hour), now.Add(time.Hour))
	other := certPEM(t, "a.test", now.Add(-time.Hour), now.Add(time.Hour))
	key, _ := pem.Decode(good)
	_, otherChain := pem.Decode(other)
	mismatched := append(pem.EncodeToMemory(key), otherChain...)
	tests := []struct {
		name string
		data []byte
		host string
		ok   bool
	}{
		{"good", good, "a.test", true},
		{"another name", good, "b.test", false},
		{"expired", certPEM(t, "a.test", now.Add(-2*time.Hour), now.Add(-time.Hour)), "a.test", false},
		{"key of another certificate", mismatched, "a.test", false},
		{"no key", otherChain, "a.test", false},
		{"garbage", []byte("not PEM"), "a.test", false},
		{"truncated", good[:len(good)-40], "a.test", false},
	}
	for _, tt := range tests {
		c, err := parseCert(tt.host, tt.data, now)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err == nil && c.Leaf == nil {
			t.Errorf("%s: no leaf", tt.name)
		}
	}
}

func TestDue(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		left time.Duration
		due  bool
	}{{61 * 24 * time.Hour, false}, {31 * 24 * time.Hour, false}, {29 * 24 * time.Hour, true}, {time.Hour, true}} {
		c, err := parseCert("a.test", certPEM(t, "a.test", now.Add(tt.left-90*24*time.Hour), now.Add(tt.left)), now)
		if err != nil {
			t.Fatal(err)
		}
		if got := due(c, now); got != tt.due {
			t.Errorf("%v of 90 days left: due %v, want %v", tt.left, got, tt.due)
		}
	}
}

// openUnreachable opens a fleet whose etcd never answers: a port on
// loopback that accepts nothing.
func openUnreachable(t *testing.T, dir string, hosts ...string) (*Fleet, *testkit.Buffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	out := &testkit.Buffer{}
	f, err := Open(Options{Endpoints: []string{"http://" + addr}, Prefix: "/t/", Dir: dir, Hosts: hosts,
		Client: &acme.Client{HTTPClient: &http.Client{Transport: refuse{}}}, Log: slog.New(slog.NewTextHandler(out, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f, out
}

// A name this node holds is served from memory: etcd down costs its
// handshakes nothing, even once it is due and its renewal fails.
func TestHeldNameNeedsNoStore(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	for name, left := range map[string]time.Duration{"fresh.test": 80 * 24 * time.Hour, "due.test": 10 * 24 * time.Hour} {
		if err := os.WriteFile(filepath.Join(dir, name), certPEM(t, name, now.Add(left-90*24*time.Hour), now.Add(left)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, out := openUnreachable(t, dir, "fresh.test", "due.test")
	for range 3 {
		for _, name := range []string{"fresh.test", "due.test"} {
			start := time.Now()
			c, err := f.Certificate(context.Background(), name)
			if err != nil || c.Leaf.DNSNames[0] != name {
				t.Fatalf("%s: %v", name, err)
			}
			if took := time.Since(start); took > 50*time.Millisecond {
				t.Errorf("%s held, took %v", name, took)
			}
		}
	}
	// The renewal of due.test runs in the background and meets the fault.
	if !testkit.WaitFor(10*time.Second, func() bool { return out.Count(`msg="acme: store unavailable" host=due.test`) > 0 }) {
		t.Errorf("due.test's renewal never reported the store fault:\n%s", out)
	}
	if n := out.Count("host=fresh.test"); n != 0 {
		t.Errorf("fresh.test, not due, touched the store:\n%s", out)
	}
}

// A name nobody holds needs the store: with etcd down its handshake fails
// within the store timeout, says why, and the next handshakes get the
// same answer at once rather than each waiting again.
func TestNewNameFailsFastWithoutStore(t *testing.T) {
	f, out := openUnreachable(t, t.TempDir())
	start := time.Now()
	_, err := f.Certificate(context.Background(), "new.test")
	took := time.Since(start)
	if !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("err = %v, want ErrStoreUnavailable", err)
	}
	if took > storeTimeout+time.Second {
		t.Errorf("failed after %v, want within the %v store timeout", took, storeTimeout)
	}
	start = time.Now()
	if _, err2 := f.Certificate(context.Background(), "new.test"); !errors.Is(err2, ErrStoreUnavailable) || time.Since(start) > 50*time.Millisecond {
		t.Errorf("second handshake: %v after %v, want the same fault at once", err2, time.Since(start))
	}
	if n := out.Count(`msg="acme: store unavailable" host=new.test`); n != 1 {
		t.Errorf("logged the fault %d times, want once:\n%s", n, out)
	}
}

// A handshake that gives up does not stop the obtain others wait on.
func TestCertificateWaitIsBoundedByTheHandshake(t *testing.T) {
	f, _ := openUnreachable(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.Certificate(ctx, "new.test")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("err = %v after %v, want the handshake's deadline", err, time.Since(start))
	}
}

func TestGate(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	g := &gate{next: http.DefaultTransport}
	c := &http.Client{Transport: g}
	if resp, err := c.Get("http://" + ln.Addr().String()); err != nil {
		t.Fatalf("open gate: %v", err)
	} else {
		resp.Body.Close()
	}
	first := errors.New("token not stored")
	if got := g.close(first); got != nil {
		t.Errorf("first close returned %v", got)
	}
	if got := g.close(errors.New("order finished")); got != first {
		t.Errorf("second close returned %v, want the first reason", got)
	}
	if _, err := c.Get("http://" + ln.Addr().String()); !errors.Is(err, first) {
		t.Errorf("closed gate: %v, want %v", err, first)
	}
}

// A handshake for a held name never waits behind a call to etcd, even the
// one that makes this node's lease.
func TestHeldNameNotBehindLease(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "held.test"), certPEM(t, "held.test", now.Add(-time.Hour), now.Add(80*24*time.Hour)), 0o600); err != nil {
		t.Fatal(err)
	}
	f, _ := openUnreachable(t, dir, "held.test")
	granting := make(chan struct{})
	go func() {
		close(granting)
		_, _ = f.lease(context.Background()) // waits the store timeout for an unreachable etcd
	}()
	<-granting
	time.Sleep(100 * time.Millisecond) // into the grant
	start := time.Now()
	if _, err := f.Certificate(context.Background(), "held.test"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("held name took %v while the lease was being granted", took)
	}
}
