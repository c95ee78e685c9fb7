package worker

import (
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync/atomic"

	"srp/api"
	"srp/registry"
	"srp/worker/metrics"
	"srp/worker/observe"
	"srp/worker/upstream"
)

// route is what serves one proxied service.
type route struct {
	pool      *upstream.Pool
	transport *transport
	proxy     *httputil.ReverseProxy
}

// router dispatches a request by Host: redirect, proxy, internal API or 404.
type router struct {
	snap     *registry.Snapshot
	routes   map[*registry.Service]*route // built once; read-only afterwards
	api      *api.Handler                 // nil when the API is off
	addrs    []string                     // every backend of every route
	errs     *errorHandler
	metrics  *metrics.Set
	obs      observe.Observer // metrics, and the access log if on
	draining *atomic.Bool
	unready  *atomic.Bool // srp is leaving; nil when nobody can say so
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rt.draining.Load() && r.ProtoMajor == 1 {
		// This worker is retiring: finish this request, then let the client
		// open its next connection to the new worker instead of racing our close.
		w.Header().Set("Connection", "close")
	}
	if r.Method == http.MethodConnect {
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	if r.Host == "" {
		http.Error(w, "missing Host header", http.StatusBadRequest)
		return
	}
	if code := checkRequest(r); code != 0 {
		http.Error(w, http.StatusText(code), code)
		return
	}
	svc := rt.snap.Lookup(r.Host)
	if svc == nil && r.TLS == nil && r.URL.Path == ReadyPath {
		rt.ready(w, r)
		return
	}
	if svc == nil {
		// The API belongs to the plain-HTTP listener, the one internal clients use.
		if r.TLS == nil && rt.api.Match(r) {
			rt.api.ServeHTTP(w, r)
			return
		}
		http.Error(w, http.StatusText(http.StatusNotFound), http.StatusNotFound)
		return
	}
	rec := recordOf(w)
	if rec != nil {
		rec.Service = svc.Host
	}
	if svc.Redirect != nil {
		redirect(w, r, svc.Redirect)
		return
	}
	if up := r.Header.Get("Upgrade"); up != "" && !strings.EqualFold(up, "websocket") {
		// Only WebSocket is tunnelled; anything else (h2c above all) would
		// let a client talk to the backend past srp's request checks.
		r.Header.Del("Upgrade")
	}
	// The server answered Expect for the client (100 Continue once the
	// body is read); passed on, the backend's own 100 would reach the
	// client as a second one.
	r.Header.Del("Expect")
	// Set on the inbound request so the error log names the ID the backend saw.
	id := upstream.RequestID(r)
	r.Header["X-Request-Id"] = []string{id}
	if rec != nil {
		rec.RequestID = id
	}
	rt.routes[svc].proxy.ServeHTTP(forUpgrade(w, r), r)
}

// backendUp reports whether addr is in svc's rotation, for the metrics.
func (rt *router) backendUp(svc, addr string) bool {
	if s := rt.snap.Lookup(svc); s != nil && rt.routes[s] != nil {
		return slices.Contains(rt.routes[s].pool.Healthy(), addr)
	}
	return false
}

// healthy lists the backends of svc currently in rotation, for the API.
func (rt *router) healthy(svc *registry.Service) []string {
	if r := rt.routes[svc]; r != nil {
		return r.pool.Healthy()
	}
	return nil
}

// Route, Draining and LogFailure are what the fast path asks of the
// router (fast.Router); they hold it to the same decisions as ServeHTTP.

// Route returns the pool of the service proxied for host, or nil where
// ServeHTTP answers otherwise (404, a redirect, the API).
func (rt *router) Route(host string) *upstream.Pool {
	svc := rt.snap.Lookup(host)
	if svc == nil || svc.Redirect != nil {
		return nil
	}
	if r := rt.routes[svc]; r != nil {
		return r.pool
	}
	return nil
}

func (rt *router) Draining() bool { return rt.draining.Load() }

func (rt *router) LogFailure(msg string, status int, host, method, path, id string, err error) {
	rt.errs.logFailure(msg, status, host, method, path, id, err)
}

// redirect answers with the service's redirect target, keeping the
// request's path and query unless the service discards them.
func redirect(w http.ResponseWriter, r *http.Request, rd *registry.Redirect) {
	u := *rd.URL
	if !rd.DiscardPath {
		// RawPath keeps the client's escaping: %2F must not become a slash.
		u.RawPath = strings.TrimSuffix(u.EscapedPath(), "/") + r.URL.EscapedPath()
		u.Path = strings.TrimSuffix(u.Path, "/") + r.URL.Path
		if r.URL.RawQuery != "" {
			u.RawQuery = r.URL.RawQuery
		}
	}
	code := http.StatusTemporaryRedirect
	if rd.Permanent {
		code = http.StatusPermanentRedirect
	}
	w.Header().Set("Location", u.String())
	w.WriteHeader(code)
}

// checkRequest returns the status for a request that must not be routed,
// or 0. CONNECT and a missing Host are handled by the router.
func checkRequest(r *http.Request) int {
	if r.URL.User != nil {
		return http.StatusBadRequest // absolute-form target with userinfo
	}
	if r.TLS != nil && r.TLS.ServerName != "" &&
		registry.NormalizeHost(r.TLS.ServerName) != registry.NormalizeHost(r.Host) {
		// The connection was opened for another name: a client reusing it
		// must open a new one rather than reach this host's backends on
		// the strength of another host's certificate.
		return http.StatusMisdirectedRequest
	}
	return 0
}

// ReadyPath answers whether this srp wants new connections, for a load
// balancer's health check: on the plain-HTTP listener, for any Host that
// is not a service, from any client (a balancer is outside API.Subnet).
const ReadyPath = "/ready"

// ready answers 200 while srp serves on, 503 once it is leaving or
// draining: a balancer that polls it stops sending new connections before
// srp stops accepting them.
func (rt *router) ready(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if rt.draining.Load() || rt.unready != nil && rt.unready.Load() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ready\n"))
}
