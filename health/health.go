// Package health checks backends over HTTP and keeps whether each one is up.
//
// State is keyed by target (backend address and path) and lives as long as
// the Checker. The first round decides each target's state outright, so a
// worker that waits for it never sends traffic to a backend known to be down;
// after that a target flips only after Rise passes or Fall failures in a row,
// so a flapping backend does not thrash the rotation. Only flips are logged.
package health

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Target is one backend to check: GET http://Addr+Path.
type Target struct {
	Addr string // "ip:port"
	Path string // starts with "/"
}

// Options tune a Checker. Zero values take the defaults named on each field.
type Options struct {
	Interval time.Duration // between rounds; default 2s
	Timeout  time.Duration // per check; default 2s
	Rise     int           // passes in a row to come back; default 2
	Fall     int           // failures in a row to go out; default 2
	Client   *http.Client  // shared by all checks; should not follow redirects; default: a client without keep-alive that does not
	Logger   *slog.Logger  // default slog.Default()
	OnChange func()        // called after a round in which any target flipped
}

// Checker runs health checks for a fixed set of targets.
type Checker struct {
	opts   Options
	states map[Target]*state // fixed at New; the map itself is never written again
}

type state struct {
	up     atomic.Bool
	streak int // consecutive results disagreeing with up; touched only by the round owner
	seen   bool
}

// New returns a Checker for targets. Until the first round, every target is up.
// Defaults are filled in the same shape as supervisor.Options and
// worker.Options fill theirs: deliberately, each package for its own type.
func New(targets []Target, opts Options) *Checker {
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Rise <= 0 {
		opts.Rise = 2
	}
	if opts.Fall <= 0 {
		opts.Fall = 2
	}
	if opts.Client == nil {
		// Checks are seconds apart: pooled connections would only mask a
		// backend that stopped accepting new ones.
		opts.Client = &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			// Only the health path's own answer counts: a redirect is not a 2xx.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Checker{opts: opts, states: make(map[Target]*state, len(targets))}
	for _, t := range targets {
		s := &state{}
		s.up.Store(true)
		c.states[t] = s
	}
	return c
}

// Up reports whether t passed its checks. Targets the Checker does not know are up.
func (c *Checker) Up(t Target) bool {
	s, ok := c.states[t]
	return !ok || s.up.Load()
}

// Round checks every target once, concurrently, and returns when all are done.
// Rounds must not run concurrently with each other.
func (c *Checker) Round(ctx context.Context) {
	results := make(map[Target]error, len(c.states))
	var mu sync.Mutex // guards results
	var wg sync.WaitGroup
	for t := range c.states {
		wg.Go(func() {
			err := c.check(ctx, t)
			mu.Lock()
			results[t] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // a cancelled round says nothing about the backends
	}
	changed := false
	for t, err := range results {
		if c.record(t, err) {
			changed = true
		}
	}
	if changed && c.opts.OnChange != nil {
		c.opts.OnChange()
	}
}

// Run checks every Interval until ctx is done.
func (c *Checker) Run(ctx context.Context) {
	if len(c.states) == 0 {
		return
	}
	tick := time.NewTicker(c.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.Round(ctx)
		}
	}
}

// record applies one result and reports whether the target flipped.
func (c *Checker) record(t Target, err error) bool {
	s := c.states[t]
	ok := err == nil
	if !s.seen {
		s.seen = true
		if ok {
			return false // already up from New
		}
		s.up.Store(false)
		c.opts.Logger.Warn("backend down", "backend", t.Addr, "path", t.Path, "err", err)
		return true
	}
	if ok == s.up.Load() {
		s.streak = 0
		return false
	}
	s.streak++
	need := c.opts.Fall
	if ok {
		need = c.opts.Rise
	}
	if s.streak < need {
		return false
	}
	s.streak = 0
	s.up.Store(ok)
	if ok {
		c.opts.Logger.Info("backend up", "backend", t.Addr, "path", t.Path)
	} else {
		c.opts.Logger.Warn("backend down", "backend", t.Addr, "path", t.Path, "err", err)
	}
	return true
}

func (c *Checker) check(ctx context.Context, t Target) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.Addr+t.Path, nil)
	if err != nil {
		return fmt.Errorf("health request %s%s: %w", t.Addr, t.Path, err)
	}
	req.Header.Set("X-Role", "srp")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
