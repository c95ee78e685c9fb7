package worker

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"srp/registry"
	"srp/supervisor/counters"
	"srp/supervisor/link"
	"srp/worker/accesslog"
)

// Process is a worker process's start-up, in its one safe order: take over
// what the supervisor handed it (listeners, config, ticket keys), parse the
// config, lock the process down, serve, and report each outcome back.
type Process struct {
	ConfigPath string // for error messages; the bytes come from the supervisor
	Listeners  int    // how many listeners the supervisor hands over
	// Lockdown restricts the process once the config is parsed and before
	// it serves; nothing is read from disk afterwards but what it allows.
	Lockdown func() error
	// Options maps the parsed config and the inherited listeners, in the
	// supervisor's order, onto the worker's options.
	Options func(*registry.Snapshot, []net.Listener) Options
	Logger  *slog.Logger
	// DrainDelay set: srp stops with a delay, so the worker leaves stopping
	// to its supervisor even when a signal reaches the whole process group.
	DrainDelay bool
	// AccessLog is the access log's format; LogFile says the supervisor
	// hands over a file for it, else it goes to standard error.
	AccessLog accesslog.Format
	LogFile   bool
}

// RunProcess serves until the supervisor says to drain or goes away, and
// returns the process's exit code.
func RunProcess(p Process) int {
	log := p.Logger
	// Signals meant for the supervisor also reach a worker in the same
	// process group (Ctrl-C, a terminal hangup): only SIGTERM and SIGINT
	// mean anything here, and they mean drain.
	signal.Ignore(syscall.SIGHUP, syscall.SIGUSR2)
	w, err := link.Attach(p.Listeners, p.LogFile)
	if err != nil {
		log.Error("worker start", "err", err)
		return 2
	}
	region, err := counters.Open(w.Counters)
	if err != nil {
		w.Fail(err)
		return 1
	}
	snap, err := registry.Parse(p.ConfigPath, w.Config)
	if err != nil {
		w.Fail(err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	unready := new(atomic.Bool)
	go func() {
		log.Info("worker draining", "why", w.WaitDrain(func() {
			unready.Store(true)
			log.Info("worker unready: srp is leaving")
		}))
		cancel()
	}()
	if p.DrainDelay {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	}
	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := p.Lockdown(); err != nil {
		w.Fail(err)
		log.Error("worker lockdown", "err", err)
		return 1
	}
	o := p.Options(snap, w.Listeners)
	o.TicketKeys, o.Counters, o.Unready = w.TicketKeys, region, unready
	if p.AccessLog != accesslog.Off {
		out := w.AccessLog
		if out == nil {
			out = os.Stderr // shared with the event log, one write per line
		}
		o.AccessLog = accesslog.New(p.AccessLog, out)
	}
	ready := func() {
		if err := w.Ready(); err != nil {
			log.Error("report ready", "err", err)
		}
	}
	if err := Run(sigCtx, o, ready); err != nil {
		w.Fail(err)
		log.Error("worker", "err", err)
		return 1
	}
	return 0
}
