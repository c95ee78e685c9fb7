package platform

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Linux has no pledge; the worker gets no_new_privs and Landlock instead.
//
// Landlock and no_new_privs apply per thread, and Go can apply them to all
// of a process's threads only in binaries without cgo (race-enabled and
// most default builds use cgo). So StartWorker applies them to one thread
// of the supervisor that forks the worker and then ends: the worker starts
// restricted, every thread of it. Its domain must then also allow what exec
// and Go's start-up read (execRules). A worker without cgo narrows that in
// Lockdown to lockdownRules.
//
// The supervisor stays unrestricted on Linux: it execs new binaries on
// upgrade, and each generation would add a Landlock layer (16 at most).

// Lockdown restricts role. For the worker: no_new_privs and, best effort,
// Landlock, logged once as "landlock: ABI vN applied" or "landlock: not
// available" with the reason. For the supervisor it only prepares.
func Lockdown(role Role, p Paths, log *slog.Logger) error {
	if err := prepare(role, p); err != nil {
		return err
	}
	if role != Worker {
		return nil
	}
	log = logger(log)
	abi, err := landlockABI()
	if err != nil {
		log.Info("landlock: not available", "reason", err.Error())
		return setNoNewPrivs()
	}
	rules := lockdownRules(p)
	switch err := restrictProcess(rules, abi); {
	case err == nil:
		log.Info(fmt.Sprintf("landlock: ABI v%d applied", abi), "since", "lockdown", "paths", describe(rules))
	case inDomain():
		log.Info(fmt.Sprintf("landlock: ABI v%d applied", abi), "since", "exec", "paths", describe(execRules(p)))
	default:
		log.Warn("landlock: not available", "reason", err.Error()+"; and this worker was not started restricted")
	}
	return setNoNewPrivs()
}

// setNoNewPrivs makes sure the calling thread has no_new_privs; the others
// have it from StartWorker or restrictProcess.
func setNoNewPrivs() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("lockdown: no_new_privs: %w", err)
	}
	return nil
}

// StartWorker starts the worker process cmd, as p.User if set, with
// no_new_privs and, where the kernel has it, a Landlock domain limited to
// what a worker needs (execRules). If Landlock cannot be applied the worker
// still starts, and the failure is logged.
//
// It also gives the worker the supervisor's GOMAXPROCS, because the worker
// cannot read the cgroup files the runtime derives it from, standard input
// from /dev/null opened here, so the restricted thread opens nothing, and
// a timer slack of workerTimerSlack.
func StartWorker(cmd *exec.Cmd, p Paths, log *slog.Logger) error {
	if err := applyCredential(cmd, p.User); err != nil {
		return err
	}
	// The domain can only grant a directory that exists.
	prepareCache(p, p.User)
	if cmd.Stdin == nil {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		defer null.Close()
		cmd.Stdin = null
	}
	if os.Getenv("GOMAXPROCS") == "" {
		cmd.Env = append(cmd.Environ(), "GOMAXPROCS="+strconv.Itoa(runtime.GOMAXPROCS(0)))
	}
	abi, _ := landlockABI() // 0 without Landlock: the worker logs why
	rules := execRules(p)
	var startErr, restrictErr, slackErr error
	onDisposableThread(func() {
		restrictErr = restrictThread(rules, abi)
		// Every thread of the worker inherits the slack, the runtime's
		// sysmon among them, which exists before any code of ours runs.
		slackErr = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(workerTimerSlack), 0, 0, 0)
		startErr = cmd.Start()
	})
	if restrictErr != nil {
		logger(log).Warn("landlock: worker started without it", "err", restrictErr.Error())
	}
	if slackErr != nil {
		logger(log).Warn("worker started with the default timer slack", "err", slackErr.Error())
	}
	return startErr
}

// workerTimerSlack is how late the kernel may wake the worker's timed
// sleeps. Go's sysmon thread sleeps 20 µs at a time while the worker is
// busy, and with the default 50 µs of slack it took the core from the
// worker and its backends some 4,000 times a second under load: a fifth
// of the worker's CPU per new connection. Every timer of the worker
// counts in seconds, so a millisecond late costs nothing there; what waits
// longer is the runtime handing a goroutine's processor to another thread
// while a system call blocks, which the worker's non-blocking sockets
// rarely do.
const workerTimerSlack = time.Millisecond

// onDisposableThread runs f on an OS thread that ends when f returns, so
// whatever f does to its thread reaches nothing else. The runtime ends a
// thread whose goroutine exits locked to it, except the main thread, which
// it parks for good; so f never runs there.
func onDisposableThread(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked on the thread f runs on
		if unix.Gettid() == unix.Getpid() {
			// While this goroutine holds the main thread, the new one
			// cannot be scheduled onto it.
			onDisposableThread(f)
			runtime.UnlockOSThread()
		} else {
			f()
		}
		close(done)
	}()
	<-done
}
