package metrics

import (
	"strconv"
	"strings"
)

// The region's keys: each series as it is written out, except durations,
// kept in nanoseconds under the _sum key.

func label(name, value string) string { return name + `="` + escape(value) + `"` }

func requestKey(host string, ci int) string {
	return "srp_requests_total{" + label("host", host) + "," + label("code", codeLabel(ci)) + "}"
}

func bucketKey(host string, b int) string {
	le := "+Inf"
	if b < len(Buckets) {
		le = strconv.FormatFloat(Buckets[b], 'g', -1, 64)
	}
	// Not cumulative in the region; see writeHistogram.
	return "srp_request_duration_seconds_bucket{" + label("host", host) + "," + label("le", le) + "}"
}

func durationKey(host, suffix string) string {
	return "srp_request_duration_seconds" + suffix + "{" + label("host", host) + "}"
}

func retriesKey(host string) string {
	return "srp_backend_retries_total{" + label("host", host) + "}"
}

func backendKey(host, addr string, ci int) string {
	return "srp_backend_requests_total{" + label("host", host) + "," + label("backend", addr) + "," + label("code", codeLabel(ci)) + "}"
}

func errorKey(host, addr, reason string) string {
	return "srp_backend_errors_total{" + label("host", host) + "," + label("backend", addr) + "," + label("reason", reason) + "}"
}

func connKey(name, listener string) string { return name + "{" + label("listener", listener) + "}" }

// escape escapes a label value as the exposition format asks: backslash,
// double quote and line feed, nothing else.
func escape(v string) string {
	if !strings.ContainsAny(v, "\\\"\n") {
		return v
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}
