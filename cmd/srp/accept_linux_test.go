package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// srp's listeners hand a connection to the worker only once the client has
// sent something (TCP_DEFER_ACCEPT), and after a reload too: connections
// that have said nothing reach no worker, and each is served as it speaks.
func TestListenersDeferAccept(t *testing.T) {
	s := startLocked(t)
	for gen := 1; gen <= 2; gen++ {
		if gen == 2 {
			s.signal(syscall.SIGHUP)
		}
		s.worker(t, gen)
		s.proxies(t)
		before := workerFDs(t, s.proc)
		const n = 20
		var conns []net.Conn
		for range n {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns = append(conns, c)
		}
		time.Sleep(300 * time.Millisecond)
		if grew := workerFDs(t, s.proc) - before; grew >= n/2 {
			t.Errorf("gen %d: the workers hold %d more descriptors with %d silent clients: they were accepted", gen, grew, n)
		}
		for i, c := range conns {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"); err != nil {
				t.Fatalf("gen %d client %d: %v", gen, i, err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("gen %d client %d: %v", gen, i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "locked-backend" {
				t.Errorf("gen %d client %d: %d %q", gen, i, resp.StatusCode, body)
			}
		}
	}
}

// switches counts the context switches of every thread of pid so far.
func switches(t *testing.T, pid int) int {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				k, _ := strconv.Atoi(strings.TrimSpace(v))
				n += k
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				k, _ := strconv.Atoi(strings.TrimSpace(v))
				n += k
			}
		}
	}
	return n
}

// The supervisor holds the listeners but never accepts: a connection,
// which its worker accepts, must not wake it. Before the listeners were
// kept out of its poller, each new connection woke it at least once.
func TestSupervisorSleepsThroughConnections(t *testing.T) {
	s := startLocked(t)
	sup := s.cmd.Process.Pid
	for gen := 1; gen <= 3; gen++ {
		switch gen {
		case 1:
			s.worker(t, gen)
		case 2: // the new worker gets its listeners from the held ones
			s.signal(syscall.SIGHUP)
			s.worker(t, gen)
		case 3: // the new supervisor holds the listeners it inherited
			if code, out := srpCLI(t, "upgrade", "-pidfile", s.pidfile); code != 0 {
				t.Fatalf("srp upgrade: exit %d\n%s", code, out)
			}
			sup = s.waitServing(t, srpBin, sup, 30*time.Second)
		}
		s.proxies(t)
		const n = 300
		before := switches(t, sup)
		start := time.Now()
		for i := range n {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
			if err == nil {
				_, err = io.ReadAll(c)
			}
			c.Close()
			if err != nil {
				t.Fatalf("gen %d connection %d: %v", gen, i, err)
			}
		}
		woke := switches(t, sup) - before
		t.Logf("gen %d: the supervisor switched %d times over %d connections in %v", gen, woke, n, time.Since(start))
		if woke >= n/3 {
			t.Errorf("gen %d: the supervisor switched %d times over %d connections: they wake it", gen, woke, n)
		}
	}
}
