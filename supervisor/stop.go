package supervisor

import (
	"fmt"
	"os"
	"srp/supervisor/link"
	"time"
)

// leave starts a delayed stop: every worker answers /ready with 503 from
// now on and serves on until DrainDelay has passed, then srp drains as on
// any stop. Reloads and upgrades are refused meanwhile.
func (s *supervisor) leave(sig os.Signal) {
	s.leaveAt = s.w.now().Add(s.o.DrainDelay)
	for p := range s.procs {
		if !p.drained {
			p.send(link.Unready, nil)
		}
	}
	s.log.Info("leaving: /ready answers 503, draining after the delay", "signal", sig.String(), "delay", s.o.DrainDelay.String())
}

// shutdown drains every worker; the loop ends once all are reaped.
func (s *supervisor) shutdown(cause error) {
	if s.stopping {
		return
	}
	s.stopping = true
	if s.ctl != nil {
		s.ctl.Close()
	}
	stop := fmt.Errorf("srp is shutting down")
	if cause != nil {
		stop = fmt.Errorf("srp is shutting down: %w", cause)
	}
	reloadStop := stop
	if s.successor != 0 {
		stop = fmt.Errorf("srp handed over to pid %d; send the request there", s.successor)
		reloadStop = stop
		if s.reloadQ.pending {
			reloadStop = s.passReloadOn()
		}
	}
	for _, w := range s.reloadQ.waiters {
		reply(w, result{err: reloadStop})
	}
	for _, w := range s.upgradeQ.waiters {
		reply(w, result{err: stop})
	}
	s.reloadQ, s.upgradeQ = queue{}, queue{}
	if s.op != link.OpUpgrade {
		for _, w := range s.waiters {
			reply(w, result{err: stop})
		}
		s.op, s.waiters = "", nil
	}
	s.w.stop() // interrupts an upgrade in flight
	s.next, s.respawnAt = nil, time.Time{}
	deadline := s.w.now().Add(s.o.DrainTimeout + killMargin)
	for p := range s.procs {
		if !p.drained {
			s.log.Info("worker draining", "gen", p.gen, "worker_pid", p.pid, "limit", s.o.DrainTimeout.String())
			p.drain(deadline)
		}
	}
}
