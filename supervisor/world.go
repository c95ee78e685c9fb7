package supervisor

import (
	"os"
	"syscall"
	"time"
)

// world is everything the lifecycle state machine does outside its own
// memory: start workers, hand over to a new binary, tell the supervisor
// it took over from that it serves, signal, and read the clock. Run uses
// the real one; tests drive the state machine event by event with fakes,
// without processes or timers.
type world struct {
	now       func() time.Time
	pid       int  // ours, as the pidfile records it
	hasParent bool // we took over from another supervisor

	// spawn starts worker gen; its ready and exit arrive on s.events.
	spawn func(gen int, config []byte, keys [][32]byte) (*proc, error)
	// upgrade starts the binary on disk; its end arrives on s.upgraded.
	upgrade func(keys [][32]byte) error
	// ready tells the supervisor we took over from that we serve; it
	// fails only if that one is gone.
	ready func() error
	// stop refuses further upgrades and interrupts one in flight.
	stop func()
	// serveControl starts answering the control socket, if there is one.
	serveControl func()
	signal       func(pid int, sig syscall.Signal) error
}

// realWorld is the world of a running srp; s.upg must be set.
func (s *supervisor) realWorld() world {
	return world{
		now:       time.Now,
		pid:       os.Getpid(),
		hasParent: s.upg.HasParent(),
		spawn: func(gen int, config []byte, keys [][32]byte) (*proc, error) {
			files, release, err := s.workerFiles()
			if err != nil {
				return nil, err
			}
			defer release()
			return spawn(s.wc, gen, files, config, keys, s.events, s.done)
		},
		upgrade: s.handOver,
		ready:   s.signalReady,
		stop:    s.upg.Stop,
		serveControl: func() {
			if s.ctl != nil {
				go serveControl(s.ctl, s.requests, s.done, s.log)
			}
		},
		signal: syscall.Kill,
	}
}
