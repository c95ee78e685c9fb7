package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// kernelLandlock reports whether this kernel has Landlock, and if not why.
func kernelLandlock() (bool, string) {
	_, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return false, e.Error()
	}
	return true, ""
}

// statusField returns a field of /proc/PID/status, e.g. "NoNewPrivs".
func statusField(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("worker pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// lockedSRP is a plain-HTTP srp in front of one backend, with its pidfile.
type lockedSRP struct {
	*lifeSRP
	backend *backend
}

func startLocked(t *testing.T, extra ...string) *lockedSRP {
	t.Helper()
	b := newBackend(t, "locked-backend", nil)
	s := startLife(t, srpBin, appConfig(b.addr()), extra...)
	return &lockedSRP{lifeSRP: s, backend: b}
}

// worker returns the pid of the serving worker: the latest one that
// reported ready, which must be a child of the supervisor.
func (s *lockedSRP) worker(t *testing.T, n int) int {
	t.Helper()
	s.waitLogCount(`msg="worker ready"`, n, 30*time.Second)
	pids := s.workerPIDs("worker ready")
	pid := pids[len(pids)-1]
	if _, ok := children(s.cmd.Process.Pid)[pid]; !ok {
		t.Fatalf("worker %d is not a child of supervisor %d", pid, s.cmd.Process.Pid)
	}
	return pid
}

func (s *lockedSRP) proxies(t *testing.T) {
	t.Helper()
	code, body, _ := get(t, s.port, "app.test", "/")
	if code != 200 || body != "locked-backend" {
		t.Fatalf("GET through the locked-down worker: %d %q", code, body)
	}
}

// Every worker, the first and one started by a reload, runs with
// no_new_privs and says whether Landlock applied; the supervisor does not
// lock itself down on Linux; requests still flow.
func TestWorkerLockedDown(t *testing.T) {
	s := startLocked(t)
	for gen := 1; gen <= 2; gen++ {
		if gen == 2 {
			s.signal(syscall.SIGHUP)
		}
		w := s.worker(t, gen)
		if got := statusField(t, w, "NoNewPrivs"); got != "1" {
			t.Errorf("gen %d worker %d NoNewPrivs: %s, want 1", gen, w, got)
		}
		s.proxies(t)
	}
	if got := statusField(t, s.cmd.Process.Pid, "NoNewPrivs"); got != "0" {
		t.Errorf("supervisor NoNewPrivs: %s, want 0", got)
	}
	if ok, why := kernelLandlock(); ok {
		s.waitLogCount("landlock: ABI v", 2, 10*time.Second)
		if n := s.logCount(`msg="landlock: ABI v`); n != 2 || !strings.Contains(s.out.String(), "applied\" role=worker") {
			t.Errorf("want one \"landlock: ABI vN applied\" line per worker, got %d:\n%s", n, s.out.String())
		}
	} else {
		s.waitLogCount(`msg="landlock: not available"`, 2, 10*time.Second)
		t.Logf("kernel lacks Landlock (%s): checked no_new_privs and the log only", why)
	}
}

func nobodyIDs(t *testing.T) (uid, gid string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running workers as another user needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	return u.Uid, u.Gid
}

// Started as root with -user nobody, the supervisor binds the port and keeps
// root; every worker runs as nobody with no supplementary groups, and still
// serves on the supervisor's sockets.
func TestWorkersRunAsUser(t *testing.T) {
	uid, gid := nobodyIDs(t)
	s := startLocked(t, "-user", "nobody")
	for gen := 1; gen <= 2; gen++ {
		if gen == 2 {
			s.signal(syscall.SIGHUP)
		}
		w := s.worker(t, gen)
		if got, want := statusField(t, w, "Uid"), strings.Repeat(uid+" ", 3)+uid; got != want {
			t.Errorf("gen %d worker Uid: %q, want %q", gen, got, want)
		}
		if got, want := statusField(t, w, "Gid"), strings.Repeat(gid+" ", 3)+gid; got != want {
			t.Errorf("gen %d worker Gid: %q, want %q", gen, got, want)
		}
		if got := statusField(t, w, "Groups"); got != "" {
			t.Errorf("gen %d worker kept supplementary groups %q", gen, got)
		}
		s.proxies(t)
	}
	if got := statusField(t, s.cmd.Process.Pid, "Uid"); got != "0 0 0 0" {
		t.Errorf("supervisor Uid: %q, want root", got)
	}
}

// -user naming no user, or root, stops srp before it listens, with the
// reason and exit status 1.
func TestUserRefused(t *testing.T) {
	nobodyIDs(t) // as root: a non-root srp refuses any switch for another reason
	config := writeConfig(t, appConfig("127.0.0.1:9"))
	for _, c := range []struct{ user, want string }{
		{"srp-no-such-user", `-user "srp-no-such-user": no such user "srp-no-such-user"`},
		{"nobody:srp-no-such-group", `no such group "srp-no-such-group"`},
		{"root", "workers must not run as root"},
		{"nobody:0", "workers must not run as root or group 0"},
	} {
		port := freePort(t)
		p := startSRP(t, "-c", config, "-p", strconv.Itoa(port), "-user", c.user)
		if code := p.wait(10 * time.Second); code != 1 {
			t.Errorf("-user %s: exit %d, want 1", c.user, code)
		}
		if out := p.out.String(); !strings.Contains(out, c.want) || strings.Contains(out, "worker started") {
			t.Errorf("-user %s: output %q, want %q and no worker", c.user, out, c.want)
		}
		if !canBind(port) {
			t.Errorf("-user %s: port %d still taken", c.user, port)
		}
	}
}

// openTo lets every user reach path: the directories from path up to the
// test's temporary root become 0755, a file 0644. Workers running as -user
// need that, as they would on a real host.
func openTo(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mode := os.FileMode(0o755)
	if !st.IsDir() {
		mode = 0o644
	}
	for p := path; strings.HasPrefix(p, os.TempDir()+"/"); p = filepath.Dir(p) {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		mode = 0o755
	}
}

// In HTTPS mode with -user, the supervisor hands the certificate cache to
// the worker user, and the worker, locked down and unprivileged, gets a
// certificate from the CA and stores it there.
func TestHTTPSWorkersRunAsUser(t *testing.T) {
	uid, _ := nobodyIDs(t)
	httpPort, httpsPort := freePort(t), freePort(t)
	ca := startPebble(t, pebbleOptions{httpPort: httpPort, tlsPort: httpsPort})
	openTo(t, ca.apiCA)
	base := t.TempDir()
	openTo(t, base)
	certs := filepath.Join(base, "certs")
	be := newBackend(t, "www", nil)
	s := startHTTPS(t, ca, httpPort, httpsPort, certs, httpsConfig(be.addr()), "-user", "nobody")
	issue(t, ca, s, be)
	s.waitLog("acme: certificate stored", 5*time.Second)
	for _, p := range []string{certs, filepath.Join(certs, "www.srp.test")} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if owner := strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Uid)); owner != uid {
			t.Errorf("%s owned by uid %s, want nobody (%s)", p, owner, uid)
		}
	}
	w := s.workerPIDs("worker ready")
	if got := statusField(t, w[len(w)-1], "Uid"); !strings.HasPrefix(got, uid+" ") {
		t.Errorf("worker Uid %q, want nobody", got)
	}
	if ok, _ := kernelLandlock(); ok && !strings.Contains(s.out.String(), `msg="landlock: ABI v`) {
		t.Errorf("worker did not apply Landlock:\n%s", s.out)
	}
}
