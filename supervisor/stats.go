package supervisor

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"srp/supervisor/counters"
)

// The counter region and the access log file are the supervisor's: made or
// opened once, handed to every worker after its listeners, and the region
// also to the next binary, so counts survive reloads and upgrades.

const countersName = "counters"

// openCounters takes the region over from the supervisor we replace, or
// makes one; an older srp hands none over, and counting starts afresh.
func (s *supervisor) openCounters() error {
	if s.upg.HasParent() {
		f, err := s.upg.File(countersName)
		if err != nil {
			return fmt.Errorf("take over counters: %w", err)
		}
		if f != nil {
			if s.region, err = counters.Open(f); err != nil {
				return err
			}
			return nil // tableflip passes it on to our successor too
		}
	}
	r, err := counters.Create()
	if err != nil {
		return err
	}
	s.region = r
	return s.upg.AddFile(countersName, r.File())
}

// openAccessLog opens the access log file for appending, creating it
// readable by its owner and group only.
func (s *supervisor) openAccessLog() error {
	if s.o.AccessLog == "" {
		return nil
	}
	f, err := os.OpenFile(s.o.AccessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open access log: %w", err)
	}
	s.logf = f
	return nil
}

// onReopen reopens the access log (the file was rotated away) and
// replaces the serving worker, which takes the new file; the one it
// replaces drains writing to the old.
func (s *supervisor) onReopen() {
	if s.logf == nil || s.stopping {
		s.log.Info("signal ignored", "signal", "SIGUSR1", "reason", "no access log file to reopen")
		return
	}
	old := s.logf
	if err := s.openAccessLog(); err != nil {
		s.log.Error("access log not reopened", "err", err)
		return
	}
	_ = old.Close() // workers hold their own copies
	s.log.Info("access log reopened", "path", s.o.AccessLog)
	s.reopenQ = true
	s.startNext()
}

// workerFiles are the descriptors after the control socket, in the order
// link.Attach reads them. The listeners among them are duplicates that
// release closes once the worker has started.
func (s *supervisor) workerFiles() (files []*os.File, release func(), err error) {
	var dups []*os.File
	release = func() {
		for _, f := range dups {
			f.Close()
		}
	}
	for _, h := range s.listeners {
		f, err := h.file()
		if err != nil {
			release()
			return nil, nil, err
		}
		dups = append(dups, f)
	}
	files = append(append([]*os.File(nil), dups...), s.region.File())
	if s.logf != nil {
		files = append(files, s.logf)
	}
	return files, release, nil
}

// count adds one to key's counter.
func (s *supervisor) count(key string) {
	if s.region == nil {
		return // a test's supervisor counts nothing
	}
	if p, err := s.region.Counter(key); err == nil {
		atomic.AddUint64(p, 1)
	}
}

// loaded notes a config that a worker now serves.
func (s *supervisor) loaded(now time.Time) {
	if s.region == nil {
		return
	}
	if p, err := s.region.Counter(counters.LastReload); err == nil {
		atomic.StoreUint64(p, uint64(now.Unix()))
	}
}
