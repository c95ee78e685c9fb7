package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readLogURIs reads a JSON access log and counts its lines by URI.
func readLogURIs(t testing.TB, path string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range parseAccessJSON(t, data) {
		out[l.URI]++
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// A logrotate-style rotation: the file is moved away and srp gets SIGUSR1.
// Under a steady load, every request has exactly one line, in the old file
// or the new; once the worker that held the old file has drained, every
// line goes to the new one.
func TestAccessLogReopen(t *testing.T) {
	f := newReloadFleet(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "access.log")
	s := startLife(t, srpBin, f.config(0), "-access-log", "json", "-access-log-file", file, "-timeout", "3s")
	l := startLoad(t, loadOptions{port: s.port, host: "app.test", keepAlive: 2, fresh: 1, pause: 2 * time.Millisecond, limit: 2 * time.Minute})
	l.progress(t, 200)

	if err := os.Rename(file, file+".1"); err != nil {
		t.Fatal(err)
	}
	l.progress(t, 50) // lines still go to the moved file
	s.signal(syscall.SIGUSR1)
	s.waitLog(`msg="access log reopened"`, 10*time.Second)
	s.waitLogCount(`msg="worker ready"`, 2, 30*time.Second)
	s.waitLogCount(`msg="worker exited"`, 1, 30*time.Second)
	old := total(readLogURIs(t, file+".1"))
	l.progress(t, 200)
	if code := rawExchange(t, s.port, "GET /after-rotation HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"); code != 200 {
		t.Fatalf("GET /after-rotation: %d", code)
	}
	f.checkLoad(t, l)
	ok, _ := l.finish()

	want := int(ok) + 1
	var oldURIs, newURIs map[string]int
	deadline := time.Now().Add(5 * time.Second)
	for {
		oldURIs, newURIs = readLogURIs(t, file+".1"), readLogURIs(t, file)
		if total(oldURIs)+total(newURIs) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d requests answered; %d lines in the moved file, %d in the new one", want, total(oldURIs), total(newURIs))
	if got := total(oldURIs) + total(newURIs); got != want {
		t.Errorf("%d lines in both files for %d requests", got, want)
	}
	for uri, n := range newURIs {
		if n != 1 || oldURIs[uri] != 0 {
			t.Errorf("%s logged %d times in the new file, %d in the moved one", uri, n, oldURIs[uri])
		}
	}
	if total(oldURIs) != old {
		t.Errorf("the moved file grew from %d to %d lines after its worker exited", old, total(oldURIs))
	}
	if newURIs["/after-rotation"] != 1 {
		t.Errorf("the request after the rotation is not in the new file")
	}
	if total(newURIs) < 200 {
		t.Errorf("only %d lines in the new file", total(newURIs))
	}
}

// Workers lock themselves down (Landlock on Linux, pledge and unveil on
// OpenBSD) before they serve; the access log file the supervisor opened
// for them is still written, by the first worker and by the one SIGUSR1
// starts. As root the workers also run as nobody, who could not open it.
func TestAccessLogLockedDownWorker(t *testing.T) {
	be := newBackend(t, "app-backend", nil)
	file := filepath.Join(t.TempDir(), "access.log")
	extra := []string{"-access-log", "json", "-access-log-file", file}
	if os.Geteuid() == 0 {
		extra = append(extra, "-user", "nobody")
	}
	s := startLife(t, srpBin, accessConfig(be.addr()), extra...)
	for gen := 1; gen <= 2; gen++ {
		if gen == 2 {
			s.signal(syscall.SIGUSR1)
			s.waitLog(`msg="access log reopened"`, 10*time.Second)
			s.waitLogCount(`msg="worker ready"`, 2, 30*time.Second)
			s.waitLogCount(`msg="worker exited"`, 1, 30*time.Second)
		}
		uri := fmt.Sprintf("/locked/%d", gen)
		if code := rawExchange(t, s.port, "GET "+uri+" HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"); code != 200 {
			t.Fatalf("GET %s: %d", uri, code)
		}
		deadline := time.Now().Add(5 * time.Second)
		for readLogURIs(t, file)[uri] != 1 {
			if time.Now().After(deadline) {
				data, _ := os.ReadFile(file)
				t.Fatalf("no line for %s from worker generation %d:\n%s", uri, gen, data)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	out := s.out.String()
	switch {
	case strings.Contains(out, `msg="landlock: ABI v`):
		if n := strings.Count(out, `msg="landlock: ABI v`); n != 2 {
			t.Errorf("%d workers applied Landlock, want 2:\n%s", n, out)
		}
	case strings.Contains(out, `msg="landlock: not available"`):
		t.Logf("kernel without Landlock: checked the lines only")
	default:
		t.Logf("no Landlock on this system: checked the lines only")
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("access log file mode %v (%v), want 0640", st.Mode().Perm(), err)
	}
}

// A bad -access-log value, or a file srp cannot open, stops srp before it
// serves, with a message.
func TestAccessLogBadFlags(t *testing.T) {
	config := writeConfig(t, appConfig("127.0.0.1:9"))
	port := freePort(t)
	code, out := srpCLI(t, "-c", config, "-p", strconv.Itoa(port), "-access-log", "xml")
	if code != 2 || !strings.Contains(out, `access log format "xml": must be off, json or combined`) {
		t.Errorf("-access-log xml: exit %d, output %q; want 2 and the allowed formats", code, out)
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir", "access.log")
	code, out = srpCLI(t, "-c", config, "-p", strconv.Itoa(port), "-access-log", "json", "-access-log-file", missing)
	if code != 1 || !strings.Contains(out, "open access log") || !strings.Contains(out, missing) {
		t.Errorf("-access-log-file in a missing directory: exit %d, output %q; want 1 and the reason", code, out)
	}
	if !canBind(port) {
		t.Errorf("port %d still taken", port)
	}
}
