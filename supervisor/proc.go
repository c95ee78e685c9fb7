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
	"sync"
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

	kill func()            // the process, at once
	out  chan link.Message // to the writer goroutine, so that no write blocks the loop
	gone chan struct{}     // closed once the process is reaped

	mu        sync.Mutex // guards failText and killedFor: the reader and writer both note failures
	failText  string     // what the worker said about failing, at most maxFailText bytes
	killedFor string     // why the supervisor killed it, if it did
}

// A worker says why it failed in a line or two; one that keeps talking is
// broken or hostile and is killed before it costs the supervisor memory.
const (
	maxFailText = 4 << 10 // bytes of a worker's failure text the supervisor keeps
	maxMessages = 64      // messages a worker may send in its life
)

// procEvent is what the watcher goroutines report to the lifecycle loop.
type procEvent struct {
	p      *proc
	ready  bool  // link.Ready arrived
	exited bool  // the process was reaped
	status error // exit status when exited (nil: exit 0)
}

// workerCommand says how worker processes are started.
type workerCommand struct {
	path string      // executable; /proc/self/exe on Linux so a replaced binary on disk is not run by mistake
	args []string    // argv, argv[0] included
	self os.FileInfo // path as it was at start, where path can be replaced; nil on Linux

	start func(*exec.Cmd) error // nil: cmd.Start
}

func newWorkerCommand(args []string) (workerCommand, error) {
	wc := workerCommand{path: "/proc/self/exe", args: append([]string{os.Args[0], "worker"}, args...)}
	if runtime.GOOS == "linux" {
		return wc, nil
	}
	// Elsewhere a worker runs whatever file is at our path now, which an
	// install may have replaced: remember what it was to refuse another.
	var err error
	if wc.path, err = os.Executable(); err != nil {
		return workerCommand{}, fmt.Errorf("find own executable: %w", err)
	}
	if wc.self, err = os.Stat(wc.path); err != nil {
		return workerCommand{}, fmt.Errorf("find own executable: %w", err)
	}
	return wc, nil
}

// check refuses to start a worker from a binary other than the one this
// supervisor runs: a worker and its supervisor would speak different
// versions of the link, and a reload would quietly run a new release
// without the upgrade that should bring it.
func (wc workerCommand) check() error {
	if wc.self == nil {
		return nil
	}
	fi, err := os.Stat(wc.path)
	if err == nil && os.SameFile(fi, wc.self) && fi.Size() == wc.self.Size() && fi.ModTime().Equal(wc.self.ModTime()) {
		return nil
	}
	return fmt.Errorf("the srp binary at %s is not the one this supervisor runs (replaced on disk?): no worker is started from it; run srp upgrade to use it", wc.path)
}

// spawn starts worker generation gen with the listener files and sends its
// start-up messages. Its progress arrives on events.
func spawn(wc workerCommand, gen int, files []*os.File, config []byte, keys [][32]byte, events chan<- procEvent, done <-chan struct{}) (*proc, error) {
	if err := wc.check(); err != nil {
		return nil, err
	}
	ours, theirs, err := socketPair("control")
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:       wc.path,
		Args:       wc.args,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: append([]*os.File{theirs}, files...),
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
	p := newProc(gen, cmd, ours)
	p.send(link.Config, config)
	p.send(link.Keys, link.EncodeKeys(keys))
	p.watch(events, done)
	return p, nil
}

// newProc is a started worker process and the supervisor's end of its link.
func newProc(gen int, cmd *exec.Cmd, conn *net.UnixConn) *proc {
	return &proc{gen: gen, pid: cmd.Process.Pid, cmd: cmd, conn: conn, started: time.Now(),
		kill: func() { _ = cmd.Process.Kill() }, out: make(chan link.Message, 4), gone: make(chan struct{})}
}

// send queues a message for the worker. A worker that does not take its
// messages cannot serve: it is killed, and its exit reports why.
func (p *proc) send(typ link.Type, payload []byte) {
	select {
	case p.out <- link.Message{Type: typ, Payload: payload}:
	default:
		p.note(fmt.Sprintf("%s message not sent: worker is not reading its control socket", typ))
		p.kill()
	}
}

// note adds a line to what the supervisor keeps of a worker's failure.
func (p *proc) note(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failText) >= maxFailText {
		return
	}
	t := appendLine(p.failText, line)
	if len(t) > maxFailText {
		t = strings.ToValidUTF8(t[:maxFailText], "") + " …(cut)"
	}
	p.failText = t
}

func (p *proc) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return appendLine(p.killedFor, p.failText)
}

// watch writes what is sent to the worker, reports link.Ready as it
// arrives and the exit once the process is reaped and its messages are
// all read, so the failure text is complete by then.
func (p *proc) watch(events chan<- procEvent, done <-chan struct{}) {
	report := func(e procEvent) {
		select {
		case events <- e:
		case <-done:
		}
	}
	go func() {
		for {
			select {
			case m := <-p.out:
				if err := link.Write(p.conn, m.Type, m.Payload); err != nil {
					select {
					case <-p.gone: // it exited first; its exit says why
					default:
						if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
							p.note(err.Error())
						}
						p.kill()
					}
					return
				}
			case <-p.gone:
				return
			}
		}
	}()
	read := make(chan struct{})
	go func() {
		defer close(read)
		for n := 1; ; n++ {
			m, err := link.Read(p.conn)
			if err != nil {
				// A worker that exits before reading what it was sent
				// resets the connection: its exit status says more.
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ECONNRESET) {
					p.note("control socket: " + err.Error())
				}
				return
			}
			switch {
			case n > maxMessages:
				p.mu.Lock()
				p.killedFor = fmt.Sprintf("killed: sent more than %d messages", maxMessages)
				p.mu.Unlock()
			case m.Type == link.Ready:
				report(procEvent{p: p, ready: true})
				continue
			case m.Type == link.Error:
				p.note(string(m.Payload))
				continue
			default:
				p.note(fmt.Sprintf("unexpected %s message from worker", m.Type))
			}
			p.kill()
			return
		}
	}()
	go func() {
		err := p.cmd.Wait()
		close(p.gone)
		<-read
		p.conn.Close()
		report(procEvent{p: p, exited: true, status: err})
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
	p.send(link.Drain, nil)
}

func (p *proc) stop() {
	p.drained = true
	p.kill()
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
	if t := strings.TrimSpace(p.text()); t != "" {
		msg += ": " + t
	}
	return msg
}
