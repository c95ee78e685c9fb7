package testkit

import (
	"fmt"
	"io"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ParseMetrics reads a text exposition with the Prometheus project's own
// parser and returns every sample by its series, written
// name{label=value,...} in the order the labels came. A histogram gives
// its count, sum and each bucket, as series{...}count, series{...}sum and
// series{...}le=BOUND.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("exposition does not parse: %w", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key+"count"] = float64(m.Histogram.GetSampleCount())
				out[key+"sum"] = m.Histogram.GetSampleSum()
				for _, b := range m.Histogram.Bucket {
					out[key+"le="+model.FloatString(b.GetUpperBound()).String()] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out, nil
}
