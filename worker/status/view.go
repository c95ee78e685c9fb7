package status

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"srp/worker/metrics"
)

const (
	// minWindow is the shortest window a rate is shown for.
	minWindow = time.Second
	// minLatencyRequests is how many requests the window needs for its
	// own percentiles; with fewer, the run's whole histogram is used.
	minLatencyRequests = 20
	// certSoon is how close to expiry a certificate is flagged.
	certSoon = 14 * 24 * time.Hour
)

// view is what the template renders; every field is already text.
type view struct {
	Refresh  int
	Version  string
	Uptime   string
	At       string // when the page was rendered, UTC
	Window   string // what the rates cover, e.g. "last 55 s"
	Unrouted string // rate of requests no service answered (404s, the API)
	Services []serviceView
	HasCerts bool
	Certs    []certView
}

type serviceView struct {
	Name     string
	State    string // up, degraded, down, none: for data-state and the CSS
	Label    string // the same as text: UP, DEGRADED, DOWN, NO BACKENDS
	Summary  string // "2 of 3 backends up"
	Req, Err string
	P50, P99 string
	Latency  string // what the percentiles cover: "last 55 s" or "all time"
	Backends []backendView
}

type backendView struct {
	Addr     string
	State    string // up or down
	Label    string // UP or DOWN
	Req, Err string // attempts and failed attempts per second
}

type certView struct {
	Host    string
	Expires string // the date, UTC
	Left    string // "in 41 days", "EXPIRED"
	State   string // ok, soon, expired
}

// build turns the current snapshot and the oldest kept one (if any) into
// the page. Rates and window percentiles cover old.At to cur.At.
func build(cur, old metrics.Snapshot, haveOld bool, started time.Time, version string, hasCerts bool, certs map[string]time.Time) view {
	v := view{
		Refresh:  refreshSeconds,
		Version:  version,
		Uptime:   duration(cur.At.Sub(started)),
		At:       cur.At.UTC().Format("2006-01-02 15:04:05 UTC"),
		Unrouted: rate(0, 0),
		HasCerts: hasCerts,
	}
	secs := 0.0
	before := map[string]metrics.ServiceSnapshot{}
	if haveOld && cur.At.Sub(old.At) >= minWindow {
		secs = cur.At.Sub(old.At).Seconds()
		v.Window = "last " + duration(cur.At.Sub(old.At))
		for _, s := range old.Services {
			before[s.Name] = s
		}
	} else {
		v.Window = "none yet, sampling"
	}
	for _, s := range cur.Services {
		prev, seen := before[s.Name]
		if s.Name == "" {
			if seen {
				v.Unrouted = rate(sub(sum(s.Requests[:]), sum(prev.Requests[:])), secs)
			} else {
				v.Unrouted = rate(0, 0)
			}
			continue
		}
		v.Services = append(v.Services, service(s, prev, seen, secs, v.Window))
	}
	for _, h := range slices.Sorted(maps.Keys(certs)) {
		v.Certs = append(v.Certs, cert(h, certs[h], cur.At))
	}
	return v
}

func service(s, prev metrics.ServiceSnapshot, seen bool, secs float64, window string) serviceView {
	sv := serviceView{Name: s.Name, Req: rate(0, 0), Err: rate(0, 0)}
	if seen {
		fails := sub(failed(s), failed(prev))
		sv.Req = rate(sub(sum(s.Requests[:]), sum(prev.Requests[:])), secs)
		sv.Err = rate(sub(sum(s.Requests[400:500]), sum(prev.Requests[400:500]))+fails, secs)
	}

	// Percentiles over the window when it saw enough requests, else over the run.
	var win [len(metrics.Buckets) + 1]uint64
	if seen {
		for i := range win {
			win[i] = sub(s.Buckets[i], prev.Buckets[i])
		}
	}
	buckets := win
	sv.Latency = window
	if sum(win[:]) < minLatencyRequests {
		buckets, sv.Latency = s.Buckets, "all time"
	}
	sv.P50 = latency(metrics.Quantile(.5, buckets), sum(buckets[:]))
	sv.P99 = latency(metrics.Quantile(.99, buckets), sum(buckets[:]))

	prevB := map[string]metrics.BackendSnapshot{}
	for _, b := range prev.Backends {
		prevB[b.Addr] = b
	}
	up := 0
	for _, b := range s.Backends {
		bv := backendView{Addr: b.Addr, State: "down", Label: "DOWN", Req: rate(0, 0), Err: rate(0, 0)}
		if b.Up {
			bv.State, bv.Label = "up", "UP"
			up++
		}
		if p, ok := prevB[b.Addr]; ok && seen {
			bv.Req = rate(sub(b.Answers+b.Errors, p.Answers+p.Errors), secs)
			bv.Err = rate(sub(b.Errors, p.Errors), secs)
		}
		sv.Backends = append(sv.Backends, bv)
	}
	switch {
	case len(s.Backends) == 0:
		sv.State, sv.Label, sv.Summary = "none", "NO BACKENDS", "redirect or no backends"
	case up == len(s.Backends):
		sv.State, sv.Label = "up", "UP"
	case up == 0:
		sv.State, sv.Label = "down", "DOWN"
	default:
		sv.State, sv.Label = "degraded", "DEGRADED"
	}
	if len(s.Backends) > 0 {
		sv.Summary = fmt.Sprintf("%d of %d backends up", up, len(s.Backends))
	}
	return sv
}

func cert(host string, notAfter, now time.Time) certView {
	c := certView{Host: host, Expires: notAfter.UTC().Format("2006-01-02 15:04 UTC"), State: "ok"}
	left := notAfter.Sub(now)
	switch {
	case left <= 0:
		c.State, c.Left = "expired", "EXPIRED"
	case left < certSoon:
		c.State, c.Left = "soon", "RENEW SOON: in "+duration(left)
	default:
		c.Left = "in " + duration(left)
	}
	return c
}

// rate formats n events over secs seconds; secs 0 means no window yet.
func rate(n uint64, secs float64) string {
	if secs <= 0 {
		return "–"
	}
	r := float64(n) / secs
	switch {
	case r == 0:
		return "0/s"
	case r < 0.1:
		return fmt.Sprintf("%.2f/s", r)
	case r < 100:
		return fmt.Sprintf("%.1f/s", r)
	}
	return fmt.Sprintf("%.0f/s", r)
}

// latency formats a percentile estimated from n requests.
func latency(d time.Duration, n uint64) string {
	top := time.Duration(metrics.Buckets[len(metrics.Buckets)-1] * float64(time.Second))
	switch {
	case n == 0:
		return "–"
	case d >= top:
		return "≥ " + top.String()
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// duration formats d coarsely: "42 s", "5 min 3 s", "3 h 12 min", "41 days".
func duration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// failed counts a service's failed backend attempts.
func failed(s metrics.ServiceSnapshot) uint64 {
	var n uint64
	for _, b := range s.Backends {
		n += b.Errors
	}
	return n
}

func sum(ns []uint64) uint64 {
	var t uint64
	for _, n := range ns {
		t += n
	}
	return t
}

// sub is a-b for counters, 0 if a counter went back.
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
