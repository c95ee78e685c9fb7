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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// haproxyBin finds haproxy on PATH or in /usr/sbin (see testkit.Server).
func haproxyBin(t *testing.T) string {
	t.Helper()
	return testkit.Server(t, "apt-get install haproxy", "haproxy", "/usr/sbin/haproxy")
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

// hapServer is one srp node as HAProxy sees it: where connections go, and
// the port of its plain listener, where /ready is checked.
type hapServer struct {
	addr  string
	check int
}

func startHAProxy(t *testing.T, bin string, nodes []hapServer) *haproxy {
	t.Helper()
	dir := t.TempDir()
	h := &haproxy{t: t, port: freePort(t), sock: filepath.Join(dir, "admin.sock"), out: &testkit.Buffer{}, done: make(chan struct{})}
	var servers strings.Builder
	for i, n := range nodes {
		fmt.Fprintf(&servers, "    server n%d %s check port %d inter %dms fall %d rise %d\n", i+1, n.addr, n.check, hapInter.Milliseconds(), hapFall, hapRise)
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
