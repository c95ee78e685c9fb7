package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// The control socket carries one request per connection: a line naming the
// operation ("reload" or "upgrade"), answered by "ok" or "error" on the
// first line and the details on the following lines once the operation has
// finished. Signals start the same operations but cannot carry the answer.

// Operation names on the control socket.
const (
	OpReload  = "reload"
	OpUpgrade = "upgrade"
)

// request is a reload or upgrade asked for by a signal (reply nil) or a
// control-socket client.
type request struct {
	op    string
	reply chan<- result
}

// result is the outcome of one operation, sent to every waiter.
type result struct {
	err error  // nil on success; its lines are printed one per line
	msg string // what happened, on success
}

// serveControl answers clients on ln until it is closed. done is closed when
// the lifecycle loop has stopped taking requests.
func serveControl(ln net.Listener, requests chan<- request, done <-chan struct{}) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go handleControl(c, requests, done)
	}
}

func handleControl(c net.Conn, requests chan<- request, done <-chan struct{}) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	if err != nil {
		return
	}
	op := strings.TrimSpace(line)
	var res result
	if op != OpReload && op != OpUpgrade {
		res.err = fmt.Errorf("unknown request %q", op)
	} else {
		reply := make(chan result, 1)
		select {
		case requests <- request{op: op, reply: reply}:
			select {
			case res = <-reply:
			case <-done:
				res.err = errors.New("srp is shutting down")
			}
		case <-done:
			res.err = errors.New("srp is shutting down")
		}
	}
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if res.err != nil {
		fmt.Fprintf(c, "error\n%s\n", res.err)
		return
	}
	fmt.Fprintf(c, "ok\n%s\n", res.msg)
}

// listenControl opens the control socket at path, replacing a stale socket
// left by a supervisor that was killed, and refusing to take over one that
// still answers. Only the owner may connect.
func listenControl(path string) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another srp is running", path)
	} else if errors.Is(err, syscall.ECONNREFUSED) {
		if fi, serr := os.Lstat(path); serr == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path)
		}
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// Request asks the supervisor behind pidfile to run op and waits for the
// outcome. ok reports success; lines are what the supervisor said.
func Request(ctx context.Context, pidfile, op string) (ok bool, lines []string, err error) {
	path := ControlPath(pidfile)
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return false, nil, fmt.Errorf("reach srp at %s (is it running with -pidfile %s?): %w", path, pidfile, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "%s\n", op); err != nil {
		return false, nil, fmt.Errorf("send %s request: %w", op, err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var status string
	for sc.Scan() {
		if status == "" {
			status = sc.Text()
			continue
		}
		if t := sc.Text(); t != "" {
			lines = append(lines, t)
		}
	}
	if err := sc.Err(); err != nil {
		return false, lines, fmt.Errorf("read %s answer: %w", op, err)
	}
	switch status {
	case "ok":
		return true, lines, nil
	case "error":
		return false, lines, nil
	}
	return false, lines, fmt.Errorf("read %s answer: srp closed the connection without one", op)
}
