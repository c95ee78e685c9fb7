package metrics

import (
	"bufio"
	"io"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"time"

	"srp/supervisor/counters"
)

// ContentType is the text exposition format's.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// ACME order results, counted by the worker that orders.
var acmeResults = []string{"ok", "failed"}

// ACMEOrder counts one certificate order's result ("ok" or "failed").
func (s *Set) ACMEOrder(ok bool) {
	key := `srp_acme_orders_total{result="failed"}`
	if ok {
		key = `srp_acme_orders_total{result="ok"}`
	}
	if p, err := s.region.Counter(key); err == nil {
		atomicAdd(p, 1)
	}
}

// ServeHTTP writes every metric: GET /metrics.
func (s *Set) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	_ = s.Write(w)
}

// Write writes every metric in the text exposition format.
func (s *Set) Write(out io.Writer) error {
	w := bufio.NewWriter(out)
	names := slices.Sorted(maps.Keys(s.services))
	v := s.region.Value

	family(w, "srp_requests_total", "counter", "Requests answered, by service (\"\" for none) and status sent.")
	for _, n := range names {
		for ci := range codes {
			sample(w, requestKey(n, ci), v(requestKey(n, ci)))
		}
	}

	family(w, "srp_request_duration_seconds", "histogram", "Time from a request's head read to its response head written.")
	for _, n := range names {
		var cum uint64
		for b := range len(Buckets) + 1 {
			cum += v(bucketKey(n, b))
			line(w, bucketKey(n, b), strconv.FormatUint(cum, 10))
		}
		line(w, durationKey(n, "_sum"), strconv.FormatFloat(time.Duration(v(durationKey(n, "_sum"))).Seconds(), 'g', -1, 64))
		line(w, durationKey(n, "_count"), strconv.FormatUint(v(durationKey(n, "_count")), 10))
	}

	family(w, "srp_backend_requests_total", "counter", "Answers from backends, by service, backend and status.")
	for _, n := range names {
		for _, b := range slices.Sorted(maps.Keys(s.services[n].backends)) {
			for ci := range codes {
				sample(w, backendKey(n, b, ci), v(backendKey(n, b, ci)))
			}
		}
	}

	family(w, "srp_backend_errors_total", "counter", "Failed backend attempts, by service, backend and reason.")
	for _, n := range names {
		for _, b := range slices.Sorted(maps.Keys(s.services[n].backends)) {
			for _, r := range reasons {
				sample(w, errorKey(n, b, r), v(errorKey(n, b, r)))
			}
		}
	}

	family(w, "srp_backend_retries_total", "counter", "Attempts after a request's first, by service.")
	for _, n := range names {
		if n != "" {
			line(w, retriesKey(n), strconv.FormatUint(v(retriesKey(n)), 10))
		}
	}

	family(w, "srp_backend_up", "gauge", "1 while the health checks keep a backend in rotation.")
	for _, n := range names {
		for _, b := range slices.Sorted(maps.Keys(s.services[n].backends)) {
			up := "1"
			if s.extra.BackendUp != nil && !s.extra.BackendUp(n, b) {
				up = "0"
			}
			line(w, "srp_backend_up{"+label("host", n)+","+label("backend", b)+"}", up)
		}
	}

	family(w, "srp_connections_open", "gauge", "Client connections open, by listener.")
	for _, l := range []string{"http", "https"} {
		line(w, connKey("srp_connections_open", l), strconv.FormatInt(int64(v(connKey("srp_connections_open", l))), 10))
	}
	family(w, "srp_connections_total", "counter", "Client connections accepted, by listener.")
	for _, l := range []string{"http", "https"} {
		line(w, connKey("srp_connections_total", l), strconv.FormatUint(v(connKey("srp_connections_total", l)), 10))
	}

	family(w, "srp_config_reloads_total", "counter", "Config reloads, by result.")
	for _, k := range []string{counters.ReloadsOK, counters.ReloadsRejected, counters.ReloadsFailed} {
		line(w, k, strconv.FormatUint(v(k), 10))
	}
	family(w, "srp_config_last_reload_success_timestamp_seconds", "gauge", "When a config was last loaded successfully, at start or by a reload.")
	line(w, counters.LastReload, strconv.FormatUint(v(counters.LastReload), 10))
	family(w, "srp_upgrades_total", "counter", "Binary upgrades, by result.")
	for _, k := range []string{counters.UpgradesOK, counters.UpgradesFailed} {
		line(w, k, strconv.FormatUint(v(k), 10))
	}
	family(w, "srp_worker_restarts_total", "counter", "Workers started again after one died.")
	line(w, counters.WorkerRestarts, strconv.FormatUint(v(counters.WorkerRestarts), 10))

	if s.extra.CertExpiry != nil {
		family(w, "srp_tls_certificate_expiry_timestamp_seconds", "gauge", "When each certificate held expires.")
		exp := s.extra.CertExpiry()
		for _, h := range slices.Sorted(maps.Keys(exp)) {
			line(w, "srp_tls_certificate_expiry_timestamp_seconds{"+label("host", h)+"}", strconv.FormatInt(exp[h].Unix(), 10))
		}
		family(w, "srp_acme_orders_total", "counter", "Certificate orders, by result.")
		for _, r := range acmeResults {
			k := `srp_acme_orders_total{result="` + r + `"}`
			line(w, k, strconv.FormatUint(v(k), 10))
		}
	}

	family(w, "srp_build_info", "gauge", "Always 1; the labels say which srp serves.")
	line(w, "srp_build_info{"+label("version", s.extra.Version)+","+label("goversion", runtime.Version())+"}", "1")
	return w.Flush()
}

func family(w *bufio.Writer, name, typ, help string) {
	w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
}

// sample writes a counter series that has counted anything; the others
// would be thousands of zeros (one per status code).
func sample(w *bufio.Writer, series string, n uint64) {
	if n > 0 {
		line(w, series, strconv.FormatUint(n, 10))
	}
}

func line(w *bufio.Writer, series, value string) {
	w.WriteString(series + " " + value + "\n")
}
