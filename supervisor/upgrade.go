package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"srp/supervisor/counters"
	"srp/supervisor/link"
)

// An upgrade runs the srp binary now on disk with the listeners inherited
// through tableflip. Besides the listeners, the new binary inherits one end
// of a "handover" socket pair: the old supervisor sends the session-ticket
// keys on it, so TLS sessions resume across the upgrade, and the new one
// answers with its PID once ready, or with why it could not start, so that
// "srp upgrade" can print the reason.

const handoverName = "handover"

// upgradeResult is how an upgrade ended: err from tableflip, and what the
// new binary said on the handover socket.
type upgradeResult struct {
	err  error
	pid  int    // the new supervisor's, once it is ready
	text string // why it could not start
}

// startUpgrade hands the listeners to a new binary; the outcome arrives
// through s.upgraded.
func (s *supervisor) startUpgrade() {
	if err := s.w.upgrade(s.keys); err != nil {
		s.count(counters.UpgradesFailed)
		s.log.Error("upgrade failed", "err", err)
		s.finish(result{err: fmt.Errorf("upgrade failed: %w", err)})
		return
	}
	s.log.Info("upgrade started", "binary", s.wc.args[0])
}

// handOver starts the binary on disk with the listeners and a handover
// socket carrying keys. tableflip's Upgrade blocks until the new process
// is ready or has failed, so it runs aside and reports to the loop.
func (s *supervisor) handOver(keys [][32]byte) error {
	ours, theirs, err := socketPair(handoverName)
	if err != nil {
		return err
	}
	err = s.upg.AddFile(handoverName, theirs)
	theirs.Close()
	if err == nil {
		err = link.Write(ours, link.Keys, link.EncodeKeys(keys))
	}
	if err != nil {
		ours.Close()
		return err
	}
	go func() {
		r := upgradeResult{err: s.upg.Upgrade()}
		r.pid, r.text = parseHandover(readBuffered(ours))
		ours.Close()
		select {
		case s.upgraded <- r:
		case <-s.done:
		}
	}()
	return nil
}

// onUpgraded ends an upgrade: on success this supervisor retires, else
// it serves on as if nothing happened.
func (s *supervisor) onUpgraded(r upgradeResult) {
	err, pid, text := r.err, r.pid, r.text
	if err == nil {
		s.successor = pid
		s.log.Info("upgrade done, handing over", "new_pid", pid)
		// The new srp writes the pidfile too, but only after its Ready
		// reached us: whoever srp upgrade answers must find it moved.
		if s.o.PIDFile != "" && pid != 0 {
			if err := writePIDFile(s.o.PIDFile, pid); err != nil {
				s.log.Error("pidfile", "err", err)
			}
		}
		s.count(counters.UpgradesOK)
		// Nothing queued may start here: this supervisor is retiring.
		s.answer(result{msg: fmt.Sprintf("upgraded: srp pid %d serving", pid)})
		s.shutdown(nil)
		return
	}
	s.reclaimPIDFile()
	reason := "new binary: " + err.Error()
	if strings.HasSuffix(reason, "timed out") {
		reason += fmt.Sprintf(" (not ready within %s)", s.o.ReadyTimeout+killMargin)
	}
	if text != "" {
		reason = text + " (" + reason + ")"
	}
	s.count(counters.UpgradesFailed)
	s.log.Error("upgrade failed, old binary still serving", "reason", reason)
	s.finish(result{err: fmt.Errorf("upgrade failed, old binary still serving: %s", reason)})
}

// parseHandover reads what a new binary said before the upgrade ended.
func parseHandover(b []byte) (pid int, text string) {
	r := bytes.NewReader(b)
	for {
		m, err := link.Read(r)
		if err != nil {
			return pid, text
		}
		switch m.Type {
		case link.Ready:
			pid, _ = strconv.Atoi(string(m.Payload))
		case link.Error:
			if len(text) < maxFailText {
				text = appendLine(text, string(m.Payload))
			}
		}
	}
}

// takeHandover reads the keys the old supervisor sent. A new binary without
// a handover (started by an older srp) makes its own keys.
func (s *supervisor) takeHandover() error {
	f, err := s.upg.File(handoverName)
	if err != nil || f == nil {
		return err
	}
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("handover: %w", err)
	}
	s.handover = c.(*net.UnixConn)
	_ = s.handover.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := link.Read(s.handover)
	_ = s.handover.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("handover: %w", err)
	}
	if m.Type != link.Keys {
		return fmt.Errorf("handover: %w: %s message instead of keys", link.ErrProtocol, m.Type)
	}
	s.keys, err = link.DecodeKeys(m.Payload)
	return err
}

// signalReady tells the supervisor we took over from that we serve: our
// PID on the handover socket, then tableflip's ready byte.
func (s *supervisor) signalReady() error {
	if s.handover != nil {
		// Before Ready: the old supervisor reads the PID once Ready arrives.
		_ = s.handover.SetWriteDeadline(time.Now().Add(time.Second))
		_ = link.Write(s.handover, link.Ready, []byte(fmt.Sprint(os.Getpid())))
		s.handover.Close()
		s.handover = nil
	}
	return s.upg.Ready()
}

// tellOld reports a start-up failure to the supervisor we were to take
// over from, which passes it on to whoever asked for the upgrade.
func (s *supervisor) tellOld(err error) {
	if s.handover == nil || err == nil {
		return
	}
	_ = s.handover.SetWriteDeadline(time.Now().Add(time.Second))
	_ = link.Write(s.handover, link.Error, link.ErrorText(err))
}

// passReloadOn sends a reload that was queued behind a successful upgrade
// to the new srp, and returns what its waiters are told.
func (s *supervisor) passReloadOn() error {
	if err := s.w.signal(s.successor, syscall.SIGHUP); err != nil {
		s.log.Error("queued reload not passed on", "new_pid", s.successor, "err", err)
		return fmt.Errorf("srp handed over to pid %d before this reload ran; send it there", s.successor)
	}
	s.log.Info("queued reload passed on", "new_pid", s.successor)
	return fmt.Errorf("srp handed over to pid %d before this reload ran; pid %d runs it now: run srp reload again to wait for its result", s.successor, s.successor)
}

// reclaimPIDFile makes the pidfile name us again after a failed upgrade:
// a new binary killed for being late may have written its PID just before.
func (s *supervisor) reclaimPIDFile() {
	if s.o.PIDFile == "" {
		return
	}
	pid, err := ReadPIDFile(s.o.PIDFile)
	if err == nil && pid == s.w.pid {
		return
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("pidfile", "err", err)
	}
	if err := writePIDFile(s.o.PIDFile, s.w.pid); err != nil {
		s.log.Error("pidfile", "err", err)
		return
	}
	s.log.Warn("pidfile named another process after a failed upgrade, rewritten", "was", pid)
}

// onParentGone notes that the supervisor we took over from has exited: an
// upgrade may run now.
func (s *supervisor) onParentGone(err error) {
	s.parentUp = false
	if err != nil {
		s.log.Warn("previous supervisor exited uncleanly", "err", err)
	}
	s.startNext()
}
