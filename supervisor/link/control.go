package link

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
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

// ControlPath is the unix socket that "srp reload" and "srp upgrade" use
// to reach the supervisor whose pidfile is pidfile: the same name with
// ".sock" in place of a ".pid" extension.
func ControlPath(pidfile string) string {
	return strings.TrimSuffix(pidfile, ".pid") + ".sock"
}
