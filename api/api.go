// Package api serves srp's internal endpoints, for clients inside one
// subnet: GET /services lists the healthy backends of every proxied
// service as JSON, GET /metrics gives srp's metrics to Prometheus, and
// GET /status is a page for people (worker/status).
//
// Access is decided by the socket's peer address alone; no header can grant it.
package api

import (
	"encoding/json"
	"net/http"
	"net/netip"

	"srp/registry"
)

// Where the API answers.
const (
	Path        = "/services"
	MetricsPath = "/metrics"
	StatusPath  = "/status"
)

// Healthy returns the backends of svc that currently pass their checks.
type Healthy func(svc *registry.Service) []string

type service struct {
	HealthPath string
	Backends   []string
}

// Handler answers the API's paths from clients inside the snapshot's API subnet.
type Handler struct {
	snap    *registry.Snapshot
	healthy Healthy
	metrics http.Handler
	status  http.Handler
}

// New returns the API for snap, or nil when the config enables no API.
// metrics answers GET /metrics and status GET /status; a nil one leaves
// its path unanswered (404).
func New(snap *registry.Snapshot, healthy Healthy, metrics, status http.Handler) *Handler {
	if _, ok := snap.APISubnet(); !ok {
		return nil
	}
	return &Handler{snap: snap, healthy: healthy, metrics: metrics, status: status}
}

// Match reports whether r is an API request from an allowed client. A nil
// Handler matches nothing, so callers need not check whether the API is on.
func (h *Handler) Match(r *http.Request) bool {
	if h == nil || h.handler(r.URL.Path) == nil && r.URL.Path != Path {
		return false
	}
	subnet, _ := h.snap.APISubnet()
	return Allowed(subnet, r.RemoteAddr)
}

// Allowed reports whether the socket address remoteAddr ("ip:port") is inside
// subnet. IPv4 clients reaching a dual-stack listener appear as IPv4-mapped
// IPv6 addresses and are unmapped first.
func Allowed(subnet netip.Prefix, remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	return subnet.Contains(ap.Addr().Unmap().WithZone(""))
}

// handler returns what serves path besides /services, or nil.
func (h *Handler) handler(path string) http.Handler {
	switch path {
	case MetricsPath:
		return h.metrics
	case StatusPath:
		return h.status
	}
	return nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	if sub := h.handler(r.URL.Path); sub != nil {
		sub.ServeHTTP(w, r)
		return
	}
	out := make(map[string]service)
	for _, svc := range h.snap.Services() {
		if svc.Redirect != nil {
			continue
		}
		up := h.healthy(svc)
		if up == nil {
			up = []string{}
		}
		out[svc.Host] = service{HealthPath: svc.HealthPath, Backends: up}
	}
	body, err := json.Marshal(out)
	if err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}
