// Package metrics counts what a worker serves and writes it out in the
// Prometheus text exposition format. The counters live in the shared
// region of supervisor/counters, so they stay exact through reloads and
// upgrades; gauges (backend health, certificates) are read from the
// serving worker when scraped.
//
// Every label comes from the config (service names, backends) or a fixed
// set (status codes 100-599 and "other", error reasons, listeners): no
// client can create a series. On the request path a count is one atomic
// add on a cell found once per series and kept; nothing allocates.
package metrics

import (
	"strconv"
	"sync/atomic"
	"time"

	"srp/supervisor/counters"
	"srp/worker/observe"
)

// Buckets are Prometheus' default histogram buckets, in seconds.
var Buckets = [...]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// codes is how many status-code cells a series has: 100-599, then other.
const codes = 501

func codeIndex(status int) int {
	if status < 100 || status > 599 {
		return codes - 1
	}
	return status - 100
}

func codeLabel(i int) string {
	if i == codes-1 {
		return "other"
	}
	return strconv.Itoa(i + 100)
}

var reasons = []string{observe.Refused, observe.Timeout, observe.Reset, observe.Protocol}

// cell is a counter claimed in the region the first time it counts.
type cell struct {
	p atomic.Pointer[uint64]
}

func (c *cell) add(r *counters.Region, key func() string, n uint64) {
	p := c.p.Load()
	if p == nil {
		var err error
		if p, err = r.Counter(key()); err != nil {
			return // the region is full: this series is not counted
		}
		c.p.Store(p)
	}
	atomic.AddUint64(p, n)
}

func atomicAdd(p *uint64, n uint64) { atomic.AddUint64(p, n) }

// Set is one worker's metrics.
type Set struct {
	region   *counters.Region
	services map[string]*service // by configured name; "" for requests no service answered
	conns    map[string]*listener
	extra    Extra
}

type service struct {
	name     string
	codes    [codes]cell
	buckets  [len(Buckets) + 1]cell // not cumulative; the last is +Inf
	sum      cell                   // nanoseconds
	count    cell
	retries  cell
	backends map[string]*backend
}

type backend struct {
	codes  [codes]cell
	errors [4]cell // in the order of reasons
}

type listener struct {
	open, total cell
}

// Extra is what the worker knows and the region does not: read at scrape
// time. Any field may be nil.
type Extra struct {
	Version string
	// BackendUp reports the health checker's view of a service's backend.
	BackendUp func(service, backend string) bool
	// CertExpiry lists the expiry of each certificate held, by host.
	CertExpiry func() map[string]time.Time
}

// SetCertExpiry gives the source of the certificate expiry gauge, known
// only once HTTPS mode is set up; call it before serving.
func (s *Set) SetCertExpiry(f func() map[string]time.Time) { s.extra.CertExpiry = f }

// CertExpiry lists the expiry of each certificate held, by host; nil
// outside HTTPS mode.
func (s *Set) CertExpiry() map[string]time.Time {
	if s.extra.CertExpiry == nil {
		return nil
	}
	return s.extra.CertExpiry()
}

// Service is a proxied service and its backends, as the config names them.
type Service struct {
	Name     string
	Backends []string
}

// New returns the metrics of a worker serving services, counted in region.
func New(region *counters.Region, services []Service, extra Extra) *Set {
	s := &Set{region: region, services: map[string]*service{}, conns: map[string]*listener{}, extra: extra}
	s.services[""] = &service{backends: map[string]*backend{}}
	for _, svc := range services {
		sv := &service{name: svc.Name, backends: map[string]*backend{}}
		for _, b := range svc.Backends {
			sv.backends[b] = &backend{}
		}
		s.services[svc.Name] = sv
	}
	for _, l := range []string{"http", "https"} {
		s.conns[l] = &listener{}
	}
	return s
}

// Request counts an answered request: observe.Observer.
func (s *Set) Request(r *observe.Request) {
	sv := s.services[r.Service]
	if sv == nil {
		sv = s.services[""]
	}
	ci := codeIndex(r.Status)
	sv.codes[ci].add(s.region, func() string { return requestKey(sv.name, ci) }, 1)
	d := r.Duration
	if d < 0 {
		d = 0
	}
	sec := d.Seconds()
	b := len(Buckets)
	for i, le := range Buckets {
		if sec <= le {
			b = i
			break
		}
	}
	sv.buckets[b].add(s.region, func() string { return bucketKey(sv.name, b) }, 1)
	sv.sum.add(s.region, func() string { return durationKey(sv.name, "_sum") }, uint64(d))
	sv.count.add(s.region, func() string { return durationKey(sv.name, "_count") }, 1)
}

// Attempt counts one backend attempt: observe.Observer.
func (s *Set) Attempt(svcName, addr string, retry bool, status int, reason string) {
	sv := s.services[svcName]
	if sv == nil {
		return
	}
	if retry {
		sv.retries.add(s.region, func() string { return retriesKey(svcName) }, 1)
	}
	b := sv.backends[addr]
	if b == nil {
		return
	}
	if reason == "" {
		ci := codeIndex(status)
		b.codes[ci].add(s.region, func() string { return backendKey(svcName, addr, ci) }, 1)
		return
	}
	for i, r := range reasons {
		if r == reason {
			b.errors[i].add(s.region, func() string { return errorKey(svcName, addr, r) }, 1)
			return
		}
	}
}

// Conn counts a client connection opening (+1) or closing (-1) on
// listener ("http" or "https").
func (s *Set) Conn(listenerName string, delta int) {
	l := s.conns[listenerName]
	if l == nil {
		return
	}
	l.open.add(s.region, func() string { return connKey("srp_connections_open", listenerName) }, uint64(int64(delta)))
	if delta > 0 {
		l.total.add(s.region, func() string { return connKey("srp_connections_total", listenerName) }, 1)
	}
}
