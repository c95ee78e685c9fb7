package supervisor

import (
	"crypto/rand"
	"fmt"
	"time"
)

// Session-ticket keys belong to the supervisor: every worker and the next
// binary get all of them, the newest first, which encrypts new tickets;
// the others only decrypt. A fresh key comes with every reload and at
// least once a KeyRotation, so a stolen key opens little, and keepKeys
// old ones keep sessions resuming across reloads and upgrades.

const (
	keepKeys       = 4
	opRotate       = "rotate keys"
	opReopen       = "reopen access log"
	defaultRotaton = 24 * time.Hour
)

// rotateKeys puts a fresh key in front of the ones kept.
func (s *supervisor) rotateKeys() error {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("session-ticket key: %w", err)
	}
	s.keys = append([][32]byte{k}, s.keys[:min(len(s.keys), keepKeys-1)]...)
	s.keysAt = s.w.now()
	return nil
}

// rotateDue reports whether the current key has served its time and a
// worker serves that could be replaced by one with a fresh key.
func (s *supervisor) rotateDue(now time.Time) bool {
	return s.cur != nil && s.next == nil && !s.keysAt.IsZero() && !now.Before(s.keysAt.Add(s.o.KeyRotation))
}

// startRotation replaces the serving worker by one with the same config
// and a fresh key: a worker takes its keys only at start.
func (s *supervisor) startRotation() {
	if err := s.rotateKeys(); err != nil {
		s.log.Error("key rotation failed", "err", err)
		s.keysAt = s.w.now() // try again a rotation period later, not in a loop
		s.finish(result{})
		return
	}
	s.log.Info("rotating session-ticket keys", "keys", len(s.keys))
	s.startReplace(opRotate)
}

// startReplace replaces the serving worker by one with the same config,
// for why: a worker takes its keys and files only at start.
func (s *supervisor) startReplace(why string) {
	s.op = why
	if err := s.spawnNext(s.config, why); err != nil {
		s.nextFailed(err.Error())
	}
}
