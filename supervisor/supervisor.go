// Package supervisor owns srp's process lifecycle: it holds the listening
// sockets, runs one worker process that serves them, replaces that worker
// on a config reload, hands everything to a new srp binary on an upgrade,
// restarts a worker that dies, and drains on shutdown.
//
// Invariants: the listening sockets never close while srp runs, so a
// connection waits in the backlog rather than being refused; an old worker
// is told to drain only after its successor reported ready; one reload or
// upgrade runs at a time, and all lifecycle state belongs to the single
// goroutine running the loop in Run.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"

	"srp/supervisor/counters"
	"srp/supervisor/link"
)

// Options configure a supervisor. Zero values take the defaults named on each field.
type Options struct {
	Addrs      []string // TCP addresses to listen on, in the order workers expect them; required
	WorkerArgs []string // passed to every "srp worker" unchanged (the run flags)
	ConfigPath string   // read at start and on every reload; required
	// Validate checks a config before any worker sees it; nil accepts anything.
	Validate func(path string, data []byte) error
	PIDFile  string // written once serving; "" means no pidfile and no control socket
	// AccessLog is the file workers write their access log to, opened by
	// the supervisor and reopened on SIGUSR1; "" hands them none.
	AccessLog string
	// Version is what "srp status" reports this binary as; "" reports none.
	Version string
	// CertCache is the ACME certificate cache whose certificates "srp
	// status" lists; "" (plain HTTP) lists none.
	CertCache string

	ReadyTimeout time.Duration // how long a new worker or binary may take to be ready; default 30s
	DrainTimeout time.Duration // how long a retiring worker may drain before it is killed; default 30s
	// DrainDelay is how long srp keeps serving after SIGTERM or SIGINT
	// while /ready answers 503, so a balancer takes it out before it
	// stops accepting; 0 drains at once. A second signal ends the delay.
	DrainDelay  time.Duration
	KeyRotation time.Duration // how long one session-ticket key encrypts at most; default 24h
	MaxCrashes  int           // worker deaths within CrashWindow that make srp give up; default 5
	CrashWindow time.Duration // default 1m
	Logger      *slog.Logger  // default slog.Default()

	// Lockdown restricts the supervisor once its sockets are open, before
	// the first worker starts; nil restricts nothing.
	Lockdown func() error
	// StartWorker starts a worker process; nil means cmd.Start.
	StartWorker func(cmd *exec.Cmd) error
}

// killMargin is how long after its own drain deadline a worker gets to exit
// before it is killed: the worker enforces the deadline, this is the backstop.
const killMargin = 5 * time.Second

// Operations the loop runs, one at a time.
const (
	opStart   = "start"
	opRespawn = "respawn"
)

// queue collects the waiters of an operation that was asked for while
// another one ran: all of them get the result of one follow-up run.
type queue struct {
	pending bool
	waiters []chan<- result
}

type supervisor struct {
	o         Options
	log       *slog.Logger
	upg       *tableflip.Upgrader
	w         world // what the lifecycle does outside this struct
	wc        workerCommand
	listeners []heldListener // handed to every worker
	region    *counters.Region
	logf      *os.File     // the access log file, handed to every worker; nil without one
	ctl       net.Listener // control socket; nil without a pidfile
	keys      [][32]byte   // session-ticket keys, newest first
	keysAt    time.Time    // when keys[0] was made
	config    []byte       // last config a worker became ready with
	gen       int

	cur      *proc          // serving worker; nil after a crash until the respawn is ready
	next     *proc          // worker being started by op
	nextConf []byte         // the config next was started with
	nextWhy  string         // what next is for: opStart, opRespawn or link.OpReload
	readyBy  time.Time      // when next is given up on
	procs    map[*proc]bool // every worker not yet reaped

	op        string          // operation in flight, "" when idle
	waiters   []chan<- result // of op
	reloadQ   queue
	upgradeQ  queue
	reopenQ   bool          // SIGUSR1: the access log was reopened; workers take the new file
	handover  *net.UnixConn // from the supervisor we took over from, until we serve
	crashes   []time.Time
	respawnAt time.Time // zero: no respawn scheduled
	parentUp  bool      // the supervisor we took over from has not exited yet
	stopping  bool
	leaveAt   time.Time // when a delayed stop drains; zero when not leaving
	successor int       // PID of the binary we handed over to
	exitErr   error

	// For status: what the loop knows that it does not act on.
	startedAt   time.Time
	configAt    time.Time // when the worker's config was read and served
	parentPID   int       // the supervisor we took over from; 0 if none
	lastReload  *OpStatus // nil: none yet
	lastUpgrade *OpStatus // nil: none yet

	events     chan procEvent
	requests   chan request
	upgraded   chan upgradeResult
	parentGone chan error
	done       chan struct{}
}

// Run supervises until srp is told to stop or hands over to a new binary.
// It returns nil after a clean stop or handover.
func Run(o Options) error {
	if len(o.Addrs) == 0 || o.ConfigPath == "" {
		return errors.New("supervisor: listen addresses and config path are required")
	}
	s := newSupervisor(o)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	if err := s.setup(); err != nil {
		s.tellOld(err)
		return err
	}
	defer s.upg.Stop()
	s.loop(sigs)
	close(s.done)
	return s.finalize()
}

// newSupervisor applies o's defaults; the caller sets s.w.
func newSupervisor(o Options) *supervisor {
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.MaxCrashes <= 0 {
		o.MaxCrashes = 5
	}
	if o.KeyRotation <= 0 {
		o.KeyRotation = defaultRotaton
	}
	if o.CrashWindow <= 0 {
		o.CrashWindow = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &supervisor{
		o: o, log: o.Logger, procs: map[*proc]bool{},
		events: make(chan procEvent), requests: make(chan request), upgraded: make(chan upgradeResult, 1),
		parentGone: make(chan error, 1), done: make(chan struct{}),
	}
}

// finalize removes the pidfile if it names us and reports how srp ended.
func (s *supervisor) finalize() error {
	if s.o.PIDFile != "" && s.successor == 0 {
		if removed, err := removePIDFile(s.o.PIDFile, s.w.pid); err != nil {
			s.log.Warn("pidfile", "err", err)
		} else if removed {
			s.log.Info("pidfile removed", "path", s.o.PIDFile)
		}
	}
	switch {
	case s.exitErr != nil:
		s.log.Error("supervisor stopped", "err", s.exitErr)
	case s.successor != 0:
		s.log.Info("supervisor stopped", "handed_over_to", s.successor)
	default:
		s.log.Info("supervisor stopped")
	}
	return s.exitErr
}

// setup takes over or opens the sockets and starts the first worker.
func (s *supervisor) setup() error {
	var err error
	s.upg, err = tableflip.New(tableflip.Options{UpgradeTimeout: s.o.ReadyTimeout + killMargin})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	s.w = s.realWorld()
	s.startedAt = s.w.now()
	if s.upg.HasParent() {
		s.parentPID = os.Getppid() // tableflip starts us as its child, and waits for us
		if err := s.takeHandover(); err != nil {
			return err
		}
		s.parentUp = true
		go func() { s.parentGone <- s.upg.WaitForParent(context.Background()) }()
	}
	if s.keys == nil {
		if err := s.rotateKeys(); err != nil {
			return err
		}
	}
	s.keysAt = s.w.now() // a key handed over is as good as new to us
	if err := s.openCounters(); err != nil {
		return err
	}
	if err := s.openAccessLog(); err != nil {
		return err
	}
	if s.wc, err = newWorkerCommand(s.o.WorkerArgs); err != nil {
		return err
	}
	s.wc.start = s.o.StartWorker
	data, err := s.readConfig()
	if err != nil {
		return err
	}
	for _, addr := range s.o.Addrs {
		ln, err := s.upg.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		h, err := holdListener(ln, addr)
		if err != nil {
			return err
		}
		s.listeners = append(s.listeners, h)
	}
	if s.o.PIDFile != "" {
		path := link.ControlPath(s.o.PIDFile)
		s.ctl, err = s.upg.ListenWithCallback("unix", path, func(_, addr string) (net.Listener, error) {
			return listenControl(addr)
		})
		if err != nil {
			return err
		}
	}
	if s.o.Lockdown != nil {
		if err := s.o.Lockdown(); err != nil {
			return err
		}
	}
	s.log.Info("supervisor starting", "addrs", fmt.Sprint(s.o.Addrs), "config", s.o.ConfigPath, "takeover", s.upg.HasParent())
	return s.begin(data)
}

// begin starts the first worker with config.
func (s *supervisor) begin(config []byte) error {
	s.op = opStart
	return s.spawnNext(config, opStart)
}

// readConfig reads and validates the config file.
func (s *supervisor) readConfig() ([]byte, error) {
	data, err := readLimited(s.o.ConfigPath, link.MaxConfig)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", s.o.ConfigPath, err)
	}
	if s.o.Validate != nil {
		if err := s.o.Validate(s.o.ConfigPath, data); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// loop is the one goroutine that owns the lifecycle. It returns once
// stopping and every worker has been reaped.
func (s *supervisor) loop(sigs <-chan os.Signal) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !s.stopping || len(s.procs) > 0 || s.op != "" {
		timer.Reset(s.nextDeadline().Sub(s.w.now()))
		select {
		case sig := <-sigs:
			s.onSignal(sig)
		case req := <-s.requests:
			s.onRequest(req)
		case e := <-s.events:
			s.onProc(e)
		case r := <-s.upgraded:
			s.onUpgraded(r)
		case err := <-s.parentGone:
			s.onParentGone(err)
		case <-timer.C:
			s.onTimer(s.w.now())
		}
	}
}

// nextDeadline is the earliest moment the loop must act without an event.
func (s *supervisor) nextDeadline() time.Time {
	d := s.w.now().Add(time.Hour)
	if s.next != nil && s.readyBy.Before(d) {
		d = s.readyBy
	}
	if s.next == nil && (s.op == "" || s.op == link.OpUpgrade) && !s.respawnAt.IsZero() && s.respawnAt.Before(d) {
		d = s.respawnAt
	}
	if s.op == "" && s.cur != nil && s.next == nil && !s.keysAt.IsZero() && s.keysAt.Add(s.o.KeyRotation).Before(d) {
		d = s.keysAt.Add(s.o.KeyRotation)
	}
	for p := range s.procs {
		if !p.killAt.IsZero() && p.killAt.Before(d) {
			d = p.killAt
		}
	}
	if !s.leaveAt.IsZero() && s.leaveAt.Before(d) {
		d = s.leaveAt
	}
	return d
}

func (s *supervisor) onSignal(sig os.Signal) {
	switch sig {
	case syscall.SIGHUP:
		s.onRequest(request{op: link.OpReload})
	case syscall.SIGUSR2:
		s.onRequest(request{op: link.OpUpgrade})
	case syscall.SIGUSR1:
		s.onReopen()
	default:
		switch {
		case s.stopping:
			s.log.Info("signal ignored: already stopping", "signal", sig.String())
		case s.o.DrainDelay > 0 && s.leaveAt.IsZero():
			s.leave(sig)
		default:
			s.log.Info("shutting down", "signal", sig.String())
			s.shutdown(nil)
		}
	}
}

func (s *supervisor) onTimer(now time.Time) {
	if p := s.next; p != nil && !now.Before(s.readyBy) {
		s.next = nil
		p.drain(now.Add(s.o.DrainTimeout + killMargin))
		s.nextFailed(fmt.Sprintf("worker pid %d not ready within %s", p.pid, s.o.ReadyTimeout))
	}
	for p := range s.procs {
		if !p.killAt.IsZero() && !now.Before(p.killAt) {
			s.log.Warn("worker did not exit in time, killing it", "gen", p.gen, "worker_pid", p.pid)
			p.killAt = time.Time{}
			p.stop()
		}
	}
	if !s.respawnAt.IsZero() && !now.Before(s.respawnAt) || s.rotateDue(now) {
		s.startNext()
	}
	if !s.leaveAt.IsZero() && !now.Before(s.leaveAt) && !s.stopping {
		s.log.Info("shutting down", "after", s.o.DrainDelay.String())
		s.shutdown(nil)
	}
}

// readLimited reads the file at path, refusing one longer than limit: a
// worker could not be sent it.
func readLimited(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("file is larger than the %d MiB a worker accepts", limit>>20)
	}
	return data, nil
}
