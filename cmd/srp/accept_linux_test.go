package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// workerSockets counts the sockets the process pid holds.
func workerSockets(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(dir + "/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// srp's listeners hand a connection to the worker only once the client has
// sent something (TCP_DEFER_ACCEPT), and after a reload too: connections
// that have said nothing reach no worker, and each is served as it speaks.
func TestListenersDeferAccept(t *testing.T) {
	s := startLocked(t)
	for gen := 1; gen <= 2; gen++ {
		if gen == 2 {
			s.signal(syscall.SIGHUP)
		}
		w := s.worker(t, gen)
		s.proxies(t)
		before := workerSockets(t, w)
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
		if grew := workerSockets(t, w) - before; grew >= n/2 {
			t.Errorf("gen %d: the worker holds %d more sockets with %d silent clients: they were accepted", gen, grew, n)
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
