package worker

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"srp/scripts/testkit"
)

// h2specCases is how many cases the pinned h2spec (see scripts/test) runs
// without -S. A report with fewer means h2spec stopped part way, which its
// exit status alone does not tell apart from failed cases.
const h2specCases = 145

// TestH2Spec runs the h2spec conformance suite against the HTTPS listener
// proxying to a backend, so every case goes through srp's TLS listener,
// guard and router as a real client's request does.
func TestH2Spec(t *testing.T) {
	bin := testkit.Server(t, "scripts/test installs h2spec into .tools/bin and sets H2SPEC_BIN",
		os.Getenv("H2SPEC_BIN"), "h2spec")
	// h2spec wants a non-empty answer to GET and POST; the flow-control
	// cases read it a few bytes at a time.
	body := strings.Repeat("h2spec ", 150)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body))
	}))
	t.Cleanup(backend.Close)
	// h2spec sends :authority 127.0.0.1:PORT, so that is the service.
	_, addr, _ := runTLS(t, fmt.Sprintf(`{"Services": {"127.0.0.1": {"Backends": [%q]}}}`, backend.Listener.Addr()))
	host, port, _ := net.SplitHostPort(addr)

	report := filepath.Join(t.TempDir(), "h2spec.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// -o bounds each case; cases that wait for the server to do nothing
	// take that long, so it is kept short.
	out, err := exec.CommandContext(ctx, bin, "-t", "-k", "-h", host, "-p", port, "-o", "2", "-j", report).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("h2spec did not finish in time:\n%s", out)
	}
	// It exits 1 when a case fails, which the report details; without a
	// report it could not run at all.
	cases, perr := readH2specReport(report)
	if perr != nil {
		t.Fatalf("h2spec: %v (%v)\n%s", perr, err, out)
	}
	if len(cases) != h2specCases {
		t.Fatalf("h2spec ran %d cases, want %d (%v)\n%s", len(cases), h2specCases, err, out)
	}

	passed := 0
	for _, c := range cases {
		if c.passed {
			passed++
			continue
		}
		t.Errorf("h2spec %s failed: %s\n%s", c.id, c.desc, c.detail)
	}
	t.Logf("h2spec: %d/%d passed", passed, len(cases))
}

// h2specCase is one case of an h2spec JUnit report.
type h2specCase struct {
	id, desc string // id as h2spec prints it: "http2/6.5.3/2"
	passed   bool
	detail   string // why it failed
}

// readH2specReport reads the JUnit report h2spec writes. Cases carry only
// their group and description; their number is their place in the group,
// which is how h2spec itself numbers them.
func readH2specReport(path string) ([]h2specCase, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	type fault struct {
		Text string `xml:",innerxml"`
	}
	var rep struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Cases   []struct {
				Desc    string `xml:"classname,attr"`
				Failure *fault `xml:"failure"`
				Error   *fault `xml:"error"`
				Skipped *fault `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(raw, &rep); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var cases []h2specCase
	for _, s := range rep.Suites {
		for i, c := range s.Cases {
			hc := h2specCase{id: fmt.Sprintf("%s/%d", s.Package, i+1), desc: c.Desc}
			switch {
			case c.Failure != nil:
				hc.detail = c.Failure.Text
			case c.Error != nil:
				hc.detail = c.Error.Text
			case c.Skipped != nil:
				// A skipped case checked nothing: not a pass.
				hc.detail = "skipped"
			default:
				hc.passed = true
			}
			cases = append(cases, hc)
		}
	}
	return cases, nil
}
