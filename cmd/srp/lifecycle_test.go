package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lifeSRP is an srp started with a pidfile, as the lifecycle tests run it.
type lifeSRP struct {
	*proc
	port    int
	dir     string
	config  string // config file path
	pidfile string
}

// startLife starts the srp binary at bin serving config and waits until
// its pidfile names it, which happens once its first worker is ready.
func startLife(t testing.TB, bin, config string, extra ...string) *lifeSRP {
	t.Helper()
	dir := t.TempDir()
	s := &lifeSRP{port: freePort(t), dir: dir, config: filepath.Join(dir, "config.json"), pidfile: filepath.Join(dir, "srp.pid")}
	setConfig(t, s.config, config)
	args := append([]string{"-c", s.config, "-p", strconv.Itoa(s.port), "-pidfile", s.pidfile, "-timeout", "10s"}, extra...)
	s.proc = startBinary(t, bin, args...)
	s.waitPID(t, s.cmd.Process.Pid, 30*time.Second)
	t.Cleanup(func() {
		// After an upgrade the serving srp is no child of ours: stop it if
		// the pidfile names a process running this binary on this pidfile,
		// and nothing else.
		if pid, err := readPID(s.pidfile); err == nil && pid != s.cmd.Process.Pid && s.ours(bin, pid) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			waitGone(t, pid, 20*time.Second)
		}
	})
	return s
}

// ours reports whether pid is an srp started from bin with this test's
// pidfile, as every supervisor after an upgrade is.
func (s *lifeSRP) ours(bin string, pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !alive(pid) {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return args[0] == bin && slices.Contains(args, s.pidfile)
}

// waitPID waits until the pidfile holds pid.
func (s *lifeSRP) waitPID(t testing.TB, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if got, err := readPID(s.pidfile); err == nil && got == pid {
			return
		}
		select {
		case <-s.done:
			t.Fatalf("srp exited before its pidfile named pid %d:\n%s", pid, s.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	got, err := readPID(s.pidfile)
	t.Fatalf("pidfile holds %d (%v), want %d after %v:\n%s", got, err, pid, d, s.out.String())
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// setConfig replaces the config file in one step, as an operator's editor
// or deploy tool should, so a reload never reads half a file.
func setConfig(t testing.TB, path, config string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// appConfig is a config proxying app.test to backends, health-checked.
func appConfig(backends ...string) string {
	return fmt.Sprintf(`{"Services": {"app.test": {"HealthPath": "/health", "Backends": ["%s"]}}}`, strings.Join(backends, `", "`))
}

// srpCLI runs "srp ARGS" and returns its exit code and combined output.
func srpCLI(t testing.TB, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, srpBin, args...).CombinedOutput()
	if err == nil {
		return 0, string(out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("srp %v: %v", args, err)
	return -1, ""
}

// procStat returns a process's state letter and parent, ok false if it is gone.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid, true
}

// alive reports whether pid runs; a zombie has exited.
func alive(pid int) bool {
	st, _, ok := procStat(pid)
	return ok && st != 'Z'
}

func waitGone(t testing.TB, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still running after %v", pid, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// children returns the processes whose parent is pid, with their states.
func children(pid int) map[int]byte {
	out := map[int]byte{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ppid, ok := procStat(c); ok && ppid == pid {
			out[c] = st
		}
	}
	return out
}

// logCount counts lines of the srp output containing substr.
func (p *proc) logCount(substr string) int {
	return strings.Count(p.out.String(), substr)
}

// waitLogCount waits until substr occurs n times in the output.
func (p *proc) waitLogCount(substr string, n int, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for p.logCount(substr) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("%q seen %d times, want %d within %v:\n%s", substr, p.logCount(substr), n, d, p.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// workerPIDs returns the worker_pid values logged for msg, in order.
func (p *proc) workerPIDs(msg string) []int {
	var pids []int
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="`+msg+`"`) {
			continue
		}
		_, rest, ok := strings.Cut(line, "worker_pid=")
		if !ok {
			continue
		}
		f, _, _ := strings.Cut(rest, " ")
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// slowGet sends GET /slow (3 s at the backend) and reports the outcome.
func slowGet(port int) error {
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/slow", port), nil)
	req.Host = "app.test"
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	if err != nil || resp.StatusCode != 200 || b.String() != "slow done" {
		return fmt.Errorf("status %d body %q err %v", resp.StatusCode, b.String(), err)
	}
	return nil
}

// canBind reports whether port is free on 127.0.0.1.
func canBind(port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
