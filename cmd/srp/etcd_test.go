package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"srp/scripts/testkit"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdBin finds the etcd server at $ETCD_BIN or on PATH (see
// testkit.Server).
func etcdBin(t testing.TB) string {
	t.Helper()
	return testkit.Server(t, "scripts/test builds it, or set $ETCD_BIN", os.Getenv("ETCD_BIN"), "etcd")
}

// etcdServer is a single-member etcd cluster on loopback for one test. It
// serves clients over TLS only to holders of a certificate from its own
// throwaway CA, as a production cluster shared by srp nodes would. Its data
// dir and ports outlive stop, so start brings back the same cluster with
// its keys, and a test can take etcd away from srp and give it back.
type etcdServer struct {
	Endpoint string // https://127.0.0.1:PORT
	// PEM files for srp's -etcd-ca, -etcd-cert and -etcd-key: the CA that
	// signed the server's certificate, and a client certificate and key.
	CA, Cert, Key string

	t     testing.TB
	bin   string
	args  []string
	dir   string
	roots *x509.CertPool
	out   *testkit.Buffer // etcd's log, across restarts
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
}

// etcdStartTimeout bounds how long etcd may take to answer. A single
// member elects itself at once; the rest is slack for a loaded machine.
const etcdStartTimeout = 30 * time.Second

func startEtcd(t testing.TB) *etcdServer {
	t.Helper()
	bin := etcdBin(t)
	dir := t.TempDir()
	e := &etcdServer{t: t, bin: bin, dir: dir, out: &testkit.Buffer{}}
	e.writePKI()

	clientPort, peerPort := freePort(t), freePort(t)
	e.Endpoint = fmt.Sprintf("https://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	e.args = []string{
		"--name", "srp-test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", e.Endpoint, "--advertise-client-urls", e.Endpoint,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "srp-test=" + peer,
		"--client-cert-auth", "--trusted-ca-file", e.CA,
		"--cert-file", filepath.Join(dir, "server.pem"), "--key-file", filepath.Join(dir, "server-key.pem"),
		// Warnings still name refused clients; info would bury a failed
		// test's log in routine chatter.
		"--log-level", "warn",
		// A single member still waits out an election timeout before it
		// leads; etcd's default of 1s would add that to every start.
		"--heartbeat-interval", "10", "--election-timeout", "100",
	}
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("etcd output:\n%s", e.out)
		}
	})
	e.start()
	return e
}

// writePKI writes a throwaway CA, the server's certificate for 127.0.0.1
// and a client certificate into the server's dir, so each test's
// cluster trusts no other test's clients.
func (e *etcdServer) writePKI() {
	t := e.t
	t.Helper()
	caKey, caDER := newCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "srp test etcd CA"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, nil)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	e.roots.AddCert(ca)
	e.CA = filepath.Join(e.dir, "ca.pem")
	writePEMFile(t, e.CA, "CERTIFICATE", caDER)

	serverKey, serverDER := newCert(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		// etcd's own HTTP gateway dials its gRPC server with this
		// certificate as a client, which client-cert-auth checks too.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	writePEMFile(t, filepath.Join(e.dir, "server.pem"), "CERTIFICATE", serverDER)
	writeKeyFile(t, filepath.Join(e.dir, "server-key.pem"), serverKey)

	clientKey, clientDER := newCert(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "srp"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	e.Cert, e.Key = filepath.Join(e.dir, "client.pem"), filepath.Join(e.dir, "client-key.pem")
	writePEMFile(t, e.Cert, "CERTIFICATE", clientDER)
	writeKeyFile(t, e.Key, clientKey)
}

// newCert makes a P-256 key and a certificate for it from tmpl, valid from
// an hour ago (for clock skew) for a day, signed by parent, or by itself
// when parent is nil.
func newCert(t testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func writePEMFile(t testing.TB, path, blockType string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKeyFile(t testing.TB, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, path, "PRIVATE KEY", der)
}

// start runs etcd on the same data dir and ports as before and waits until
// it serves a read.
func (e *etcdServer) start() {
	t := e.t
	t.Helper()
	if e.running() {
		t.Fatal("etcd: start while running")
	}
	cmd := exec.Command(e.bin, e.args...)
	// etcd takes any ETCD_* variable as a flag, $ETCD_BIN included: the
	// command line alone configures it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = e.out, e.out
	cmd.Dir = e.dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	e.cmd, e.done = cmd, done

	// gRPC backs off a second after a refused dial, so the client waits
	// for the port to accept first.
	addr := strings.TrimPrefix(e.Endpoint, "https://")
	deadline := time.Now().Add(etcdStartTimeout)
	var last error
	ready := testkit.WaitFor(etcdStartTimeout, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		last = err
		return err == nil || !e.running()
	})
	probe, err := e.newClient(e.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	ready = ready && testkit.WaitFor(time.Until(deadline), func() bool {
		if !e.running() {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, last = probe.Get(ctx, "probe")
		return last == nil
	})
	if !e.running() {
		t.Fatalf("etcd exited while starting: %v", cmd.ProcessState)
	}
	if !ready {
		t.Fatalf("etcd did not answer within %v: %v", etcdStartTimeout, last)
	}
}

func (e *etcdServer) running() bool {
	if e.done == nil {
		return false
	}
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

// stop ends etcd by its PID: SIGTERM, its graceful stop, then a kill if
// it lingers.
func (e *etcdServer) stop() {
	if !e.running() {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// clientTLS is what srp presents with -etcd-ca, -etcd-cert and -etcd-key.
func (e *etcdServer) clientTLS() *tls.Config {
	e.t.Helper()
	cert, err := tls.LoadX509KeyPair(e.Cert, e.Key)
	if err != nil {
		e.t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: e.roots}
}

func (e *etcdServer) newClient(cfg *tls.Config) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{e.Endpoint},
		TLS:         cfg,
		DialTimeout: 5 * time.Second,
		// The client's own logger would write to the test's stderr.
		Logger: zap.NewNop(),
	})
}

// client connects to etcd as srp does, with the client certificate, until
// the test ends. It does not wait for a connection: calls fail while etcd
// is stopped and work again once it is back.
func (e *etcdServer) client(t testing.TB) *clientv3.Client {
	t.Helper()
	return e.dial(t, e.clientTLS())
}

func (e *etcdServer) dial(t testing.TB, cfg *tls.Config) *clientv3.Client {
	t.Helper()
	c, err := e.newClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestEtcdHarness(t *testing.T) {
	begin := time.Now()
	e := startEtcd(t)
	t.Logf("etcd answered %v after start", time.Since(begin).Round(time.Millisecond))
	c := e.client(t)
	call := func(c *clientv3.Client, d time.Duration, f func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return f(ctx)
	}
	get := func(c *clientv3.Client, d time.Duration) (string, error) {
		var value string
		err := call(c, d, func(ctx context.Context) error {
			resp, err := c.Get(ctx, "srp/harness")
			if err == nil && len(resp.Kvs) == 1 {
				value = string(resp.Kvs[0].Value)
			}
			return err
		})
		return value, err
	}

	if err := call(c, 5*time.Second, func(ctx context.Context) error {
		_, err := c.Put(ctx, "srp/harness", "kept")
		return err
	}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if v, err := get(c, 5*time.Second); err != nil || v != "kept" {
		t.Fatalf("get = %q, %v; want kept", v, err)
	}

	anonymous := e.dial(t, &tls.Config{RootCAs: e.roots})
	if v, err := get(anonymous, time.Second); err == nil {
		t.Fatalf("client without a certificate read %q", v)
	}
	// Refused for the missing certificate, not for anything else.
	if !testkit.WaitFor(5*time.Second, func() bool { return e.out.Count("client didn't provide a certificate") > 0 }) {
		t.Fatal("etcd logged no refusal of the client without a certificate")
	}

	e.stop()
	begin = time.Now()
	if v, err := get(c, 2*time.Second); err == nil {
		t.Fatalf("stopped etcd answered %q", v)
	}
	if d := time.Since(begin); d > 2500*time.Millisecond {
		t.Fatalf("get on stopped etcd took %v, want its 2s timeout", d)
	}

	begin = time.Now()
	e.start()
	t.Logf("etcd answered %v after restart", time.Since(begin).Round(time.Millisecond))
	// The first client, left from before the stop, reconnects by itself.
	begin = time.Now()
	var v string
	var err error
	if !testkit.WaitFor(etcdStartTimeout, func() bool {
		v, err = get(c, time.Second)
		return err == nil
	}) {
		t.Fatalf("first client did not reach restarted etcd: %v", err)
	}
	t.Logf("first client read again %v after restart", time.Since(begin).Round(time.Millisecond))
	if v != "kept" {
		t.Fatalf("after restart get = %q, want kept", v)
	}
}
