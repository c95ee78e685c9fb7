package platform

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"srp/scripts/testkit"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestAccess(t *testing.T) {
	const (
		rd = unix.LANDLOCK_ACCESS_FS_READ_FILE
		rs = unix.LANDLOCK_ACCESS_FS_READ_DIR
		wr = unix.LANDLOCK_ACCESS_FS_WRITE_FILE
		tr = unix.LANDLOCK_ACCESS_FS_TRUNCATE
		ex = unix.LANDLOCK_ACCESS_FS_EXECUTE
		mk = unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
			unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR
	)
	tests := []struct {
		perm string
		dir  bool
		abi  int
		want uint64
	}{
		{"r", false, 7, rd},
		{"r", true, 7, rd | rs},
		{"rx", false, 7, rd | ex},
		{"rwc", true, 7, rd | rs | wr | tr | mk},
		{"rwc", false, 7, rd | wr | tr},     // no single-name create in Landlock
		{"rwc", true, 1, rd | rs | wr | mk}, // TRUNCATE is ABI 3
		{"", true, 7, 0},
	}
	for _, tt := range tests {
		if got := access(tt.perm, tt.dir, tt.abi); got != tt.want {
			t.Errorf("access(%q, dir=%v, abi=%d) = %#x, want %#x", tt.perm, tt.dir, tt.abi, got, tt.want)
		}
	}
}

func TestHandledFS(t *testing.T) {
	if got := handledFS(1); got != 0x1fff {
		t.Errorf("ABI 1 rights = %#x, want 0x1fff", got)
	}
	if got := handledFS(7); got != 0xffff {
		t.Errorf("ABI 7 rights = %#x, want 0xffff", got)
	}
}

// needLandlock skips where the kernel has no Landlock: there the worker gets
// no_new_privs only, and there is no denial to prove.
func needLandlock(t *testing.T) int {
	t.Helper()
	abi, err := landlockABI()
	if err != nil {
		t.Skipf("kernel lacks Landlock (%v): nothing to deny, the worker gets no_new_privs only", err)
	}
	return abi
}

// runHelper starts the helper, with StartWorker if restricted is set, and
// returns its lines, its pid and a stop function that returns its stderr
// once it has exited.
func runHelper(t *testing.T, o helperOpts, restricted bool) (lines map[string]string, pid int, stop func() string) {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = o.env()
	stderr := &testkit.Buffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if restricted {
		err = StartWorker(cmd, o.paths, slog.New(slog.NewTextHandler(stderr, nil)))
	} else {
		err = cmd.Start()
	}
	if err != nil {
		t.Fatalf("start helper: %v", err)
	}
	stopped := false
	stop = func() string {
		if !stopped {
			stopped = true
			stdin.Close()
			_, _ = io.Copy(io.Discard, stdout)
			if err := cmd.Wait(); err != nil {
				t.Errorf("helper: %v\nstderr:\n%s", err, stderr.String())
			}
		}
		return stderr.String()
	}
	t.Cleanup(func() { stop() })
	return readHelper(t, stdout, stderr.String), cmd.Process.Pid, stop
}

func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// restrictedThreads lists this process's threads that have no_new_privs.
func restrictedThreads(t *testing.T) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var r []string
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err == nil && strings.Contains(string(b), "NoNewPrivs:\t1") {
			r = append(r, task.Name())
		}
	}
	return r
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func expect(t *testing.T, lines map[string]string, key, want string) {
	t.Helper()
	if got := lines[key]; got != want {
		t.Errorf("%s: %q, want %q (all: %q)", key, got, want, lines)
	}
}

// An HTTPS worker started by StartWorker can use its cache and CA file and
// nothing else: not the file next to its cache, not /etc/passwd, not a new
// listening port; it has no_new_privs on every thread; and the supervisor
// that started it is not restricted at all.
func TestStartWorkerLandlockACME(t *testing.T) {
	abi := needLandlock(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "certs")
	ca := filepath.Join(dir, "ca.pem")
	secret := filepath.Join(dir, "config.json") // the cache directory's sibling
	for _, f := range []string{ca, secret} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := helperOpts{
		paths:  Paths{ACME: true, CertCache: cache, ACMECA: ca},
		read:   []string{secret, "/etc/passwd", ca},
		create: filepath.Join(cache, "example.com"),
		port:   freePort(t),
	}
	lines, pid, stop := runHelper(t, o, true)
	expect(t, lines, "read "+secret, "denied")
	expect(t, lines, "read /etc/passwd", "denied")
	expect(t, lines, "read "+ca, "ok")
	expect(t, lines, "create "+o.create, "ok")
	if abi >= 4 {
		expect(t, lines, "bind", "denied")
	}
	if got := procStatus(t, pid, "NoNewPrivs"); got != "1" {
		t.Errorf("worker NoNewPrivs: %s, want 1", got)
	}
	if _, err := os.ReadFile(secret); err != nil {
		t.Errorf("the starting process lost access: %v", err)
	}
	if inDomain() {
		t.Error("the starting process is restricted")
	}
	// The thread that started the worker ends just after; give it time.
	deadline := time.Now().Add(5 * time.Second)
	for r := restrictedThreads(t); len(r) > 0; r = restrictedThreads(t) {
		if time.Now().After(deadline) {
			t.Errorf("threads %q of the starting process kept no_new_privs", r)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if log := stop(); !strings.Contains(log, fmt.Sprintf("landlock: ABI v%d applied", abi)) {
		t.Errorf("no landlock line in the worker's log:\n%s", log)
	}
}

// A plain-HTTP worker may open no file at all, not even in its working
// directory.
func TestStartWorkerLandlockPlain(t *testing.T) {
	needLandlock(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	lines, pid, _ := runHelper(t, helperOpts{read: []string{file, "/proc/self/status"}, create: filepath.Join(dir, "new")}, true)
	expect(t, lines, "read "+file, "denied")
	expect(t, lines, "read /proc/self/status", "denied")
	expect(t, lines, "create "+filepath.Join(dir, "new"), "denied")
	if got := procStatus(t, pid, "NoNewPrivs"); got != "1" {
		t.Errorf("worker NoNewPrivs: %s, want 1", got)
	}
}

// A worker not started by StartWorker restricts itself in Lockdown when
// the binary has no cgo, and otherwise says that it could not.
func TestLockdownInProcess(t *testing.T) {
	abi := needLandlock(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	lines, pid, stop := runHelper(t, helperOpts{read: []string{file}}, false)
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_GET_DUMPABLE, 0, 0)
	nnp := procStatus(t, pid, "NoNewPrivs")
	log := stop()
	if e == unix.ENOTSUP {
		expect(t, lines, "read "+file, "ok")
		if !strings.Contains(log, "landlock: not available") || !strings.Contains(log, "cgo") {
			t.Errorf("a cgo worker started unrestricted must say so:\n%s", log)
		}
		return
	}
	expect(t, lines, "read "+file, "denied")
	if nnp != "1" {
		t.Errorf("worker NoNewPrivs: %s, want 1", nnp)
	}
	if !strings.Contains(log, fmt.Sprintf("landlock: ABI v%d applied", abi)) || !strings.Contains(log, "since=lockdown") {
		t.Errorf("no landlock line in the worker's log:\n%s", log)
	}
}
