package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"srp/scripts/testkit"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// srpFleet is a fleet of srp nodes for one test: each node on its own
// loopback address (127.0.0.1, .2, ...) with the ports they all share,
// one etcd server over TLS with client certificates, one Pebble.
type srpFleet struct {
	t                   *testing.T
	etcd                *etcdServer
	ca                  *pebble
	httpPort, httpsPort int
	config              string
	nodes               []*fleetNode
}

type fleetNode struct {
	*httpsSRP
	name  string
	ip    string
	certs string
	args  []string
}

// fleetConfig is every node's config: two names to order, and the proxy's
// own, all on one backend.
func fleetConfig(backend string) string {
	return fmt.Sprintf(`{"Services": {
		"www.srp.test": {"Backends": [%q]},
		"new.srp.test": {"Backends": [%q]}
	}, "API": {"Subnet": "127.0.0.0/8"}}`, backend, backend)
}

// newSRPFleet starts etcd, Pebble (whose options pebbleOpts makes from
// the nodes' plain and HTTPS ports) and n nodes, each waited for until its
// pidfile names it.
func newSRPFleet(t *testing.T, n int, pebbleOpts func(httpPort, httpsPort int) pebbleOptions, extra ...string) *srpFleet {
	t.Helper()
	f := &srpFleet{t: t, httpPort: freePort(t), httpsPort: freePort(t)}
	f.etcd = startEtcd(t)
	f.ca = startPebble(t, pebbleOpts(f.httpPort, f.httpsPort))
	be := newBackend(t, "www", nil)
	f.config = fleetConfig(be.addr())
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		node := &fleetNode{name: fmt.Sprintf("n%d", i+1), ip: ip, certs: filepath.Join(t.TempDir(), "certs")}
		node.args = append([]string{
			"-http-addr", fmt.Sprintf("%s:%d", ip, f.httpPort),
			"-https-addr", fmt.Sprintf("%s:%d", ip, f.httpsPort),
			"-etcd", f.etcd.Endpoint, "-etcd-prefix", "/fleet-test/",
			"-etcd-ca", f.etcd.CA, "-etcd-cert", f.etcd.Cert, "-etcd-key", f.etcd.Key,
		}, extra...)
		f.nodes = append(f.nodes, node)
		f.start(node)
	}
	return f
}

// start starts node, or starts it again after it stopped.
func (f *srpFleet) start(n *fleetNode) {
	f.t.Helper()
	n.httpsSRP = startHTTPS(f.t, f.ca, f.httpPort, f.httpsPort, n.certs, f.config, n.args...)
}

// get sends one HTTPS request for host to node n and returns the status
// and the serial of the certificate n served.
func (f *srpFleet) get(n *fleetNode, host string, timeout time.Duration) (int, string, error) {
	addr := fmt.Sprintf("%s:%d", n.ip, f.httpsPort)
	c := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: f.ca.roots},
			ForceAttemptHTTP2: true,
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
	}
	resp, err := c.Get("https://" + host + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

// mustGet is get, failing the test unless the backend answered.
func (f *srpFleet) mustGet(n *fleetNode, host string) string {
	f.t.Helper()
	code, serial, err := f.get(n, host, 90*time.Second)
	if err != nil || code != http.StatusOK {
		f.t.Fatalf("%s: GET https://%s/: %d %v\n%s", n.name, host, code, err, n.out.String())
	}
	return serial
}

// orders counts the orders the nodes placed.
func (f *srpFleet) orders() (total int, by []string) {
	for _, n := range f.nodes {
		if c := n.logCount(`msg="acme: ordering"`); c > 0 {
			total += c
			by = append(by, fmt.Sprintf("%s:%d", n.name, c))
		}
	}
	return total, by
}

// checkStore reads every entry the fleet stored and requires each
// certificate to parse, match its key and name its host, and the account
// key to parse.
func (f *srpFleet) checkStore() {
	f.t.Helper()
	cli := f.etcd.client(f.t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/fleet-test/acme/", clientv3.WithPrefix())
	if err != nil {
		f.t.Fatalf("read the store: %v", err)
	}
	certs := 0
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), "/fleet-test/acme/")
		switch {
		case name == "acme_account+key":
			if b, _ := pem.Decode(kv.Value); b == nil || !strings.Contains(b.Type, "PRIVATE KEY") {
				f.t.Errorf("stored account key is not a PEM private key")
			}
		case strings.Contains(name, "+"):
			// a challenge answer, left only by an order in flight
		default:
			certs++
			key, chain := pem.Decode(kv.Value)
			if key == nil {
				f.t.Errorf("%s: stored entry has no key", name)
				continue
			}
			c, err := tls.X509KeyPair(chain, kv.Value[:len(kv.Value)-len(chain)])
			if err != nil {
				f.t.Errorf("%s: stored certificate does not parse or match its key: %v", name, err)
				continue
			}
			if err := c.Leaf.VerifyHostname(name); err != nil {
				f.t.Errorf("%s: stored certificate: %v", name, err)
			}
			inter := x509.NewCertPool()
			for _, der := range c.Certificate[1:] {
				if ic, err := x509.ParseCertificate(der); err == nil {
					inter.AddCert(ic)
				}
			}
			if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: f.ca.roots, Intermediates: inter, DNSName: name}); err != nil {
				f.t.Errorf("%s: stored certificate does not chain to Pebble's root: %v", name, err)
			}
		}
	}
	if certs == 0 {
		f.t.Error("the store holds no certificate")
	}
}

func defaultPebble(httpPort, httpsPort int) pebbleOptions {
	return pebbleOptions{httpPort: httpPort, tlsPort: httpsPort}
}

// TestFleetOneOrder asks all three nodes for a new name at the same
// instant: one order for the fleet, one certificate, served by all.
func TestFleetOneOrder(t *testing.T) {
	f := newSRPFleet(t, 3, defaultPebble)
	serials := make([]string, len(f.nodes))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, n := range f.nodes {
		wg.Go(func() {
			<-start
			code, serial, err := f.get(n, "www.srp.test", 90*time.Second)
			if err != nil || code != http.StatusOK {
				t.Errorf("%s: %d %v", n.name, code, err)
			}
			serials[i] = serial
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, s := range serials {
		if s != serials[0] {
			t.Errorf("%s serves serial %s, %s serves %s", f.nodes[i].name, s, f.nodes[0].name, serials[0])
		}
	}
	if got := f.ca.issued("www.srp.test"); got != 1 {
		t.Errorf("Pebble issued %d certificates, want 1", got)
	}
	if total, by := f.orders(); total != 1 {
		t.Errorf("nodes placed %d orders (%v), want 1", total, by)
	}
	waited := 0
	for _, n := range f.nodes {
		waited += n.logCount(`msg="acme: certificate loaded from the fleet"`)
	}
	if waited != 2 {
		t.Errorf("%d nodes loaded the certificate from the fleet, want the 2 that did not order", waited)
	}
	f.checkStore()
}

// TestFleetValidationOnAnotherNode has node 1 order a name that the CA's
// DNS points at node 2: the validation reaches node 2, which never saw
// the order, and succeeds through the challenge answer in etcd. Node 1
// listens on 127.0.0.1 only, so it cannot have answered.
func TestFleetValidationOnAnotherNode(t *testing.T) {
	for _, challenge := range []string{"tls-alpn-01", "http-01"} {
		t.Run(challenge, func(t *testing.T) {
			f := newSRPFleet(t, 2, func(httpPort, httpsPort int) pebbleOptions {
				o := defaultPebble(httpPort, httpsPort)
				if challenge == "http-01" {
					// Nothing listens there: TLS-ALPN-01 fails first, and
					// autocert goes on with HTTP-01.
					o.tlsPort = freePort(t)
				}
				return o
			})
			f.ca.pointA(t, "www.srp.test", f.nodes[1].ip)
			serial := f.mustGet(f.nodes[0], "www.srp.test")
			if got := f.nodes[0].logCount(`msg="acme: ordering"`); got != 1 {
				t.Errorf("node 1 placed %d orders, want 1", got)
			}
			if got := f.nodes[1].logCount(`msg="acme: ordering"`); got != 0 {
				t.Errorf("node 2 placed %d orders, want none", got)
			}
			httpTries := f.ca.count("Attempting to validate w/ HTTP")
			if want := challenge == "http-01"; (httpTries > 0) != want {
				t.Errorf("Pebble validated with HTTP-01 %d times; want HTTP-01 used: %v", httpTries, want)
			}
			if challenge == "http-01" && !strings.Contains(f.ca.out.String(), fmt.Sprintf("http://www.srp.test:%d/.well-known/acme-challenge/", f.httpPort)) {
				t.Error("Pebble's HTTP-01 validation went elsewhere")
			}
			if got := f.mustGet(f.nodes[1], "www.srp.test"); got != serial {
				t.Errorf("node 2 serves serial %s, node 1 %s", got, serial)
			}
			if got := f.ca.issued("www.srp.test"); got != 1 {
				t.Errorf("Pebble issued %d certificates, want 1", got)
			}
		})
	}
}

// TestFleetRenewal gives certificates a short life: the fleet renews each
// name once, and every node serves the renewed certificate.
func TestFleetRenewal(t *testing.T) {
	const life = 30 * time.Second // renewed with a third left: after 20s
	f := newSRPFleet(t, 3, func(httpPort, httpsPort int) pebbleOptions {
		o := defaultPebble(httpPort, httpsPort)
		o.validity = life
		return o
	})
	first := f.mustGet(f.nodes[0], "www.srp.test")
	issuedAt := time.Now()
	for _, n := range f.nodes[1:] {
		if got := f.mustGet(n, "www.srp.test"); got != first {
			t.Fatalf("%s serves %s, want %s", n.name, got, first)
		}
	}
	// Every node must serve a new certificate before the first expires,
	// and the next renewal is due 20s after this one.
	renewed := map[string]string{}
	ok := testkit.WaitFor(life, func() bool {
		for _, n := range f.nodes {
			if _, done := renewed[n.name]; done {
				continue
			}
			if code, s, err := f.get(n, "www.srp.test", 5*time.Second); err == nil && code == http.StatusOK && s != first {
				renewed[n.name] = s
			}
		}
		return len(renewed) == len(f.nodes)
	})
	took := time.Since(issuedAt)
	if !ok {
		t.Fatalf("after %v only %v serve a renewed certificate", took.Round(time.Millisecond), renewed)
	}
	t.Logf("all nodes serve the renewed certificate %v after the first issuance", took.Round(time.Millisecond))
	for name, s := range renewed {
		if s != renewed[f.nodes[0].name] {
			t.Errorf("%s serves %s, %s serves %s", name, s, f.nodes[0].name, renewed[f.nodes[0].name])
		}
	}
	if got := f.ca.issued("www.srp.test"); got != 2 {
		t.Errorf("Pebble issued %d certificates, want 2: one order and one renewal for the fleet", got)
	}
	if total, by := f.orders(); total != 2 {
		t.Errorf("nodes placed %d orders (%v), want 2", total, by)
	}
	f.checkStore()
}

// TestFleetStoreDown stops etcd: every node keeps serving the name it
// holds, a node reloaded or restarted meanwhile serves it from its own copy, a new
// name fails fast and says why, and succeeds once etcd is back.
func TestFleetStoreDown(t *testing.T) {
	f := newSRPFleet(t, 3, defaultPebble)
	serial := f.mustGet(f.nodes[0], "www.srp.test")
	for _, n := range f.nodes[1:] {
		f.mustGet(n, "www.srp.test")
	}
	f.etcd.stop()

	for _, n := range f.nodes {
		start := time.Now()
		if got := f.mustGet(n, "www.srp.test"); got != serial {
			t.Errorf("%s serves %s with etcd down, want %s", n.name, got, serial)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: a held name took %v with etcd down", n.name, took)
		}
	}

	// A reload starts a worker that cannot reach etcd either.
	if code, out := srpCLI(t, "reload", "-pidfile", f.nodes[0].pidfile); code != 0 {
		t.Fatalf("reload with etcd down: exit %d: %s", code, out)
	}
	if got := f.mustGet(f.nodes[0], "www.srp.test"); got != serial {
		t.Errorf("reloaded %s serves %s with etcd down, want %s", f.nodes[0].name, got, serial)
	}

	restarted := f.nodes[1]
	restarted.signal(syscall.SIGTERM)
	if code := restarted.wait(30 * time.Second); code != 0 {
		t.Fatalf("%s exited %d", restarted.name, code)
	}
	f.start(restarted)
	if got := f.mustGet(restarted, "www.srp.test"); got != serial {
		t.Errorf("restarted %s serves %s with etcd down, want %s from its own copy", restarted.name, got, serial)
	}

	n := f.nodes[2]
	start := time.Now()
	if code, _, err := f.get(n, "new.srp.test", 30*time.Second); err == nil {
		t.Fatalf("new name with etcd down: %d, want a failed handshake", code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("new name with etcd down failed after %v, want fast", took)
	}
	n.waitLog(`msg="acme: store unavailable"`, 5*time.Second)
	if !regexp.MustCompile(`msg="acme: store unavailable" .*host=new.srp.test err="store unavailable: `).MatchString(n.out.String()) {
		t.Errorf("the store fault's log line names no host or reason:\n%s", n.out.String())
	}
	if got := f.ca.orders(); got != 1 {
		t.Errorf("Pebble received %d orders, want 1: none while etcd was down", got)
	}

	f.etcd.start()
	var last error
	if !testkit.WaitFor(40*time.Second, func() bool {
		code, _, err := f.get(n, "new.srp.test", 30*time.Second)
		last = err
		return err == nil && code == http.StatusOK
	}) {
		t.Fatalf("new name once etcd is back: %v\n%s", last, n.out.String())
	}
	f.checkStore()
}

// TestFleetLockHolderKilled kills the worker that holds a name's lock in
// the middle of its order: the next node waits for the lease to end,
// orders, and the store holds nothing corrupt.
func TestFleetLockHolderKilled(t *testing.T) {
	var slow int
	f := newSRPFleet(t, 2, func(httpPort, httpsPort int) pebbleOptions {
		// Validation is held 2s and the authorization polled again only
		// after 13s: orders take long enough to kill one in the middle.
		slow = delayProxy(t, 2*time.Second, fmt.Sprintf("127.0.0.1:%d", httpsPort))
		return pebbleOptions{httpPort: httpPort, tlsPort: slow, authzRetry: 13}
	})
	holder, next := f.nodes[0], f.nodes[1]
	go func() { _, _, _ = f.get(holder, "www.srp.test", 60*time.Second) }()
	holder.waitLog(`msg="acme: ordering"`, 30*time.Second)
	time.Sleep(500 * time.Millisecond) // into the order: account and authorization

	done := make(chan error, 1)
	go func() {
		code, _, err := f.get(next, "www.srp.test", 120*time.Second)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		done <- err
	}()
	time.Sleep(time.Second) // next now waits on the lock
	workers := children(holder.cmd.Process.Pid)
	if len(workers) != 1 {
		t.Fatalf("holder has %d worker processes, want 1", len(workers))
	}
	killed := time.Now()
	for pid := range workers {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("next node: %v\n%s", err, next.out.String())
		}
	case <-time.After(150 * time.Second):
		t.Fatalf("next node never got the certificate:\n%s", next.out.String())
	}
	took := time.Since(killed)
	t.Logf("next node served the name %v after the holder was killed", took.Round(time.Millisecond))
	if took < 9*time.Second {
		t.Errorf("next node finished %v after the kill, before the holder's 10s lease could end", took)
	}
	if got := next.logCount(`msg="acme: ordering"`); got != 1 {
		t.Errorf("next node placed %d orders, want 1", got)
	}
	f.checkStore()
}

// TestFleetFlags: fleet flags that cannot work stop srp at once, exit 1,
// naming the problem; an unreadable etcd file stops the first worker.
func TestFleetFlags(t *testing.T) {
	config := writeConfig(t, fleetConfig("127.0.0.1:9"))
	certs := filepath.Join(t.TempDir(), "certs")
	https := []string{"-url", "https://proxy.srp.test", "-certs", certs,
		"-http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "-https-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-etcd", "https://127.0.0.1:2379"}, "needs HTTPS mode: set -url too"},
		{[]string{"-etcd-ca", "ca.pem"}, "-etcd-ca is set without -etcd"},
		{append([]string{"-etcd", "127.0.0.1:2379"}, https...), `"127.0.0.1:2379" is not an http:// or https:// URL`},
		{append([]string{"-etcd", "https://127.0.0.1:2379", "-etcd-cert", "c.pem"}, https...), "-etcd-cert and -etcd-key go together"},
		{append([]string{"-etcd", "https://127.0.0.1:2379", "-etcd-prefix", ""}, https...), "-etcd-prefix must not be empty"},
		{append([]string{"-etcd", "https://127.0.0.1:2379", "-etcd-ca", filepath.Join(t.TempDir(), "missing.pem")}, https...), "read etcd CA roots"},
	} {
		code, out, errOut := runCLI(t, 30*time.Second, append([]string{"-c", config}, tt.args...)...)
		if code != 1 || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("srp %v: exit %d, output %q, want 1 and %q", tt.args, code, out+errOut, tt.want)
		}
	}
}

// TestFleetFailedOrderOnce has every validation fail: the three nodes
// asking at once cost the CA one failed attempt for the fleet, not one per
// node, and the name's handshakes fail on every node.
func TestFleetFailedOrderOnce(t *testing.T) {
	f := newSRPFleet(t, 3, func(int, int) pebbleOptions {
		// Nothing listens on either port: both challenge types fail.
		return pebbleOptions{httpPort: freePort(t), tlsPort: freePort(t)}
	})
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range f.nodes {
		wg.Go(func() {
			<-start
			if code, _, err := f.get(n, "www.srp.test", 90*time.Second); err == nil {
				t.Errorf("%s: %d, want a failed handshake", n.name, code)
			}
		})
	}
	close(start)
	wg.Wait()
	// One attempt of autocert's is three orders: TLS-ALPN-01, HTTP-01,
	// and a last one in which no challenge type is left to try.
	if got := f.ca.orders(); got != 3 {
		t.Errorf("Pebble received %d orders, want 3: one attempt for the fleet", got)
	}
	if total, by := f.orders(); total != 1 {
		t.Errorf("nodes placed %d orders (%v), want 1", total, by)
	}
	// The client sees its handshake fail before the node logs why.
	told := 0
	testkit.WaitFor(5*time.Second, func() bool {
		told = 0
		for _, n := range f.nodes {
			told += n.logCount("failed on another node")
		}
		return told >= 2
	})
	if told != 2 {
		t.Errorf("%d nodes were told of the other node's failure, want 2", told)
	}
}
