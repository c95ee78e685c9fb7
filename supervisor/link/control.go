package link

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// The control socket carries one request per connection: a line naming the
// operation ("reload" or "upgrade"), answered by "ok" or "error" on the
// first line and the details on the following lines once the operation has
// finished. Signals start the same operations but cannot carry the answer.
//
// "status" is answered at once: "ok" and then one line holding a JSON
// object of at most MaxStatus bytes, or "error" and why. An srp that
// predates it answers "error" (unknown request).

// Operation names on the control socket.
const (
	OpReload  = "reload"
	OpUpgrade = "upgrade"
	OpStatus  = "status"
)

// MaxStatus bounds the JSON line of a status answer.
const MaxStatus = 512 << 10

// ErrNotRunning means nothing answers on the control socket: no srp runs
// with that pidfile, or it has not started serving yet.
var ErrNotRunning = errors.New("srp is not running")

// maxRequestLine bounds what the supervisor reads from a control client.
const maxRequestLine = 64

// ControlTimeout bounds each side of one control exchange on the
// supervisor's end; the operation itself may take longer.
const ControlTimeout = 10 * time.Second

// ReadRequest reads the operation a control client asks for; it is not
// checked against the known ones.
func ReadRequest(c net.Conn) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(ControlTimeout))
	line, err := bufio.NewReader(io.LimitReader(c, maxRequestLine)).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read control request: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// WriteAnswer answers a control client: err's text, or msg on success.
func WriteAnswer(c net.Conn, msg string, err error) {
	_ = c.SetWriteDeadline(time.Now().Add(ControlTimeout))
	if err != nil {
		fmt.Fprintf(c, "error\n%s\n", err)
		return
	}
	fmt.Fprintf(c, "ok\n%s\n", msg)
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

// Status asks the supervisor behind pidfile how it is and returns its
// JSON answer. When no srp answers the error wraps ErrNotRunning.
func Status(ctx context.Context, pidfile string) ([]byte, error) {
	path := ControlPath(pidfile)
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w with -pidfile %s (nothing answers on %s): %w", ErrNotRunning, pidfile, path, err)
		}
		return nil, fmt.Errorf("reach srp at %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "%s\n", OpStatus); err != nil {
		return nil, fmt.Errorf("send status request: %w", err)
	}
	// "error\n" and a message, or "ok\n" and the JSON line; a few bytes
	// over MaxStatus tell a longer answer from one that fits.
	b, err := io.ReadAll(io.LimitReader(c, MaxStatus+64))
	if err != nil {
		return nil, fmt.Errorf("read status answer: %w", err)
	}
	status, rest, _ := strings.Cut(string(b), "\n")
	rest = strings.TrimSpace(rest)
	switch {
	case status == "error":
		return nil, fmt.Errorf("srp answered: %s", rest)
	case status != "ok":
		return nil, errors.New("read status answer: srp closed the connection without one")
	case !strings.HasPrefix(rest, "{") || strings.Contains(rest, "\n"):
		return nil, errors.New("read status answer: not one JSON object")
	case len(rest) > MaxStatus:
		return nil, fmt.Errorf("read status answer: longer than %d bytes", MaxStatus)
	}
	return []byte(rest), nil
}

// ControlPath is the unix socket that "srp reload" and "srp upgrade" use
// to reach the supervisor whose pidfile is pidfile: the same name with
// ".sock" in place of a ".pid" extension.
func ControlPath(pidfile string) string {
	return strings.TrimSuffix(pidfile, ".pid") + ".sock"
}
