// Package status serves srp's status page: one self-contained HTML page,
// rendered on the server, that shows each service and backend with its
// health, request and error rates, latency percentiles, and in HTTPS mode
// when each certificate expires. It is meant for a glance from a phone:
// no scripts, no external assets, inline CSS, and it reloads itself.
//
// It owns a small ring of metrics snapshots that its sampler fills; rates
// and percentiles come from the difference between the oldest kept
// snapshot and one taken when the page is asked for. The counters are the
// whole run's (they survive reloads and upgrades), so a page never shows
// a rate across a counter it did not see at both ends of its window.
package status

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"time"

	"srp/worker/metrics"
)

// Defaults of Options.
const (
	defaultInterval = 5 * time.Second
	defaultWindow   = time.Minute
	// refreshSeconds is how often the page reloads itself.
	refreshSeconds = 5
)

// Options configure a Handler. Zero values take the defaults named on each field.
type Options struct {
	// Snapshot reads every service's counters and backend health; required.
	Snapshot func() metrics.Snapshot
	Version  string    // srp's version, shown at the top; "" shows none
	Started  time.Time // when the worker started; zero means when New is called
	// CertExpiry lists when each certificate held expires, by host; nil
	// (plain-HTTP mode) leaves the certificate section out.
	CertExpiry func() map[string]time.Time
	Interval   time.Duration // how often the sampler takes a snapshot; zero means 5s
	Window     time.Duration // how far back rates reach; zero means one minute
}

// Handler answers GET /status. Its sampler (Run) must run for the page
// to show rates; without it the page shows health and all-time latency.
type Handler struct {
	o    Options
	keep int // samples kept: enough to reach Window back

	mu   sync.Mutex // guards ring
	ring []metrics.Snapshot
}

// New returns the status page for o.
func New(o Options) *Handler {
	if o.Interval <= 0 {
		o.Interval = defaultInterval
	}
	if o.Window <= 0 {
		o.Window = defaultWindow
	}
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	return &Handler{o: o, keep: int(o.Window/o.Interval) + 1}
}

// Run takes a snapshot now and then every Interval, until ctx is done.
func (h *Handler) Run(ctx context.Context) {
	t := time.NewTicker(h.o.Interval)
	defer t.Stop()
	for {
		h.Sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample takes one snapshot into the ring, dropping the oldest beyond
// what the window needs.
func (h *Handler) Sample() {
	s := h.o.Snapshot()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring = append(h.ring, s)
	if over := len(h.ring) - h.keep; over > 0 {
		h.ring = append(h.ring[:0], h.ring[over:]...)
	}
}

// oldest returns the oldest kept snapshot, or false before the first.
func (h *Handler) oldest() (metrics.Snapshot, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ring) == 0 {
		return metrics.Snapshot{}, false
	}
	return h.ring[0], true
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cur := h.o.Snapshot()
	old, ok := h.oldest()
	var certs map[string]time.Time
	if h.o.CertExpiry != nil {
		certs = h.o.CertExpiry()
	}
	p := build(cur, old, ok, h.o.Started, h.o.Version, h.o.CertExpiry != nil, certs)
	var buf bytes.Buffer
	if err := page.Execute(&buf, p); err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	// Inline styles only: nothing else may load, no script may run.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
}
