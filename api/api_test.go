package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"testing"

	"srp/registry"
)

func TestAllowed(t *testing.T) {
	v4 := netip.MustParsePrefix("10.0.0.0/24")
	v6 := netip.MustParsePrefix("fd00::/64")
	for _, tc := range []struct {
		subnet netip.Prefix
		remote string
		want   bool
	}{
		{v4, "10.0.0.7:5123", true},
		{v4, "10.0.1.7:5123", false},
		{v4, "[::ffff:10.0.0.7]:5123", true}, // IPv4 client on a dual-stack listener
		{v4, "[::ffff:10.0.1.7]:5123", false},
		{v4, "[fd00::7]:5123", false},
		{v6, "[fd00::7]:5123", true},
		{v6, "[fd00::7%eth0]:5123", true},
		{v6, "[fd01::7]:5123", false},
		{v6, "10.0.0.7:5123", false},
		{v4, "10.0.0.7", false}, // no port: not a socket address
		{v4, "", false},
		{v4, "garbage", false},
		{v4, "10.0.0.7:notaport", false},
	} {
		if got := Allowed(tc.subnet, tc.remote); got != tc.want {
			t.Errorf("Allowed(%s, %q) = %v, want %v", tc.subnet, tc.remote, got, tc.want)
		}
	}
}

func parse(t *testing.T, config string) *registry.Snapshot {
	t.Helper()
	snap, err := registry.Parse("test.json", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

const config = `{
	"Services": {
		"app.test": {"HealthPath": "/health", "Backends": ["127.0.0.1:3001", "127.0.0.1:3002"]},
		"plain.test": {"Backends": ["127.0.0.1:4001"]},
		"old.test": {"Redirect": {"URL": "https://app.test"}}
	},
	"API": {"Subnet": "10.0.0.0/24"}
}`

// downExcept reports only the listed backends as healthy.
func downExcept(up ...string) Healthy {
	return func(svc *registry.Service) []string {
		var out []string
		for _, b := range svc.Backends {
			for _, u := range up {
				if b == u {
					out = append(out, b)
				}
			}
		}
		return out
	}
}

func TestServicesListsHealthyBackendsOfProxiedServices(t *testing.T) {
	h := New(parse(t, config), downExcept("127.0.0.1:3002"), nil, nil)
	r := httptest.NewRequest("GET", "/services", nil)
	r.RemoteAddr = "10.0.0.9:4000"
	if !h.Match(r) {
		t.Fatal("GET /services from inside the subnet did not match")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q", w.Code, w.Header().Get("Content-Type"))
	}
	var got map[string]struct {
		HealthPath string
		Backends   []string
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	want := map[string]struct {
		HealthPath string
		Backends   []string
	}{
		"app.test":   {"/health", []string{"127.0.0.1:3002"}},
		"plain.test": {"", []string{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// An empty list is [], never null, so clients need not special-case it.
	var raw map[string]map[string]json.RawMessage
	_ = json.Unmarshal(w.Body.Bytes(), &raw)
	if string(raw["plain.test"]["Backends"]) != "[]" {
		t.Fatalf("no healthy backends encoded as %s, want []", raw["plain.test"]["Backends"])
	}
}

func TestMatch(t *testing.T) {
	h := New(parse(t, config), downExcept(), nil, nil)
	for _, tc := range []struct {
		path, remote string
		header       map[string]string
		want         bool
	}{
		{"/services", "10.0.0.9:1", nil, true},
		{"/services", "[::ffff:10.0.0.9]:1", nil, true},
		{"/services", "192.168.1.9:1", nil, false},
		{"/services", "192.168.1.9:1", map[string]string{"X-Forwarded-For": "10.0.0.9", "X-Real-IP": "10.0.0.9"}, false},
		{"/services/", "10.0.0.9:1", nil, false},
		{"/other", "10.0.0.9:1", nil, false},
	} {
		r := httptest.NewRequest("GET", tc.path, nil)
		r.RemoteAddr = tc.remote
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		if got := h.Match(r); got != tc.want {
			t.Errorf("Match(%s from %s, %v) = %v, want %v", tc.path, tc.remote, tc.header, got, tc.want)
		}
	}
}

func TestOffWithoutSubnet(t *testing.T) {
	h := New(parse(t, `{"Services": {"app.test": {"Backends": ["127.0.0.1:3001"]}}}`), downExcept(), nil, nil)
	if h != nil {
		t.Fatal("API on without API.Subnet")
	}
	r := httptest.NewRequest("GET", "/services", nil)
	r.RemoteAddr = "10.0.0.9:1"
	if h.Match(r) {
		t.Fatal("a nil Handler matched")
	}
}

func TestOnlyGetAndHead(t *testing.T) {
	h := New(parse(t, config), downExcept(), nil, nil)
	for method, want := range map[string]int{"GET": 200, "HEAD": 200, "POST": 405, "DELETE": 405} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "/services", nil))
		if w.Code != want {
			t.Errorf("%s: status %d, want %d", method, w.Code, want)
		}
		if w.Code == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", method)
		}
	}
}

// TestMetricsAndStatus: each path is answered by its own handler, under
// the same access rule as /services, and only when that handler is given.
func TestMetricsAndStatus(t *testing.T) {
	named := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(name)) })
	}
	on := New(parse(t, config), downExcept(), named("metrics"), named("status"))
	off := New(parse(t, config), downExcept(), nil, nil)
	for _, tc := range []struct {
		h            *Handler
		path, remote string
		want         string // the body served; "" for no match
	}{
		{on, MetricsPath, "10.0.0.9:1", "metrics"},
		{on, StatusPath, "10.0.0.9:1", "status"},
		{on, StatusPath, "[::ffff:10.0.0.9]:1", "status"},
		{on, StatusPath, "192.168.1.9:1", ""},
		{on, StatusPath + "/", "10.0.0.9:1", ""},
		{off, MetricsPath, "10.0.0.9:1", ""},
		{off, StatusPath, "10.0.0.9:1", ""},
	} {
		r := httptest.NewRequest("GET", tc.path, nil)
		r.RemoteAddr = tc.remote
		if got := tc.h.Match(r); got != (tc.want != "") {
			t.Errorf("Match(%s from %s) = %v, want %v", tc.path, tc.remote, got, tc.want != "")
			continue
		}
		if tc.want == "" {
			continue
		}
		w := httptest.NewRecorder()
		tc.h.ServeHTTP(w, r)
		if w.Code != 200 || w.Body.String() != tc.want {
			t.Errorf("GET %s: status %d, body %q, want %q", tc.path, w.Code, w.Body.String(), tc.want)
		}
	}
	w := httptest.NewRecorder()
	on.ServeHTTP(w, httptest.NewRequest("POST", StatusPath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: status %d, want 405", StatusPath, w.Code)
	}
}
