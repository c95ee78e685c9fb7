package metrics

import (
	"maps"
	"slices"
	"time"
)

// Snapshot is every service's counters at one moment, as the whole run
// counted them: two snapshots a few seconds apart give rates.
type Snapshot struct {
	At       time.Time
	Services []ServiceSnapshot // sorted by name; "" (requests no service answered) first
}

// ServiceSnapshot is one service's counters.
type ServiceSnapshot struct {
	Name     string
	Requests [codes]uint64            // by status: index status-100, the last for codes outside 100-599
	Buckets  [len(Buckets) + 1]uint64 // request durations, not cumulative; the last is above 10 s
	Backends []BackendSnapshot        // sorted by address
}

// BackendSnapshot is one backend's counters and health.
type BackendSnapshot struct {
	Addr    string
	Up      bool
	Answers uint64 // attempts it answered, whatever the status
	Errors  uint64 // attempts that failed
}

// Snapshot reads every counter of the services this worker serves.
func (s *Set) Snapshot() Snapshot {
	snap := Snapshot{At: time.Now()}
	v := s.region.Value
	for _, n := range slices.Sorted(maps.Keys(s.services)) {
		ss := ServiceSnapshot{Name: n}
		for ci := range codes {
			ss.Requests[ci] = v(requestKey(n, ci))
		}
		for b := range len(Buckets) + 1 {
			ss.Buckets[b] = v(bucketKey(n, b))
		}
		for _, addr := range slices.Sorted(maps.Keys(s.services[n].backends)) {
			bs := BackendSnapshot{Addr: addr, Up: s.extra.BackendUp == nil || s.extra.BackendUp(n, addr)}
			for ci := range codes {
				bs.Answers += v(backendKey(n, addr, ci))
			}
			for _, r := range reasons {
				bs.Errors += v(errorKey(n, addr, r))
			}
			ss.Backends = append(ss.Backends, bs)
		}
		snap.Services = append(snap.Services, ss)
	}
	return snap
}

// Quantile estimates the q-quantile (0 < q < 1) of the request durations
// counted in buckets, as Prometheus' histogram_quantile does: linear within
// the bucket it falls in. It returns 0 with no requests, and the largest
// finite bound for a quantile above it.
func Quantile(q float64, buckets [len(Buckets) + 1]uint64) time.Duration {
	var total uint64
	for _, n := range buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum float64
	lower := 0.0
	for i, n := range buckets {
		if i == len(Buckets) {
			return time.Duration(Buckets[len(Buckets)-1] * float64(time.Second))
		}
		if cum+float64(n) >= rank && n > 0 {
			frac := (rank - cum) / float64(n)
			return time.Duration((lower + frac*(Buckets[i]-lower)) * float64(time.Second))
		}
		cum += float64(n)
		lower = Buckets[i]
	}
	return 0
}
