package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"srp/supervisor/link"
)

func TestSIGTERMDrainsAndRemovesPidfile(t *testing.T) {
	f := newReloadFleet(t)
	s := startLife(t, srpBin, f.config(0))
	slow := make(chan error, 1)
	go func() { slow <- slowGet(s.port) }()
	for f.lg.slow.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	s.signal(syscall.SIGTERM)
	if err := <-slow; err != nil {
		t.Errorf("request in flight at SIGTERM: %v", err)
	}
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if _, err := os.Stat(s.pidfile); !os.IsNotExist(err) {
		t.Errorf("pidfile still there after SIGTERM: %v", err)
	}
	if _, err := os.Stat(link.ControlPath(s.pidfile)); !os.IsNotExist(err) {
		t.Errorf("control socket still there after SIGTERM: %v", err)
	}
}

func TestSIGTERMKeepsForeignPidfile(t *testing.T) {
	f := newReloadFleet(t)
	s := startLife(t, srpBin, f.config(0))
	// Another process took the pidfile over (the test stands in for it):
	// it is not ours to remove.
	other := os.Getpid()
	if err := os.WriteFile(s.pidfile, []byte(fmt.Sprintf("%d\n", other)), 0o644); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if pid, err := readPID(s.pidfile); err != nil || pid != other {
		t.Errorf("pidfile naming another process was changed: %d, %v", pid, err)
	}
}

// streamBackend serves a WebSocket echo on /ws and an endless event stream
// on /events.
func streamBackend(t testing.TB) string {
	srv := newBackend(t, "streams", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			wsEcho(w, r)
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			rc := http.NewResponseController(w)
			for i := 0; ; i++ {
				fmt.Fprintf(w, "data: %d\n\n", i)
				if rc.Flush() != nil {
					return
				}
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	})
	return srv.addr()
}

// openWS opens a WebSocket through srp and checks one echo.
func openWS(t *testing.T, port int) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket handshake: %v %v", resp, err)
	}
	wsEchoOnce(t, c, br, "hello")
	return c, br
}

func wsEchoOnce(t *testing.T, c net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := wsWrite(c, 1, []byte(msg), true); err != nil {
		t.Fatalf("websocket write: %v", err)
	}
	if _, p, err := wsRead(br); err != nil || string(p) != msg {
		t.Fatalf("websocket echo: %q, %v", p, err)
	}
}

// openSSE starts an event stream through srp and reads its first event.
func openSSE(t *testing.T, port int) *bufio.Reader {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: app.test\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %v %v", resp, err)
	}
	body := bufio.NewReader(resp.Body)
	if line, err := body.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first event: %q %v", line, err)
	}
	return body
}

// untilClosed reads r until it ends and says how: io.EOF for a clean
// close.
func untilClosed(r io.Reader, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, r)
		if err == nil {
			err = io.EOF
		}
		done <- err
	}()
	select {
	case err := <-done:
		return time.Since(start), err
	case <-time.After(limit):
		return time.Since(start), errors.New("still open")
	}
}

func TestStreamsAcrossReloadEndAtDeadline(t *testing.T) {
	be := streamBackend(t)
	config := fmt.Sprintf(`{"Services": {"app.test": {"Backends": ["%s"]}}}`, be)
	s := startLife(t, srpBin, config, "-timeout", "2s")
	ws, wsr := openWS(t, s.port)
	events := openSSE(t, s.port)
	old := s.workerPIDs("worker ready")[0]

	reloaded := time.Now()
	if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
		t.Fatalf("srp reload: %d %s", code, out)
	}
	// Both streams go on while the old worker drains...
	wsEchoOnce(t, ws, wsr, "during drain")
	if line, err := events.ReadString('\n'); err != nil {
		t.Fatalf("event during drain: %q %v", line, err)
	}
	// ...and end at its deadline, after which the old worker exits.
	_ = ws.SetDeadline(time.Time{})
	_, wsErr := untilClosed(wsr, 10*time.Second)
	sseTook, sseErr := untilClosed(events, 10*time.Second)
	t.Logf("after the reload the websocket ended in %v (%v), the event stream in %v (%v)",
		time.Since(reloaded).Round(time.Millisecond), wsErr, sseTook.Round(time.Millisecond), sseErr)
	if wsErr != io.EOF {
		t.Errorf("websocket across a reload ended with %v, want a clean close", wsErr)
	}
	if sseErr != io.EOF {
		t.Errorf("event stream across a reload ended with %v, want its last chunk and a clean close", sseErr)
	}
	if d := time.Since(reloaded); d > 2*time.Second+3*time.Second {
		t.Errorf("streams closed %v after the reload, drain deadline 2s", d)
	}
	waitGone(t, old, 5*time.Second)
	// The new worker serves streams as before.
	ws2, wsr2 := openWS(t, s.port)
	wsEchoOnce(t, ws2, wsr2, "new worker")
}
