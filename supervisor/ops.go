package supervisor

import (
	"errors"
	"fmt"
	"time"

	"srp/supervisor/counters"
	"srp/supervisor/link"
)

// onRequest queues a reload or upgrade; requests that arrive while one
// runs are coalesced into a single follow-up. A status query is answered
// at once.
func (s *supervisor) onRequest(req request) {
	if req.op == link.OpStatus {
		req.status <- s.snapshot()
		return
	}
	if s.stopping || !s.leaveAt.IsZero() {
		err := errors.New("srp is shutting down")
		if s.successor != 0 {
			err = fmt.Errorf("srp handed over to pid %d; send the request there", s.successor)
		}
		s.log.Info("request ignored", "op", req.op, "reason", err.Error())
		reply(req.reply, result{err: err})
		return
	}
	q := &s.reloadQ
	if req.op == link.OpUpgrade {
		q = &s.upgradeQ
	}
	q.pending = true
	if req.reply != nil {
		q.waiters = append(q.waiters, req.reply)
	}
	if s.op != "" {
		s.log.Info("request queued behind running operation", "op", req.op, "running", s.op)
	}
	s.startNext()
}

func reply(ch chan<- result, r result) {
	if ch != nil {
		ch <- r // buffered by the requester
	}
}

// startNext starts the next operation if none runs: a due respawn first,
// then a queued reload, then a queued upgrade (once the supervisor we took
// over from is gone: tableflip allows one upgrade per generation), then a
// due key rotation.
func (s *supervisor) startNext() {
	if s.stopping {
		return
	}
	if s.respawnDue(s.w.now()) {
		// An upgrade starts no worker here and may take -timeout+5s: a
		// respawn does not wait for it, or nothing would serve meanwhile.
		s.respawnAt = time.Time{}
		if s.op == "" {
			s.op = opRespawn
		}
		s.count(counters.WorkerRestarts)
		if err := s.spawnNext(s.config, opRespawn); err != nil {
			s.nextFailed(err.Error())
		}
		return
	}
	if s.op == "" && s.next != nil {
		// A respawn started during an upgrade outlived it: it is the
		// operation in flight now, and next is its slot.
		s.op = opRespawn
	}
	if s.op != "" {
		return
	}
	switch {
	case s.reloadQ.pending:
		s.op, s.waiters, s.reloadQ = link.OpReload, s.reloadQ.waiters, queue{}
		s.log.Info("reload started", "config", s.o.ConfigPath)
		data, err := s.readConfig()
		if err != nil {
			s.log.Error("reload rejected, old config still serving", "err", err)
			s.count(counters.ReloadsRejected)
			s.finish(result{err: err, rejected: true})
			return
		}
		if err := s.rotateKeys(); err != nil {
			s.log.Error("reload failed, old worker still serving", "reason", err.Error())
			s.finish(result{err: err})
			return
		}
		if err := s.spawnNext(data, link.OpReload); err != nil {
			s.nextFailed(err.Error())
		}
	case s.upgradeQ.pending && !s.parentUp:
		s.op, s.waiters, s.upgradeQ = link.OpUpgrade, s.upgradeQ.waiters, queue{}
		s.startUpgrade()
	case s.reopenQ:
		s.reopenQ = false
		s.startReplace(opReopen)
	case s.rotateDue(s.w.now()):
		s.startRotation()
	}
}

// respawnDue reports whether a respawn may start now: one is scheduled
// and due, no worker serves or starts, and no reload holds the next slot.
func (s *supervisor) respawnDue(now time.Time) bool {
	return s.cur == nil && s.next == nil && !s.respawnAt.IsZero() && !now.Before(s.respawnAt) &&
		(s.op == "" || s.op == link.OpUpgrade)
}

// spawnNext starts the worker that op waits for.
func (s *supervisor) spawnNext(config []byte, why string) error {
	s.gen++
	s.nextWhy = why
	p, err := s.w.spawn(s.gen, config, s.keys)
	if err != nil {
		return err
	}
	s.procs[p] = true
	if !s.leaveAt.IsZero() {
		p.send(link.Unready, nil) // a respawn while leaving
	}
	s.next, s.nextConf, s.readyBy = p, config, s.w.now().Add(s.o.ReadyTimeout)
	s.log.Info("worker started", "gen", p.gen, "worker_pid", p.pid, "why", why)
	return nil
}

// finish answers everyone waiting for the operation in flight and starts
// whatever is queued.
func (s *supervisor) finish(r result) {
	s.answer(r)
	s.startNext()
}

// answer tells everyone waiting for the operation in flight how it ended.
func (s *supervisor) answer(r result) {
	s.noteResult(r)
	for _, w := range s.waiters {
		reply(w, r)
	}
	s.op, s.waiters = "", nil
}

func (s *supervisor) onProc(e procEvent) {
	p := e.p
	if e.ready {
		if p != s.next {
			return // already given up on; it is draining
		}
		s.promote(p)
		return
	}
	delete(s.procs, p)
	switch {
	case p == s.next:
		s.next = nil
		s.nextFailed(p.reason(e.status))
	case p.drained:
		if p == s.cur {
			s.cur = nil
		}
		s.log.Info("worker exited", "gen", p.gen, "worker_pid", p.pid, "status", describeExit(e.status))
	case p == s.cur:
		s.cur = nil
		s.log.Error("worker died", "gen", p.gen, "worker_pid", p.pid, "status", describeExit(e.status))
		s.crashed()
	default:
		s.log.Warn("worker exited unexpectedly", "gen", p.gen, "worker_pid", p.pid, "status", describeExit(e.status))
	}
}

// promote makes the ready worker the serving one and retires its predecessor.
func (s *supervisor) promote(p *proc) {
	old := s.cur
	s.cur, s.next, s.config = p, nil, s.nextConf
	s.respawnAt = time.Time{}
	p.ready = true
	s.log.Info("worker ready", "gen", p.gen, "worker_pid", p.pid, "took", s.w.now().Sub(p.started).Round(time.Millisecond).String())
	if old != nil {
		s.log.Info("worker draining", "gen", old.gen, "worker_pid", old.pid, "limit", s.o.DrainTimeout.String())
		old.drain(s.w.now().Add(s.o.DrainTimeout + killMargin))
	}
	switch s.nextWhy {
	case opStart:
		s.loaded(s.w.now())
		if err := s.serving(); err != nil {
			s.log.Error("start", "err", err)
			s.exitErr = err
			s.shutdown(err)
			return
		}
		s.finish(result{})
	case link.OpReload:
		s.count(counters.ReloadsOK)
		s.loaded(s.w.now())
		s.log.Info("reload done", "gen", p.gen, "worker_pid", p.pid)
		s.finish(result{msg: fmt.Sprintf("reloaded: worker pid %d serving %s", p.pid, s.o.ConfigPath)})
	case opRespawn:
		if s.op == opRespawn {
			s.finish(result{})
		}
	case opRotate:
		s.log.Info("session-ticket keys rotated", "gen", p.gen, "worker_pid", p.pid)
		s.finish(result{})
	case opReopen:
		s.log.Info("worker writes the reopened access log", "gen", p.gen, "worker_pid", p.pid)
		s.finish(result{})
	}
}

// serving completes the start: the supervisor we took over from (if any)
// is told to retire, then the pidfile names us, and the control socket
// answers. The pidfile is written only once the old supervisor can no
// longer kill us for being late, so it never names a process that died.
func (s *supervisor) serving() error {
	if err := s.w.ready(); err != nil {
		// Only a dead parent makes this fail. Nobody else serves now, so
		// giving up would leave the port to no one.
		s.log.Warn("previous supervisor gone before the handover, serving on", "err", err)
	}
	if s.o.PIDFile != "" {
		if err := writePIDFile(s.o.PIDFile, s.w.pid); err != nil {
			if !s.w.hasParent {
				return err
			}
			// The old supervisor has retired: stopping now would leave the
			// port to no one, a stale pidfile is the lesser harm.
			s.log.Error("pidfile", "err", err)
		}
	}
	s.w.serveControl()
	s.log.Info("srp serving", "gen", s.cur.gen, "worker_pid", s.cur.pid, "pidfile", s.o.PIDFile)
	return nil
}

// nextFailed handles a worker that will never become ready.
func (s *supervisor) nextFailed(reason string) {
	switch s.nextWhy {
	case opStart:
		err := fmt.Errorf("first worker failed: %s", reason)
		s.log.Error("start failed", "err", err)
		s.tellOld(err)
		s.exitErr = err
		s.shutdown(err)
	case opRespawn:
		s.log.Error("respawned worker failed", "reason", reason)
		if s.op == opRespawn {
			s.op = ""
		}
		s.crashed()
		s.startNext()
	case opRotate, opReopen:
		s.log.Error(s.nextWhy+" failed, old worker still serving", "reason", reason)
		s.finish(result{})
	default:
		s.count(counters.ReloadsFailed)
		s.log.Error("reload failed, old worker still serving", "reason", reason)
		s.finish(result{err: fmt.Errorf("reload failed, old config still serving: %s", reason)})
	}
}

// crashed counts a worker death and schedules a respawn with backoff, or
// gives up when deaths come too fast for a restart to help: then the
// service manager sees srp exit non-zero and can act.
func (s *supervisor) crashed() {
	now := s.w.now()
	recent := s.crashes[:0]
	for _, t := range s.crashes {
		if now.Sub(t) < s.o.CrashWindow {
			recent = append(recent, t)
		}
	}
	s.crashes = append(recent, now)
	n := len(s.crashes)
	if n >= s.o.MaxCrashes {
		err := fmt.Errorf("worker died %d times within %s, giving up", n, s.o.CrashWindow)
		s.log.Error("giving up", "err", err)
		s.exitErr = err
		s.shutdown(err)
		return
	}
	// Scheduled even while a reload starts a worker: if that one becomes
	// ready it cancels the respawn, if it fails the respawn still happens.
	backoff := min(100*time.Millisecond<<(n-1), 5*time.Second)
	s.respawnAt = now.Add(backoff)
	s.log.Info("respawning worker", "in", backoff.String(), "crashes", n)
}
