package link

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// A worker process finds its control socket at fd 3, the listeners, in
// the supervisor's order, from fd 4 on (exec.Cmd.ExtraFiles numbering),
// then the counter region, then the access log file if it has one.
const (
	ControlFD   = 3
	FirstListen = 4
)

// Worker is a worker process's end of the supervisor link: what it was
// handed at start, and the channel on which it reports and is told to drain.
type Worker struct {
	Config     []byte         // the config file's bytes, validated by the supervisor
	TicketKeys [][32]byte     // TLS session-ticket keys owned by the supervisor, current first
	Listeners  []net.Listener // in the order of the supervisor's addresses
	Counters   *os.File       // the shared counter region (supervisor/counters)
	AccessLog  *os.File       // the access log file; nil when none was handed over

	conn *net.UnixConn
}

// Attach takes over the descriptors a supervisor handed this process and
// reads its start-up messages. n is the number of listeners to expect,
// withLog whether an access log file follows the counter region.
func Attach(n int, withLog bool) (*Worker, error) {
	f := os.NewFile(ControlFD, "control")
	if f == nil {
		return nil, errors.New("no control socket: srp worker is started by the supervisor only")
	}
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("no control socket (srp worker is started by the supervisor only): %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, errors.New("control descriptor is not a unix socket")
	}
	w := &Worker{conn: uc}
	for i := range n {
		lf := os.NewFile(uintptr(FirstListen+i), fmt.Sprintf("listener%d", i))
		ln, err := net.FileListener(lf) // dups, keeping the socket non-blocking
		lf.Close()
		if err != nil {
			w.close()
			return nil, fmt.Errorf("inherit listener %d: %w", i, err)
		}
		w.Listeners = append(w.Listeners, ln)
	}
	w.Counters = os.NewFile(uintptr(FirstListen+n), "counters")
	if withLog {
		w.AccessLog = os.NewFile(uintptr(FirstListen+n+1), "access log")
	}
	if w.Counters == nil || withLog && w.AccessLog == nil {
		w.close()
		return nil, errors.New("the supervisor handed over too few descriptors")
	}
	for w.Config == nil || w.TicketKeys == nil {
		m, err := Read(uc)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("read start-up messages: %w", err)
		}
		switch m.Type {
		case Config:
			w.Config = m.Payload
		case Keys:
			if w.TicketKeys, err = DecodeKeys(m.Payload); err != nil {
				w.close()
				return nil, err
			}
		default:
			w.close()
			return nil, fmt.Errorf("%w: %s message before start-up finished", ErrProtocol, m.Type)
		}
	}
	return w, nil
}

func (w *Worker) close() {
	w.conn.Close()
	for _, ln := range w.Listeners {
		ln.Close()
	}
}

// Ready tells the supervisor this worker is serving.
func (w *Worker) Ready() error { return Write(w.conn, Ready, nil) }

// Fail tells the supervisor why this worker cannot serve.
func (w *Worker) Fail(err error) { _ = Write(w.conn, Error, ErrorText(err)) }

// WaitDrain blocks until the worker must retire and says why: the
// supervisor asked it to drain, or the supervisor is gone (its end of the
// socket closed), in which case nothing else will ever retire this worker.
// A malformed message is also a reason to retire: the link can no longer
// be trusted.
//
// unready is called when the supervisor says srp is leaving: the worker
// goes on serving, but tells balancers not to send it more.
func (w *Worker) WaitDrain(unready func()) string {
	for {
		m, err := Read(w.conn)
		switch {
		case err == nil && m.Type == Unready:
			unready()
			continue
		case err == nil && m.Type == Drain:
			return "supervisor asked to drain"
		case err == nil:
			return fmt.Sprintf("unexpected %s message from supervisor", m.Type)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return "supervisor gone"
		}
		return err.Error()
	}
}
