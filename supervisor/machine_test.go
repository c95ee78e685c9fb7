package supervisor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"srp/supervisor/link"
)

// The lifecycle state machine driven without processes: a fake world
// records what the supervisor does, and each test feeds it events in one
// order and checks the end state.

const (
	ourPID = 1000 // the supervisor under test
	oldPID = 900  // the one it took over from, in takeover cases
	newPID = 2000 // the binary an upgrade starts
)

type fakeWorld struct {
	t        *testing.T
	s        *supervisor
	now      time.Time
	workers  []*proc // every worker spawned, generation order
	killed   map[int]bool
	keysOf   map[int][][32]byte // the keys each generation started with
	calls    []string           // "ready", "upgrade", "stop", "signal PID SIG"
	readyErr error
	atReady  string // what the pidfile said when ready was called
}

func newMachine(t *testing.T, takeover bool) (*supervisor, *fakeWorld) {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	if err := os.WriteFile(config, []byte(`{"ok": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	pidfile := filepath.Join(dir, "srp.pid")
	if takeover {
		if err := writePIDFile(pidfile, oldPID); err != nil {
			t.Fatal(err)
		}
	}
	s := newSupervisor(Options{
		Addrs: []string{":0"}, ConfigPath: config, PIDFile: pidfile,
		ReadyTimeout: 5 * time.Second, DrainTimeout: 3 * time.Second,
		Validate: func(_ string, data []byte) error {
			if strings.Contains(string(data), "bad") {
				return errors.New("config refused")
			}
			return nil
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	f := &fakeWorld{t: t, s: s, now: time.Unix(1e9, 0), killed: map[int]bool{}, keysOf: map[int][][32]byte{}}
	s.wc.args = []string{"srp", "worker"}
	s.keys, s.keysAt = [][32]byte{{1}}, f.now
	s.parentUp = takeover
	s.w = world{
		now:       func() time.Time { return f.now },
		pid:       ourPID,
		hasParent: takeover,
		spawn: func(gen int, config []byte, keys [][32]byte) (*proc, error) {
			pid := 100 + gen
			p := &proc{gen: gen, pid: pid, started: f.now, out: make(chan link.Message, 16), gone: make(chan struct{})}
			p.kill = func() { f.killed[pid] = true }
			f.workers = append(f.workers, p)
			f.keysOf[gen] = keys
			return p, nil
		},
		upgrade: func([][32]byte) error { f.calls = append(f.calls, "upgrade"); return nil },
		ready: func() error {
			f.calls = append(f.calls, "ready")
			f.atReady = f.pidfile()
			return f.readyErr
		},
		stop:         func() { f.calls = append(f.calls, "stop") },
		serveControl: func() {},
		signal: func(pid int, sig syscall.Signal) error {
			f.calls = append(f.calls, fmt.Sprintf("signal %d %s", pid, sig))
			return nil
		},
	}
	if err := s.begin([]byte(`{"ok": true}`)); err != nil {
		t.Fatal(err)
	}
	return s, f
}

// worker returns the worker of generation gen.
func (f *fakeWorld) worker(gen int) *proc {
	f.t.Helper()
	if gen < 1 || gen > len(f.workers) {
		f.t.Fatalf("no worker %d: %d spawned", gen, len(f.workers))
	}
	return f.workers[gen-1]
}

// pidfile is what the pidfile says: a PID, or "none".
func (f *fakeWorld) pidfile() string {
	pid, err := ReadPIDFile(f.s.o.PIDFile)
	if errors.Is(err, os.ErrNotExist) {
		return "none"
	}
	if err != nil {
		return err.Error()
	}
	return strconv.Itoa(pid)
}

// drained reports the message sent to a worker last, if it was a drain.
func drained(p *proc) bool {
	for {
		select {
		case m := <-p.out:
			if m.Type == link.Drain {
				return true
			}
		default:
			return false
		}
	}
}

// step runs one event. Waiters are named by the step that made them:
// "reload#3" is the reload requested by step 3.
func (f *fakeWorld) step(i int, ev string, waiters map[string]chan result) {
	f.t.Helper()
	s := f.s
	var arg string
	ev, arg, _ = strings.Cut(ev, " ")
	gen, _ := strconv.Atoi(arg)
	switch ev {
	case "ready": // worker gen reports ready
		s.onProc(procEvent{p: f.worker(gen), ready: true})
	case "exit": // worker gen dies (or exits after a drain)
		s.onProc(procEvent{p: f.worker(gen), exited: true, status: errors.New("signal: killed")})
	case "reload", "upgrade": // srp reload / srp upgrade
		ch := make(chan result, 1)
		waiters[fmt.Sprintf("%s#%d", ev, i)] = ch
		s.onRequest(request{op: ev, reply: ch})
	case "hup":
		s.onSignal(syscall.SIGHUP)
	case "usr2":
		s.onSignal(syscall.SIGUSR2)
	case "term":
		s.onSignal(syscall.SIGTERM)
	case "badconfig":
		if err := os.WriteFile(s.o.ConfigPath, []byte("bad"), 0o644); err != nil {
			f.t.Fatal(err)
		}
	case "upgraded": // the new binary is ready; it may not have written the pidfile yet
		s.onUpgraded(upgradeResult{pid: newPID})
	case "upgrade-failed": // the new binary said why it failed, then exited
		s.onUpgraded(upgradeResult{err: errors.New("child pid=2000 exited: exit status 1"), text: "first worker failed"})
	case "upgrade-late": // the new binary wrote its pidfile, then was killed for being late
		if err := writePIDFile(s.o.PIDFile, newPID); err != nil {
			f.t.Fatal(err)
		}
		s.onUpgraded(upgradeResult{err: errors.New("new child pid=2000 timed out")})
	case "parent-dead": // the supervisor we take over from is gone before we are ready
		f.readyErr = errors.New("can't notify parent process: broken pipe")
		s.onParentGone(errors.New("parent gone"))
	case "parent-gone":
		s.onParentGone(nil)
	case "wait": // time passes
		d, err := time.ParseDuration(arg)
		if err != nil {
			f.t.Fatal(err)
		}
		f.now = f.now.Add(d)
		s.onTimer(f.now)
	default:
		f.t.Fatalf("unknown event %q", ev)
	}
}

func TestMachine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		takeover bool
		events   []string
		serving  int               // generation of the serving worker, 0 for none
		spawned  int               // workers started in all
		pidfile  string            // what it says at the end, before finalize
		answers  map[string]string // waiter → text its answer contains ("" → none yet)
		stopping bool
		retired  []int    // generations told to drain or killed
		calls    []string // calls to the world, in order, if given
		after    string   // pidfile once a stopping srp has ended
		keys     int      // session-ticket keys at the end, the first one fresh if more than 1
	}{
		{name: "start", events: []string{"ready 1"}, serving: 1, spawned: 1, pidfile: "1000"},
		{name: "start fails", events: []string{"exit 1"}, spawned: 1, pidfile: "none", stopping: true, after: "none"},
		{name: "reload", events: []string{"ready 1", "reload", "ready 2"}, serving: 2, spawned: 2, pidfile: "1000",
			answers: map[string]string{"reload#1": "reloaded: worker pid 102"}, retired: []int{1}},
		{name: "reload worker exits", events: []string{"ready 1", "reload", "exit 2"}, serving: 1, spawned: 2, pidfile: "1000",
			answers: map[string]string{"reload#1": "reload failed, old config still serving: worker pid 102"}},
		{name: "reload worker not ready", events: []string{"ready 1", "reload", "wait 5s"}, serving: 1, spawned: 2, pidfile: "1000",
			answers: map[string]string{"reload#1": "not ready within 5s"}, retired: []int{2}},
		{name: "reload refused", events: []string{"ready 1", "badconfig", "reload"}, serving: 1, spawned: 1, pidfile: "1000",
			answers: map[string]string{"reload#2": "config refused"}},
		{name: "reloads coalesce", events: []string{"ready 1", "reload", "hup", "reload", "reload", "ready 2", "ready 3"},
			serving: 3, spawned: 3, pidfile: "1000", retired: []int{1, 2},
			answers: map[string]string{"reload#1": "worker pid 102", "reload#3": "worker pid 103", "reload#4": "worker pid 103"}},
		{name: "crash respawns", events: []string{"ready 1", "exit 1", "wait 99ms", "wait 1ms", "ready 2"},
			serving: 2, spawned: 2, pidfile: "1000"},
		{name: "crash during reload", events: []string{"ready 1", "reload", "exit 1", "exit 2", "wait 100ms", "ready 3"},
			serving: 3, spawned: 3, pidfile: "1000",
			answers: map[string]string{"reload#1": "reload failed"}},
		{name: "crash loop gives up", events: []string{"ready 1", "exit 1", "wait 100ms", "ready 2", "exit 2", "wait 200ms",
			"ready 3", "exit 3", "wait 400ms", "ready 4", "exit 4", "wait 800ms", "ready 5", "exit 5"},
			spawned: 5, pidfile: "1000", stopping: true, after: "none"},
		{name: "reload rotates keys", events: []string{"ready 1", "reload", "ready 2", "reload", "ready 3"}, serving: 3, spawned: 3,
			pidfile: "1000", retired: []int{1, 2}, keys: 3, answers: map[string]string{"reload#1": "reloaded", "reload#3": "reloaded"}},
		{name: "keys kept are few", events: []string{"ready 1", "hup", "ready 2", "hup", "ready 3", "hup", "ready 4", "hup", "ready 5", "hup", "ready 6"},
			serving: 6, spawned: 6, pidfile: "1000", retired: []int{1, 2, 3, 4, 5}, keys: keepKeys},
		{name: "keys rotate daily", events: []string{"ready 1", "wait 23h", "wait 1h", "ready 2"}, serving: 2, spawned: 2,
			pidfile: "1000", retired: []int{1}, keys: 2},
		{name: "daily rotation fails", events: []string{"ready 1", "wait 24h", "exit 2", "reload", "ready 3"}, serving: 3, spawned: 3,
			pidfile: "1000", retired: []int{1}, keys: 3, answers: map[string]string{"reload#3": "reloaded"}},
		{name: "upgrade", events: []string{"ready 1", "upgrade", "upgraded"}, serving: 1, spawned: 1, pidfile: "2000",
			answers: map[string]string{"upgrade#1": "upgraded: srp pid 2000 serving"}, stopping: true, retired: []int{1},
			calls: []string{"ready", "upgrade", "stop"}, after: "2000"},
		{name: "upgrade fails", events: []string{"ready 1", "usr2", "upgrade-failed", "upgrade", "upgrade-failed", "reload", "ready 2"},
			serving: 2, spawned: 2, pidfile: "1000", retired: []int{1},
			answers: map[string]string{"upgrade#3": "upgrade failed, old binary still serving: first worker failed", "reload#5": "reloaded"}},
		{name: "upgrade killed late", events: []string{"ready 1", "upgrade", "upgrade-late"}, serving: 1, spawned: 1, pidfile: "1000",
			answers: map[string]string{"upgrade#1": "timed out"}},
		{name: "reload queued behind upgrade", events: []string{"ready 1", "upgrade", "reload", "hup", "upgraded"},
			serving: 1, spawned: 1, pidfile: "2000", stopping: true, retired: []int{1}, after: "2000",
			answers: map[string]string{"upgrade#1": "upgraded", "reload#2": "handed over to pid 2000 before this reload ran"},
			calls:   []string{"ready", "upgrade", "signal 2000 hangup", "stop"}},
		{name: "reload queued behind failed upgrade", events: []string{"ready 1", "upgrade", "reload", "upgrade-failed", "ready 2"},
			serving: 2, spawned: 2, pidfile: "1000", retired: []int{1},
			answers: map[string]string{"upgrade#1": "upgrade failed", "reload#2": "reloaded"}},
		{name: "crash during upgrade", events: []string{"ready 1", "upgrade", "exit 1", "wait 100ms", "ready 2", "upgrade-failed"},
			serving: 2, spawned: 2, pidfile: "1000", answers: map[string]string{"upgrade#1": "upgrade failed"}},
		{name: "respawn outlives failed upgrade", events: []string{"ready 1", "upgrade", "exit 1", "wait 100ms", "reload", "upgrade-failed",
			"ready 2", "ready 3"}, serving: 3, spawned: 3, pidfile: "1000", retired: []int{2},
			answers: map[string]string{"upgrade#1": "upgrade failed", "reload#4": "reloaded: worker pid 103"}},
		{name: "respawn not ready during upgrade", events: []string{"ready 1", "upgrade", "exit 1", "wait 100ms", "wait 5s", "wait 200ms",
			"ready 3", "upgrade-failed"}, serving: 3, spawned: 3, pidfile: "1000", retired: []int{2},
			answers: map[string]string{"upgrade#1": "upgrade failed"}},
		{name: "sigterm during respawn", events: []string{"ready 1", "exit 1", "wait 100ms", "reload", "term"}, spawned: 2,
			pidfile: "1000", stopping: true, retired: []int{2}, after: "none",
			answers: map[string]string{"reload#3": "shutting down"}},
		{name: "crash during successful upgrade", events: []string{"ready 1", "upgrade", "exit 1", "wait 100ms", "upgraded"},
			spawned: 2, pidfile: "2000", stopping: true, retired: []int{2}, after: "2000",
			answers: map[string]string{"upgrade#1": "upgraded"}},
		{name: "sigterm", events: []string{"ready 1", "reload", "term", "reload"}, serving: 1, spawned: 2, pidfile: "1000",
			stopping: true, retired: []int{1, 2}, after: "none",
			answers: map[string]string{"reload#1": "shutting down", "reload#3": "shutting down"}},
		{name: "sigterm during upgrade", events: []string{"ready 1", "upgrade", "term", "upgrade-failed"}, serving: 1, spawned: 1,
			pidfile: "1000", stopping: true, retired: []int{1}, after: "none",
			answers: map[string]string{"upgrade#1": "upgrade failed"}, calls: []string{"ready", "upgrade", "stop"}},
		{name: "takeover", takeover: true, events: []string{"ready 1"}, serving: 1, spawned: 1, pidfile: "1000",
			calls: []string{"ready"}},
		{name: "takeover fails", takeover: true, events: []string{"exit 1"}, spawned: 1, pidfile: "900", stopping: true,
			after: "900"},
		{name: "takeover, parent dies first", takeover: true, events: []string{"parent-dead", "ready 1"}, serving: 1, spawned: 1,
			pidfile: "1000", calls: []string{"ready"}},
		{name: "upgrade waits for parent", takeover: true, events: []string{"ready 1", "upgrade", "parent-gone", "upgraded"},
			serving: 1, spawned: 1, pidfile: "2000", stopping: true, retired: []int{1}, after: "2000",
			answers: map[string]string{"upgrade#1": "upgraded"}, calls: []string{"ready", "upgrade", "stop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newMachine(t, tc.takeover)
			waiters := map[string]chan result{}
			for i, ev := range tc.events {
				f.step(i, ev, waiters)
			}
			serving := 0
			if s.cur != nil {
				serving = s.cur.gen
			}
			if serving != tc.serving || len(f.workers) != tc.spawned {
				t.Errorf("serving generation %d of %d spawned, want %d of %d", serving, len(f.workers), tc.serving, tc.spawned)
			}
			if got := f.pidfile(); got != tc.pidfile {
				t.Errorf("pidfile says %s, want %s", got, tc.pidfile)
			}
			if s.stopping != tc.stopping {
				t.Errorf("stopping %v, want %v", s.stopping, tc.stopping)
			}
			for name, ch := range waiters {
				want, ok := tc.answers[name]
				select {
				case r := <-ch:
					got := r.msg
					if r.err != nil {
						got = r.err.Error()
					}
					if !ok || want == "" || !strings.Contains(got, want) {
						t.Errorf("%s told %q, want %q", name, got, want)
					}
				default:
					if ok && want != "" {
						t.Errorf("%s not answered, want %q", name, want)
					}
				}
			}
			var retired []int
			for _, p := range f.workers {
				if drained(p) || f.killed[p.pid] {
					retired = append(retired, p.gen)
				}
			}
			if fmt.Sprint(retired) != fmt.Sprint(tc.retired) && !(len(retired) == 0 && len(tc.retired) == 0) {
				t.Errorf("retired generations %v, want %v", retired, tc.retired)
			}
			if tc.keys != 0 {
				if len(s.keys) != tc.keys || s.keys[len(s.keys)-1] != ([32]byte{1}) && tc.keys < keepKeys {
					t.Errorf("%d session-ticket keys (oldest %x), want %d ending with the first", len(s.keys), s.keys[len(s.keys)-1][:2], tc.keys)
				}
				if s.keys[0] == ([32]byte{1}) {
					t.Error("session-ticket keys never rotated")
				}
				if got := f.keysOf[tc.serving]; fmt.Sprint(got) != fmt.Sprint(s.keys) {
					t.Errorf("serving worker %d started with %d keys, not the %d current", tc.serving, len(got), len(s.keys))
				}
			}
			// The pidfile may name us only once the old supervisor can no
			// longer kill us for being late.
			if tc.takeover && f.atReady != "" && f.atReady != strconv.Itoa(oldPID) {
				t.Errorf("pidfile said %s before the old supervisor was told we serve", f.atReady)
			}
			if tc.calls != nil && strings.Join(f.calls, ", ") != strings.Join(tc.calls, ", ") {
				t.Errorf("calls %v, want %v", f.calls, tc.calls)
			}
			if !tc.stopping {
				return
			}
			_ = s.finalize()
			if got := f.pidfile(); got != tc.after {
				t.Errorf("pidfile after the end says %s, want %s", got, tc.after)
			}
		})
	}
}
