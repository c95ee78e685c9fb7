package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"srp/scripts/testkit"
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

// haproxyBin finds haproxy on PATH or in /usr/sbin. Without it the test is
// skipped, except under CI, where a skipped test would hide a missing
// install step.
func haproxyBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if p, err := exec.LookPath("/usr/sbin/haproxy"); err == nil {
		return p
	}
	msg := "haproxy not found on PATH or in /usr/sbin"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// haproxy is an HAProxy run on loopback for one test, in TCP mode with an
// HTTP health check on each srp node's /ready. It never retries a
// connection a node refused ("retries 0"), so a node that stops accepting
// while HAProxy still sends it new connections fails clients' requests:
// only the drain delay keeps that from happening.
type haproxy struct {
	t      testing.TB
	port   int
	sock   string // admin stats socket
	config string
	cmd    *exec.Cmd
	out    *testkit.Buffer
	done   chan struct{}
}

func startHAProxy(t *testing.T, bin string, nodes []int) *haproxy {
	t.Helper()
	dir := t.TempDir()
	h := &haproxy{t: t, port: freePort(t), sock: filepath.Join(dir, "admin.sock"), out: &testkit.Buffer{}, done: make(chan struct{})}
	var servers strings.Builder
	for i, port := range nodes {
		fmt.Fprintf(&servers, "    server n%d 127.0.0.1:%d check inter %dms fall %d rise %d\n", i+1, port, hapInter.Milliseconds(), hapFall, hapRise)
	}
	h.config = fmt.Sprintf(`global
    log stderr format raw local0 info
    stats socket %s mode 600 level admin
    stats timeout 5s
    maxconn 4096

defaults
    mode tcp
    log global
    option tcplog
    option dontlog-normal
    retries 0
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 1s

frontend fe
    bind 127.0.0.1:%d
    default_backend srp

backend srp
    balance roundrobin
    option httpchk
    http-check send meth GET uri /ready ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
%s`, h.sock, h.port, servers.String())
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(h.config), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, h.config)
	}
	h.cmd = exec.Command(bin, "-db", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	h.cmd.Dir = dir
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	go func() {
		_ = h.cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", h.out.String())
		}
	})
	if !testkit.WaitFor(10*time.Second, func() bool { _, err := h.states(); return err == nil }) {
		t.Fatalf("haproxy stats socket not answering within 10s:\n%s", h.out.String())
	}
	return h
}

// stop ends HAProxy by its PID: a hard stop, then a kill if it lingers.
func (h *haproxy) stop() {
	select {
	case <-h.done:
		return
	default:
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}

// stat runs "show stat" on the stats socket and returns the srp backend's
// server rows, each as column name → value.
func (h *haproxy) stat() (map[string]map[string]string, error) {
	c, err := net.DialTimeout("unix", h.sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(b), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("show stat: %v: %q", err, b)
	}
	out := map[string]map[string]string{}
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, name := range rows[0] {
			if i < len(row) {
				m[name] = row[i]
			}
		}
		if m["pxname"] == "srp" && m["svname"] != "BACKEND" {
			out[m["svname"]] = m
		}
	}
	return out, nil
}

// states returns each server's check status: UP, DOWN, "UP 1/2"...
func (h *haproxy) states() (map[string]string, error) {
	st, err := h.stat()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, m := range st {
		out[name] = m["status"]
	}
	return out, nil
}

// waitState waits until server name has status want and returns how long
// that took.
func (h *haproxy) waitState(name, want string, d time.Duration) time.Duration {
	h.t.Helper()
	start := time.Now()
	var last map[string]string
	for time.Since(start) < d {
		st, err := h.states()
		if err == nil && st[name] == want {
			return time.Since(start)
		}
		last = st
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("haproxy: %s not %s within %v (states %v)", name, want, d, last)
	return 0
}

// watchStates polls the servers' states until stop is closed and records
// every change, so a test can tell when HAProxy took a node out.
type stateWatch struct {
	mu      sync.Mutex
	changes []string
	downs   map[string]int // server → times seen fully DOWN
	stop    chan struct{}
	done    chan struct{}
}

func (h *haproxy) watch() *stateWatch {
	w := &stateWatch{downs: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := map[string]string{}
		start := time.Now()
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			st, err := h.states()
			if err != nil {
				continue
			}
			w.mu.Lock()
			for name, s := range st {
				if last[name] != s {
					w.changes = append(w.changes, fmt.Sprintf("%.2fs %s %s", time.Since(start).Seconds(), name, s))
					if s == "DOWN" {
						w.downs[name]++
					}
					last[name] = s
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// downCount returns how often server name went fully DOWN so far.
func (w *stateWatch) downCount(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.downs[name]
}

func (w *stateWatch) end() []string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changes
}

// rollNode is one srp node behind the balancer: its own copy of the
// binary, port and pidfile, restarted in place.
type rollNode struct {
	name    string
	bin     string
	port    int
	config  string
	pidfile string
	p       *proc // the srp this test started last
}

func (n *rollNode) start(t *testing.T) {
	t.Helper()
	n.p = startBinary(t, n.bin, "-c", n.config, "-p", strconv.Itoa(n.port), "-pidfile", n.pidfile,
		"-timeout", rollDrain.String(), "-drain-delay", rollDelay.String())
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
	testStart := time.Now()
	lg := newLedger()
	config := appConfig(lg.backend(t, "b1", true), lg.backend(t, "b2", true))

	nodes := make([]*rollNode, 3)
	ports := make([]int, len(nodes))
	for i := range nodes {
		dir := t.TempDir()
		n := &rollNode{name: fmt.Sprintf("n%d", i+1), bin: filepath.Join(dir, "srp"), port: freePort(t),
			config: filepath.Join(dir, "config.json"), pidfile: filepath.Join(dir, "srp.pid")}
		installBinary(t, srpBin, n.bin)
		setConfig(t, n.config, config)
		n.start(t)
		t.Cleanup(func() { n.stopUpgraded(t) })
		nodes[i], ports[i] = n, n.port
	}

	h := startHAProxy(t, hapBin, ports)
	for _, n := range nodes {
		h.waitState(n.name, "UP", 10*time.Second)
	}
	w := h.watch()
	defer func() {
		if w != nil {
			w.end()
		}
	}()

	l := startLoad(t, loadOptions{port: h.port, host: "app.test", keepAlive: 6, fresh: 3, pause: 2 * time.Millisecond, limit: rollBudget})
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
		u := &upgrader{t: t, s: &lifeSRP{proc: n.p, port: n.port, pidfile: n.pidfile}, drain: rollDrain}
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
