package supervisor

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"srp/supervisor/link"
)

// proc is one worker process as the supervisor sees it. Its fields are
// owned by the lifecycle goroutine, except those the watcher goroutines
// fill in before they report (see watch).
type proc struct {
	gen     int
	pid     int
	cmd     *exec.Cmd
	conn    *net.UnixConn
	started time.Time
	ready   bool
	drained bool      // DRAIN sent or process killed: its exit is expected
	killAt  time.Time // when a draining or failed worker is killed; zero if not armed

	failText string // last link.Error text, set by the reader before it finishes
}

// procEvent is what the watcher goroutines report to the lifecycle loop.
type procEvent struct {
	p      *proc
	ready  bool  // link.Ready arrived
	exited bool  // the process was reaped
	status error // exit status when exited (nil: exit 0)
}

// workerCommand says how worker processes are started.
type workerCommand struct {
	path string   // executable; /proc/self/exe on Linux so a replaced binary on disk is not run by mistake
	args []string // argv, argv[0] included

	start func(*exec.Cmd) error // nil: cmd.Start
}

func newWorkerCommand(args []string) (workerCommand, error) {
	path := "/proc/self/exe"
	if runtime.GOOS != "linux" {
		var err error
		if path, err = os.Executable(); err != nil {
			return workerCommand{}, fmt.Errorf("find own executable: %w", err)
		}
	}
	return workerCommand{path: path, args: append([]string{os.Args[0], "worker"}, args...)}, nil
}

// spawn starts worker generation gen with the listener files and sends its
// start-up messages. Its progress arrives on events.
func spawn(wc workerCommand, gen int, lns []*os.File, config []byte, keys [][32]byte, events chan<- procEvent, done <-chan struct{}) (*proc, error) {
	ours, theirs, err := socketPair("control")
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:       wc.path,
		Args:       wc.args,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: append([]*os.File{theirs}, lns...),
	}
	if wc.start != nil {
		err = wc.start(cmd)
	} else {
		err = cmd.Start()
	}
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	p := &proc{gen: gen, pid: cmd.Process.Pid, cmd: cmd, conn: ours, started: time.Now()}
	// Both messages fit in the socket buffer for any sane config; a worker
	// that dies first makes these fail, and its exit is reported anyway.
	_ = link.Write(ours, link.Config, config)
	_ = link.Write(ours, link.Keys, link.EncodeKeys(keys))
	p.watch(events, done)
	return p, nil
}

// watch reports link.Ready as it arrives and the exit once the process is
// reaped and its messages are all read, so failText is complete by then.
func (p *proc) watch(events chan<- procEvent, done <-chan struct{}) {
	send := func(e procEvent) {
		select {
		case events <- e:
		case <-done:
		}
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			m, err := link.Read(p.conn)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					p.failText = appendLine(p.failText, "control socket: "+err.Error())
				}
				return
			}
			switch m.Type {
			case link.Ready:
				send(procEvent{p: p, ready: true})
			case link.Error:
				p.failText = appendLine(p.failText, string(m.Payload))
			default:
				p.failText = appendLine(p.failText, fmt.Sprintf("unexpected %s message from worker", m.Type))
				_ = p.cmd.Process.Kill()
				return
			}
		}
	}()
	go func() {
		err := p.cmd.Wait()
		<-read
		p.conn.Close()
		send(procEvent{p: p, exited: true, status: err})
	}()
}

func appendLine(s, line string) string {
	if s == "" {
		return line
	}
	return s + "\n" + line
}

// drain asks the worker to retire; it exits once its connections are done.
func (p *proc) drain(deadline time.Time) {
	p.drained = true
	p.killAt = deadline
	_ = link.Write(p.conn, link.Drain, nil)
}

func (p *proc) kill() {
	p.drained = true
	_ = p.cmd.Process.Kill()
}

// describeExit turns a wait status into words for logs and CLI answers:
// "exit status 1", "killed by signal killed".
func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	return err.Error()
}

// reason explains why a worker that never became ready failed.
func (p *proc) reason(status error) string {
	msg := fmt.Sprintf("worker pid %d %s", p.pid, describeExit(status))
	if t := strings.TrimSpace(p.failText); t != "" {
		msg += ": " + t
	}
	return msg
}
