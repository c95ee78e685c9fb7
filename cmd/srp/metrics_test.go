package main

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsConfig is appConfig with the API, and so GET /metrics, open to
// loopback clients.
func metricsConfig(backends ...string) string {
	return fmt.Sprintf(`{"API": {"Subnet": "127.0.0.0/8"}, "Services": {"app.test": {"HealthPath": "/health", "Backends": ["%s"]}}}`,
		strings.Join(backends, `", "`))
}

// sample is one series of a scrape, named as Prometheus stores it: a
// histogram gives its _bucket (with le), _sum and _count series.
type sample struct {
	name    string
	labels  map[string]string
	value   float64
	counter bool // may only grow: a counter or part of a histogram
}

// key is the series' name with its labels, sorted.
func (s sample) key() string {
	var ls []string
	for k, v := range s.labels {
		ls = append(ls, k+"="+v)
	}
	sort.Strings(ls)
	return s.name + "{" + strings.Join(ls, ",") + "}"
}

// scrapeMetrics gets /metrics from srp on a new connection, with the Host
// a scraper sends (the address, which no service is named), and parses it
// with the Prometheus project's own parser.
func scrapeMetrics(port int) ([]sample, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /metrics: status %d: %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); expfmt.ResponseFormat(resp.Header).FormatType() != expfmt.TypeTextPlain {
		return nil, fmt.Errorf("GET /metrics: Content-Type %q is not the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	var out []sample
	for name, f := range fams {
		typ := f.GetType().String()
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			with := func(k, v string) map[string]string {
				c := maps.Clone(labels)
				c[k] = v
				return c
			}
			switch typ {
			case "COUNTER":
				out = append(out, sample{name, labels, m.GetCounter().GetValue(), true})
			case "GAUGE":
				out = append(out, sample{name, labels, m.GetGauge().GetValue(), false})
			case "UNTYPED":
				out = append(out, sample{name, labels, m.GetUntyped().GetValue(), false})
			case "HISTOGRAM":
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					out = append(out, sample{name + "_bucket", with("le", le), float64(b.GetCumulativeCount()), true})
				}
				out = append(out, sample{name + "_count", labels, float64(h.GetSampleCount()), true},
					sample{name + "_sum", labels, h.GetSampleSum(), true})
			default:
				return nil, fmt.Errorf("parse /metrics: %s is a %s", name, typ)
			}
		}
	}
	return out, nil
}

// mustScrape is scrapeMetrics failing the test on error.
func mustScrape(t testing.TB, port int) []sample {
	t.Helper()
	ss, err := scrapeMetrics(port)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// sumWhere sums the series called name whose labels include every
// name=value pair of match.
func sumWhere(ss []sample, name string, match ...string) float64 {
	var sum float64
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(match); i += 2 {
			if s.labels[match[i]] != match[i+1] {
				continue next
			}
		}
		sum += s.value
	}
	return sum
}

// counterWatch checks that no counter srp exposes ever goes backwards from
// one scrape to the next. A series may be absent from a scrape (counters
// at zero are not written, and a backend leaves the output when a reload
// drops it); when it comes back it must not be lower than last seen.
type counterWatch struct {
	// scraping is held from a scrape's start to its observation, so that
	// scrapes are observed in the order srp answered them.
	scraping sync.Mutex
	mu       sync.Mutex
	last     map[string]float64
	scrapes  int
	back     []string // the first counters seen going backwards
}

func newCounterWatch() *counterWatch { return &counterWatch{last: map[string]float64{}} }

func (w *counterWatch) observe(ss []sample, when string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scrapes++
	cur := map[string]float64{}
	for _, s := range ss {
		if s.counter {
			cur[s.key()] = s.value
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		if prev, ok := w.last[k]; ok && cur[k] < prev && len(w.back) < 20 {
			w.back = append(w.back, fmt.Sprintf("%s: %v then %v (%s, scrape %d)", k, prev, cur[k], when, w.scrapes))
		}
		w.last[k] = max(w.last[k], cur[k])
	}
}

// scrape scrapes srp and observes the result, one scrape at a time.
func (w *counterWatch) scrape(port int, when string) ([]sample, error) {
	w.scraping.Lock()
	defer w.scraping.Unlock()
	fams, err := scrapeMetrics(port)
	if err == nil {
		w.observe(fams, when)
	}
	return fams, err
}

// mustScrape is scrape failing the test on error.
func (w *counterWatch) mustScrape(t testing.TB, port int, when string) []sample {
	t.Helper()
	fams, err := w.scrape(port, when)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func (w *counterWatch) check(t testing.TB) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.back) > 0 {
		t.Errorf("counters went backwards between scrapes:\n%s", strings.Join(w.back, "\n"))
	}
	t.Logf("%d scrapes, %d counter series: none went backwards", w.scrapes, len(w.last))
}

// scraper scrapes srp every interval until stopped, feeding a counterWatch.
// A scrape that fails is a failed request like any other.
type scraper struct {
	stop   chan struct{}
	done   chan struct{}
	failed atomic.Int64
	mu     sync.Mutex
	errs   []string
}

func startScraper(t testing.TB, port int, w *counterWatch, interval time.Duration) *scraper {
	s := &scraper{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-s.stop:
				return
			case <-time.After(interval):
			}
			if _, err := w.scrape(port, "during the run"); err != nil {
				s.failed.Add(1)
				s.mu.Lock()
				if len(s.errs) < 10 {
					s.errs = append(s.errs, err.Error())
				}
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(s.finish)
	return s
}

func (s *scraper) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}
