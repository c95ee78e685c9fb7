package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
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

// srpBin is the srp binary built once for every test in this package. The
// integration tests run it as a real process, as an operator would.
var srpBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "srp-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srpBin = filepath.Join(dir, "srp")
	args := []string{"build", "-o", srpBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build srp:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is an srp process started by a test.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	out  *testkit.Buffer // stdout and stderr together
	done chan struct{}
	err  error // exit status, valid after done
}

// startSRP runs the srp binary with args. The process is killed at cleanup
// if the test has not stopped it.
func startSRP(t testing.TB, args ...string) *proc {
	t.Helper()
	return startBinary(t, srpBin, args...)
}

// startBinary is startSRP for the srp binary at bin, which tests of binary
// upgrades replace on disk.
func startBinary(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, out: &testkit.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.Dir = t.TempDir()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start srp: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("srp %v output:\n%s", args, p.out.String())
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to d for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("srp did not exit within %v; output:\n%s", d, p.out.String())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.err)
	return -1
}

// waitLog waits up to d for substr to appear in the process output.
func (p *proc) waitLog(substr string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(p.out.String(), substr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("no %q in srp output within %v:\n%s", substr, d, p.out.String())
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// below the kernel's range of ephemeral ports: a port from that range
// (which port 0 gives) can be taken as the local end of any outgoing
// connection before srp binds it, and the start then fails with "address
// already in use".
func freePort(t testing.TB) int {
	t.Helper()
	below := 32768 // Linux's default first ephemeral port
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > 12000 {
				below = lo
			}
		}
	}
	for range 100 {
		port := 10000 + rand.IntN(below-10000)
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			ln.Close()
			return port
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// writeConfig writes a config file for srp and returns its path.
func writeConfig(t testing.TB, config string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// backend is a real HTTP server on 127.0.0.1 that records what it received
// and answers with its name.
type backend struct {
	*httptest.Server
	name string

	mu   sync.Mutex // guards reqs
	reqs []*http.Request
}

func newBackend(t testing.TB, name string, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.reqs = append(b.reqs, r.Clone(context.Background()))
		b.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(b.Close)
	return b
}

// addr is the backend's "127.0.0.1:port".
func (b *backend) addr() string { return b.Listener.Addr().String() }

// requests returns what the backend has received so far.
func (b *backend) requests() []*http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*http.Request(nil), b.reqs...)
}

// waitHTTP polls url until it answers at all, or fails the test after d.
func waitHTTP(t testing.TB, url string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer within %v", url, d)
}

// get sends a GET with the given Host to srp and returns status and body.
func get(t testing.TB, port int, host, path string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}
