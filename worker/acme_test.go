package worker

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"srp/registry"
	"srp/scripts/testkit"
)

func TestHostPolicy(t *testing.T) {
	snap, err := registry.Parse("test.json", []byte(`{"Services": {
		"www.example.com": {"Backends": ["10.0.0.1"]},
		"Example.ORG.": {"Redirect": {"URL": "https://www.example.com"}},
		"db.internal": {"Backends": ["10.0.0.2"]},
		"10.0.0.9": {"Backends": ["10.0.0.3"]},
		"[::1]": {"Backends": ["10.0.0.4"]}
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	self, err := ownHost("https://Proxy.Example.com:8443/path")
	if err != nil {
		t.Fatal(err)
	}
	policy := hostPolicy(certHosts(snap, self))
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"www.example.com", true},
		{"WWW.Example.Com", true},
		{"www.example.com:5002", true}, // HTTP-01 validators send the port
		{"www.example.com.", true},
		{"example.org", true},
		{"proxy.example.com", true},
		{"proxy.example.com:443", true},
		{"db.internal", false},
		{"other.internal", false},
		{"10.0.0.9", false},
		{"::1", false},
		{"[::1]:443", false},
		{"example.com", false},
		{"www.example.com.evil.test", false},
		{"evil.test", false},
		{"", false},
	} {
		err := policy(context.Background(), c.host)
		if (err == nil) != c.ok {
			t.Errorf("policy(%q) = %v, want allowed %v", c.host, err, c.ok)
		}
		if err != nil && !errors.Is(err, errNotConfigured) {
			t.Errorf("policy(%q) error %v does not wrap errNotConfigured", c.host, err)
		}
	}
}

func TestOwnHost(t *testing.T) {
	for _, c := range []struct{ url, host, err string }{
		{"https://proxy.example.com", "proxy.example.com", ""},
		{"https://PROXY.example.com:8443/x?y", "proxy.example.com", ""},
		{"http://proxy.example.com", "", "must be an https URL"},
		{"proxy.example.com", "", "must be an https URL"},
		{"https://", "", "must be an https URL"},
		{"https://%zz", "", "invalid URL escape"},
	} {
		host, err := ownHost(c.url)
		if host != c.host || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("ownHost(%q) = %q, %v; want %q, error containing %q", c.url, host, err, c.host, c.err)
		}
	}
}

func TestProbeCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "certs")
	if err := probeCache(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory: %v, mode %v; want created with 0700", err, st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("probe left %d files behind", len(entries))
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{file, filepath.Join(file, "certs")} {
		if err := probeCache(bad); err == nil || !strings.Contains(err.Error(), "certificate cache "+bad) {
			t.Errorf("probeCache(%s) = %v, want an error naming the directory", bad, err)
		}
	}
}

func TestLoadRoots(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(good, selfSignedPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("-----BEGIN NOTHING-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pool, err := loadRoots(good); err != nil || pool == nil {
		t.Errorf("loadRoots(good) = %v, %v", pool, err)
	}
	for file, want := range map[string]string{
		bad:                              "no PEM certificate",
		filepath.Join(dir, "none.pem"):   "no such file",
		filepath.Join(dir, "/dir/x.pem"): "read ACME CA roots",
	} {
		if _, err := loadRoots(file); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("loadRoots(%s) = %v, want error containing %q", file, err, want)
		}
	}
}

func TestRedirectable(t *testing.T) {
	for host, ok := range map[string]bool{
		"www.example.com": true,
		"a_b.example":     true,
		"10.0.0.1":        true,
		"::1":             true,
		"":                false,
		"evil.com/x":      false,
		"evil.com?x":      false,
		"a b":             false,
		"evil.com@x":      false,
	} {
		if redirectable(host) != ok {
			t.Errorf("redirectable(%q) = %v, want %v", host, !ok, ok)
		}
	}
}

func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	cert, _ := testkit.SelfSigned(t, "app.test")
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
}

// A cached certificate's expiry is read from autocert's format: the key,
// then the chain.
func TestLeafExpiry(t *testing.T) {
	cert, _ := testkit.SelfSigned(t, "app.test")
	key, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	data := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: key}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...)
	if got, ok := leafExpiry(data); !ok || !got.Equal(cert.Leaf.NotAfter) {
		t.Errorf("expiry %v %v, want %v", got, ok, cert.Leaf.NotAfter)
	}
	if _, ok := leafExpiry(data[:len(data)/3]); ok {
		t.Error("a cache entry without a certificate gave an expiry")
	}
}
