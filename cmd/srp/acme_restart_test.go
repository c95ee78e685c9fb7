package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHTTPSSlowIssuance holds the first handshake longer than srp's 10s
// read-header timeout, which also bounds TLS handshakes. Pebble validates
// through a proxy that holds each connection 2s, so the authorization is
// still pending when autocert first polls it, and Pebble then tells it to
// poll again only after 13s. The first client must still get its answer on
// its first try.
func TestHTTPSSlowIssuance(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 15s")
	}
	httpPort, httpsPort := freePort(t), freePort(t)
	slow := delayProxy(t, 2*time.Second, fmt.Sprintf("127.0.0.1:%d", httpsPort))
	ca := startPebble(t, pebbleOptions{httpPort: httpPort, tlsPort: slow, authzRetry: 13})
	be := newBackend(t, "www", nil)
	s := startHTTPS(t, ca, httpPort, httpsPort, filepath.Join(t.TempDir(), "certs"), httpsConfig(be.addr()))
	took := issue(t, ca, s, be)
	t.Logf("slow issuance and first request: %v", took.Round(time.Millisecond))
	if took < 10*time.Second {
		t.Fatalf("issuance took %v, under the 10s read-header timeout: the test proved nothing", took)
	}
	if ca.count("Attempting to validate w/ HTTP") != 0 {
		t.Error("pebble fell back to HTTP-01")
	}
}

// delayProxy forwards each connection to target after holding it for
// delay, and returns its port.
func delayProxy(t *testing.T, delay time.Duration, target string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				time.Sleep(delay)
				up, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer up.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				_ = up.SetDeadline(time.Now().Add(30 * time.Second))
				go func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, up)
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// TestHTTPSStartErrors checks that what HTTPS mode needs is checked at
// start, with an error naming the problem.
func TestHTTPSStartErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	notPEM := filepath.Join(dir, "not.pem")
	for _, f := range []string{file, notPEM} {
		if err := os.WriteFile(f, []byte("not a certificate\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := writeConfig(t, httpsConfig("127.0.0.1:9"))
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"cache under a file", []string{"-certs", filepath.Join(file, "certs")}, "certificate cache " + filepath.Join(file, "certs") + " cannot be created"},
		{"cache is a file", []string{"-certs", file}, "certificate cache " + file + " cannot be created"},
		{"CA file missing", []string{"-acme-ca", filepath.Join(dir, "missing.pem")}, "read ACME CA roots: open " + filepath.Join(dir, "missing.pem")},
		{"CA file not PEM", []string{"-acme-ca", notPEM}, "no PEM certificate"},
		{"URL not https", []string{"-url", "http://proxy.srp.test"}, "must be an https URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"-c", config, "-url", "https://proxy.srp.test",
				"-http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
				"-https-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
				"-certs", filepath.Join(t.TempDir(), "certs"), "-acme-directory", "https://127.0.0.1:1/dir"}
			p := startSRP(t, append(args, c.args...)...)
			if code := p.wait(30 * time.Second); code == 0 {
				t.Fatalf("srp exited 0, want a start error")
			}
			if !strings.Contains(p.out.String(), c.want) {
				t.Errorf("output lacks %q:\n%s", c.want, p.out)
			}
		})
	}
}

// TestHTTPSCertificatesSurviveReloadAndUpgrade checks that a new worker (a
// reload) and a new binary (an upgrade) serve the cached certificate
// without ordering it again.
func TestHTTPSCertificatesSurviveReloadAndUpgrade(t *testing.T) {
	httpPort, httpsPort := freePort(t), freePort(t)
	ca := startPebble(t, pebbleOptions{httpPort: httpPort, tlsPort: httpsPort})
	be := newBackend(t, "www", nil)
	s := startHTTPS(t, ca, httpPort, httpsPort, filepath.Join(t.TempDir(), "certs"), httpsConfig(be.addr()))
	issue(t, ca, s, be)
	first, err := handshake(httpsPort, "www.srp.test", ca.roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"reload", "upgrade"} {
		code, out := srpCLI(t, op, "-pidfile", s.pidfile)
		if code != 0 {
			t.Fatalf("srp %s: exit %d: %s", op, code, out)
		}
		st, err := handshake(httpsPort, "www.srp.test", ca.roots, nil)
		if err != nil || serial(st) != serial(first) {
			t.Fatalf("after %s: %v, serial %s, want the cached %s", op, err, serial(st), serial(first))
		}
	}
	if n := ca.orders(); n != 1 {
		t.Errorf("pebble received %d orders, want 1", n)
	}
	if n := s.logCount("acme: certificate stored"); n != 1 {
		t.Errorf("srp stored %d certificates, want 1:\n%s", n, s.out)
	}
	if n := s.logCount(`msg="acme: https mode"`); n != 3 {
		t.Errorf("%d workers started in HTTPS mode, want 3 (start, reload, upgrade):\n%s", n, s.out)
	}
}

// TestHTTPSCacheNotWritable starts srp with a cache directory that exists
// but that it may not write to. root may write anywhere, so as root srp
// runs as nobody, as a production srp would not run as root either.
func TestHTTPSCacheNotWritable(t *testing.T) {
	// t.TempDir's parents are private to root; nobody needs to reach these.
	dir, err := os.MkdirTemp("", "srp-cache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	certs := filepath.Join(dir, "certs")
	bin := filepath.Join(dir, "srp")
	installBinary(t, srpBin, bin)
	config := filepath.Join(dir, "config.json")
	setConfig(t, config, httpsConfig("127.0.0.1:9"))
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{certs, 0o555}, {dir, 0o755}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-c", config, "-url", "https://proxy.srp.test",
		"-http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"-https-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"-certs", certs, "-acme-directory", "https://127.0.0.1:1/dir")
	cmd.Dir = dir
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("srp did not exit with an unwritable cache:\n%s", out)
	}
	if err == nil {
		t.Fatalf("srp exited 0 with an unwritable cache:\n%s", out)
	}
	if want := "certificate cache " + certs + " is not writable"; !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}
