package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"srp/supervisor/link"
)

// request is a reload or upgrade asked for by a signal (reply nil) or a
// control-socket client, or a control client's status query (status set).
type request struct {
	op     string
	reply  chan<- result
	status chan<- statusSnap // buffered; answered at once
}

// result is the outcome of one operation, sent to every waiter.
type result struct {
	err      error  // nil on success; its lines are printed one per line
	msg      string // what happened, on success
	rejected bool   // err is the config's problems: nothing was started
}

var errShuttingDown = errors.New("srp is shutting down")

// serveControl answers clients on ln until it is closed. done is closed when
// the lifecycle loop has stopped taking requests.
func serveControl(ln net.Listener, requests chan<- request, done <-chan struct{}, log *slog.Logger) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			delay = 0
			go handleControl(c, requests, done)
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
		// Running out of descriptors (EMFILE) or memory passes: an srp
		// that stopped answering here could never be reloaded again.
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		log.Warn("control socket accept failed, retrying", "err", err, "in", delay.String())
		select {
		case <-time.After(delay):
		case <-done:
			return
		}
	}
}

func handleControl(c net.Conn, requests chan<- request, done <-chan struct{}) {
	defer c.Close()
	op, err := link.ReadRequest(c)
	if err != nil {
		return
	}
	var res result
	switch op {
	case link.OpReload, link.OpUpgrade:
		reply := make(chan result, 1)
		if res.err = send(requests, done, request{op: op, reply: reply}); res.err == nil {
			select {
			case res = <-reply:
			case <-done:
				res.err = errShuttingDown
			}
		}
	case link.OpStatus:
		res = askStatus(requests, done)
	default:
		res.err = fmt.Errorf("unknown request %q", op)
	}
	link.WriteAnswer(c, res.msg, res.err)
}

// send hands req to the lifecycle loop, unless it has stopped.
func send(requests chan<- request, done <-chan struct{}, req request) error {
	select {
	case requests <- req:
		return nil
	case <-done:
		return errShuttingDown
	}
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
