package main

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timings of the rolling-restart test. HAProxy marks a node down after
// fall failed checks, inter apart; srp's drain delay must outlast that.
const (
	hapInter   = 200 * time.Millisecond
	hapFall    = 2
	hapRise    = 2
	rollDelay  = 2 * time.Second // srp -drain-delay
	rollDrain  = 3 * time.Second // srp -timeout
	rollBudget = 55 * time.Second
)

// rollNode is one srp node behind the balancer: its own copy of the
// binary, port and pidfile, restarted in place.
type rollNode struct {
	name    string
	bin     string
	args    []string // its flags but the pidfile, drain delay and timeout
	pidfile string
	p       *proc // the srp this test started last
}

// newRollNode gives a node its own copy of the binary and a pidfile.
func newRollNode(t *testing.T, name string, args ...string) *rollNode {
	dir := t.TempDir()
	n := &rollNode{name: name, bin: filepath.Join(dir, "srp"), args: args, pidfile: filepath.Join(dir, "srp.pid")}
	installBinary(t, srpBin, n.bin)
	return n
}

func (n *rollNode) start(t *testing.T) {
	t.Helper()
	n.p = startBinary(t, n.bin, append([]string{"-pidfile", n.pidfile,
		"-timeout", rollDrain.String(), "-drain-delay", rollDelay.String()}, n.args...)...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if pid, err := readPID(n.pidfile); err == nil && pid == n.p.cmd.Process.Pid {
			return
		}
		select {
		case <-n.p.done:
			t.Fatalf("%s exited before its pidfile named it:\n%s", n.name, n.p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: pidfile does not name pid %d after 20s:\n%s", n.name, n.p.cmd.Process.Pid, n.p.out.String())
		}
	}
}

// stopUpgraded stops the srp the pidfile names if an upgrade made it one
// this test did not start, and only if it runs this node's binary on this
// node's pidfile.
func (n *rollNode) stopUpgraded(t testing.TB) {
	pid, err := readPID(n.pidfile)
	if err != nil || pid == n.p.cmd.Process.Pid {
		return
	}
	s := &lifeSRP{pidfile: n.pidfile}
	if !s.ours(n.bin, pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	_ = syscall.Kill(pid, syscall.SIGTERM) // a second signal ends the drain delay
	waitGone(t, pid, 20*time.Second)
}

// TestRollingRestartBehindHAProxy restarts, then upgrades, each of three
// srp nodes in turn behind HAProxy in TCP mode, under a load of clients
// that never retry, and requires that no request fails: with -drain-delay
// longer than HAProxy's time to mark a node down, the balancer stops
// sending new connections to a leaving node before it stops accepting,
// and keep-alive connections pinned to it end with Connection: close.
func TestRollingRestartBehindHAProxy(t *testing.T) {
	hapBin := haproxyBin(t)
	lg := newLedger()
	config := appConfig(lg.backend(t, "b1", true), lg.backend(t, "b2", true))
	nodes := make([]*rollNode, 3)
	servers := make([]hapServer, len(nodes))
	for i := range nodes {
		dir := t.TempDir()
		port := freePort(t)
		cfg := filepath.Join(dir, "config.json")
		setConfig(t, cfg, config)
		nodes[i] = newRollNode(t, fmt.Sprintf("n%d", i+1), "-c", cfg, "-p", strconv.Itoa(port))
		servers[i] = hapServer{addr: fmt.Sprintf("127.0.0.1:%d", port), check: port}
	}
	rollingRestart(t, hapBin, nodes, servers, lg, loadOptions{host: "app.test"})
}

// rollingRestart starts nodes behind HAProxy, runs a load through it
// (lo's host and TLS), restarts each node in turn, then upgrades each in
// turn, and requires no failed, lost or duplicated request.
func rollingRestart(t *testing.T, hapBin string, nodes []*rollNode, servers []hapServer, lg *ledger, lo loadOptions) {
	testStart := time.Now()
	for _, n := range nodes {
		n.start(t)
		t.Cleanup(func() { n.stopUpgraded(t) })
	}
	h := startHAProxy(t, hapBin, servers)
	for _, n := range nodes {
		h.waitState(n.name, "UP", 10*time.Second)
	}
	w := h.watch()
	defer func() {
		if w != nil {
			w.end()
		}
	}()

	lo.port, lo.keepAlive, lo.fresh, lo.pause, lo.limit = h.port, 6, 3, 2*time.Millisecond, rollBudget
	l := startLoad(t, lo)
	loadStart := time.Now()

	type phase struct {
		name       string
		ok, failed int64
		took       time.Duration
	}
	var phases []phase
	mark := time.Now()
	okAt, failedAt := int64(0), int64(0)
	endPhase := func(name string) {
		ok, failed := l.ok.Load(), l.failed.Load()
		phases = append(phases, phase{name, ok - okAt, failed - failedAt, time.Since(mark)})
		okAt, failedAt, mark = ok, failed, time.Now()
	}

	l.progress(t, 300)
	endPhase("warm-up")

	for _, n := range nodes {
		n.p.signal(syscall.SIGTERM)
		termAt := time.Now()
		down := h.waitState(n.name, "DOWN", rollDelay)
		if down > rollDelay-500*time.Millisecond {
			t.Errorf("%s: HAProxy took %v to mark it down, too close to the %v drain delay", n.name, down, rollDelay)
		}
		if code := n.p.wait(rollDelay + rollDrain + 5*time.Second); code != 0 {
			t.Fatalf("%s exited %d after SIGTERM:\n%s", n.name, code, n.p.out.String())
		}
		if !strings.Contains(n.p.out.String(), `msg="leaving: /ready answers 503`) {
			t.Errorf("%s never logged that it was leaving", n.name)
		}
		exited := time.Since(termAt)
		n.start(t)
		up := h.waitState(n.name, "UP", 10*time.Second)
		t.Logf("%s: marked down %v after SIGTERM (checks every %v, fall %d), exited after %v (drain delay %v); restarted, up again %v after its pidfile named it",
			n.name, down.Round(time.Millisecond), hapInter, hapFall, exited.Round(time.Millisecond), rollDelay, up.Round(time.Millisecond))
		l.progress(t, 100)
		endPhase("restart " + n.name)
	}

	for i, n := range nodes {
		before := w.downCount(n.name)
		installBinary(t, srpBin, n.bin) // a new release on disk: new inode, same path
		u := &upgrader{t: t, s: &lifeSRP{proc: n.p, pidfile: n.pidfile}, drain: rollDrain}
		u.upgrade(i + 1)
		l.progress(t, 1000) // the load runs on through the new srp
		if st, err := h.states(); err != nil || st[n.name] != "UP" {
			t.Errorf("%s after its upgrade: HAProxy says %v (%v), want UP", n.name, st[n.name], err)
		}
		if d := w.downCount(n.name) - before; d > 0 {
			t.Errorf("HAProxy marked %s down %d times during its upgrade", n.name, d)
		}
		endPhase("upgrade " + n.name)
	}

	ok, failed := l.finish()
	endPhase("tail")
	loadTook := time.Since(loadStart)
	changes := w.end()
	w = nil
	stat, statErr := h.stat()

	for _, p := range phases {
		t.Logf("phase %-11s %6d ok %3d failed in %v", p.name, p.ok, p.failed, p.took.Round(time.Millisecond))
	}
	total, dups := lg.deliveries()
	t.Logf("load: %d requests started, %d ok, %d failed in %v; backends received %d (%v)",
		l.started.Load(), ok, failed, loadTook.Round(time.Millisecond), total, lg.counts())
	if statErr == nil {
		var per []string
		for _, n := range nodes {
			per = append(per, fmt.Sprintf("%s %s connections", n.name, stat[n.name]["stot"]))
		}
		t.Logf("haproxy: %s", strings.Join(per, ", "))
	}
	t.Logf("haproxy state changes: %s", strings.Join(changes, "; "))
	if failed > 0 {
		t.Errorf("%d requests failed:\n%s", failed, l.errors())
	}
	if len(dups) > 0 {
		t.Errorf("%d requests delivered more than once: %v", len(dups), dups[:min(len(dups), 10)])
	}
	if int64(total) != ok {
		t.Errorf("backends received %d requests, clients got %d answers", total, ok)
	}
	if log := h.out.String(); strings.Contains(log, "fe srp/") {
		// With dontlog-normal HAProxy logs only sessions that ended
		// abnormally.
		t.Logf("haproxy logged abnormal sessions:\n%s", log)
	}

	h.stop()
	var wg sync.WaitGroup
	for _, n := range nodes {
		pid, err := readPID(n.pidfile)
		if err != nil {
			t.Errorf("%s: %v", n.name, err)
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		wg.Go(func() {
			time.Sleep(100 * time.Millisecond)
			_ = syscall.Kill(pid, syscall.SIGTERM) // ends the drain delay
		})
	}
	wg.Wait()
	for _, n := range nodes {
		if pid, err := readPID(n.pidfile); err == nil {
			waitGone(t, pid, rollDrain+5*time.Second)
		}
	}
	if took := time.Since(testStart); took > rollBudget {
		t.Errorf("test took %v, over its %v budget", took, rollBudget)
	}
	t.Logf("test took %v", time.Since(testStart).Round(time.Millisecond))
}

// TestFleetRollingRestartBehindHAProxy is the same roll in HTTPS fleet
// mode: three nodes on their own loopback addresses share ACME state
// through etcd, the clients speak TLS through HAProxy in TCP mode, and
// HAProxy checks /ready on each node's plain listener. The first
// handshakes wait for the fleet's one order; restarts and upgrades then
// serve the certificate each node keeps, and never order again.
func TestFleetRollingRestartBehindHAProxy(t *testing.T) {
	hapBin := haproxyBin(t)
	lg := newLedger()
	httpPort, httpsPort := freePort(t), freePort(t)
	etcd := startEtcd(t)
	ca := startPebble(t, pebbleOptions{httpPort: httpPort, tlsPort: httpsPort})
	cfg := filepath.Join(t.TempDir(), "config.json")
	setConfig(t, cfg, appConfig(lg.backend(t, "b1", true), lg.backend(t, "b2", true)))
	nodes := make([]*rollNode, 3)
	servers := make([]hapServer, len(nodes))
	for i := range nodes {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		nodes[i] = newRollNode(t, fmt.Sprintf("n%d", i+1), "-c", cfg, "-url", "https://proxy.srp.test",
			"-http-addr", fmt.Sprintf("%s:%d", ip, httpPort), "-https-addr", fmt.Sprintf("%s:%d", ip, httpsPort),
			"-certs", filepath.Join(t.TempDir(), "certs"), "-acme-directory", ca.dirURL, "-acme-ca", ca.apiCA,
			"-etcd", etcd.Endpoint, "-etcd-ca", etcd.CA, "-etcd-cert", etcd.Cert, "-etcd-key", etcd.Key)
		servers[i] = hapServer{addr: fmt.Sprintf("%s:%d", ip, httpsPort), check: httpPort}
	}
	tc := &tls.Config{RootCAs: ca.roots, ServerName: "app.test", NextProtos: []string{"http/1.1"}}
	rollingRestart(t, hapBin, nodes, servers, lg, loadOptions{host: "app.test", tls: tc})
	if got := ca.issued("app.test"); got != 1 {
		t.Errorf("Pebble issued %d certificates for app.test, want 1 for the whole roll", got)
	}
}
