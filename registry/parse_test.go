package registry

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const example = `{
	"Services": {
		"www.example.com": {"HealthPath": "/health", "Backends": ["10.0.0.1:3001", "10.0.0.2:3001", "10.0.0.3"]},
		"example.com": {"Redirect": {"URL": "https://www.example.com", "DiscardPath": true, "Permanent": true}}
	},
	"API": {"Subnet": "10.0.0.0/24"}
}`

func TestParseExample(t *testing.T) {
	snap, err := Parse("config.json", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	services := snap.Services()
	if len(services) != 2 || services[0].Host != "example.com" || services[1].Host != "www.example.com" {
		t.Fatalf("Services() = %v, want example.com and www.example.com", services)
	}
	www := snap.Lookup("www.example.com")
	if www.HealthPath != "/health" || www.Redirect != nil {
		t.Errorf("www = %+v", www)
	}
	if want := []string{"10.0.0.1:3001", "10.0.0.2:3001", "10.0.0.3:80"}; !slices.Equal(www.Backends, want) {
		t.Errorf("www.Backends = %q, want %q", www.Backends, want)
	}
	r := snap.Lookup("example.com").Redirect
	if r == nil || r.URL.String() != "https://www.example.com" || !r.DiscardPath || !r.Permanent {
		t.Errorf("example.com redirect = %+v", r)
	}
	if subnet, ok := snap.APISubnet(); !ok || subnet != netip.MustParsePrefix("10.0.0.0/24") {
		t.Errorf("APISubnet() = %v, %v", subnet, ok)
	}
}

func TestParseOptional(t *testing.T) {
	tests := []struct {
		name, config string
		subnet       string // "" for no API
	}{
		{"no API", `{"Services": {"a": {"Backends": ["10.0.0.1"]}}}`, ""},
		{"empty subnet", `{"Services": {"a": {"Backends": ["10.0.0.1"]}}, "API": {"Subnet": ""}}`, ""},
		// Go programs marshal nil pointers and slices as null.
		{"nulls", `{"Services": {"a": {"Backends": ["10.0.0.1"], "Redirect": null, "HealthPath": null}}, "API": null}`, ""},
		{"redirect with empty backends", `{"Services": {"a": {"Backends": [], "HealthPath": "", "Redirect": {"URL": "http://b"}}}}`, ""},
		{"IPv6 subnet", `{"Services": {"a": {"Backends": ["[::1]:3001"]}}, "API": {"Subnet": "fd00::/64"}}`, "fd00::/64"},
		{"IPv4-mapped subnet", `{"Services": {"a": {"Backends": ["10.0.0.1"]}}, "API": {"Subnet": "::ffff:10.0.0.0/120"}}`, "10.0.0.0/24"},
		{"byte order mark", "\xef\xbb\xbf" + `{"Services": {"a": {"Backends": ["10.0.0.1"]}}}`, ""},
		{"IP hosts", `{"Services": {"10.0.0.9": {"Backends": ["10.0.0.1"]}, "[::1]": {"Backends": ["10.0.0.1"]}, "fd00::2": {"Backends": ["10.0.0.1"]}}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := Parse("config.json", []byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			subnet, ok := snap.APISubnet()
			if ok != (tt.subnet != "") || ok && subnet.String() != tt.subnet {
				t.Errorf("APISubnet() = %v, %v; want %q", subnet, ok, tt.subnet)
			}
		})
	}
}

// svc is a config with one service.
func svc(host, body string) string {
	return `{"Services": {"` + host + `": ` + body + `}}`
}

func TestParseProblems(t *testing.T) {
	const (
		h  = `config.json: service "www.example.com": `
		ok = `{"Backends": ["10.0.0.1"]}`
	)
	tests := []struct {
		name, config string
		want         []string // every line of the error, in order
	}{
		// The document.
		{"empty file", ``, []string{`config.json: empty file, expected a JSON object`}},
		{"syntax", "{\n  \"Services\": {,}\n}", []string{`config.json: invalid JSON at line 2, column 16: invalid character ',' looking for beginning of object key string`}},
		{"truncated", `{"Services": {`, []string{`config.json: invalid JSON: unexpected end of file`}},
		{"trailing data", svc("a", ok) + "\n}", []string{`config.json: unexpected data after the JSON object at line 2, column 1`}},
		{"not an object", `["a"]`, []string{`config.json: must be a JSON object, got list`}},
		{"top-level typo", `{"services": {"a": ` + ok + `}}`, []string{
			`config.json: unknown field "services" (did you mean "Services"?)`,
			`config.json: no services`,
		}},
		{"unknown top-level", `{"Services": {"a": ` + ok + `}, "Listen": ":80"}`, []string{`config.json: unknown field "Listen" (known fields: Services, API)`}},
		{"repeated field", `{"Services": {"a": ` + ok + `}, "Services": {"b": ` + ok + `}}`, []string{`config.json: field "Services" appears twice`}},
		{"no services", `{}`, []string{`config.json: no services`}},
		{"empty services", `{"Services": {}}`, []string{`config.json: no services`}},
		{"services wrong type", `{"Services": ["a"]}`, []string{`config.json: Services: must be an object mapping host names to services, got list`}},

		// Host keys.
		{"empty host", svc("", ok), []string{`config.json: service "": empty host name`}},
		{"host with port", svc("www.example.com:8080", ok), []string{`config.json: service "www.example.com:8080": host name must not include a port`}},
		{"IPv6 host with port", svc("[::1]:80", ok), []string{`config.json: service "[::1]:80": host name must not include a port`}},
		{"host with path", svc("www.example.com/app", ok), []string{`config.json: service "www.example.com/app": host name must not contain a path`}},
		{"host is a URL", svc("https://www.example.com", ok), []string{`config.json: service "https://www.example.com": host name must be a bare name such as www.example.com, not a URL`}},
		{"host with space", svc("www example.com", ok), []string{`config.json: service "www example.com": invalid character ' ' in host name`}},
		{"host with double dot", svc("www..example.com", ok), []string{`config.json: service "www..example.com": host name has an empty label (two dots in a row, or a leading dot)`}},
		{"wildcard host", svc("*.example.com", ok), []string{`config.json: service "*.example.com": wildcard host names are not supported`}},
		{"unicode host", svc("bücher.example", ok), []string{`config.json: service "bücher.example": non-ASCII host name: write internationalized names in punycode (xn--...)`}},
		{"same host", `{"Services": {"example.com.": ` + ok + `, "Example.com": ` + ok + `}}`, []string{`config.json: service "example.com.": same host as "Example.com"`}},
		{"host listed twice", `{"Services": {"a": ` + ok + `, "a": ` + ok + `}}`, []string{`config.json: service "a": listed twice`}},

		// Service shape.
		{"service wrong type", svc("www.example.com", `["10.0.0.1"]`), []string{h + `must be an object with Backends or Redirect, got list`}},
		{"neither", svc("www.example.com", `{"HealthPath": "/health"}`), []string{h + `needs Backends or Redirect`}},
		{"both", svc("www.example.com", `{"Backends": ["10.0.0.1"], "Redirect": {"URL": "https://example.com"}}`), []string{h + `has both Backends and Redirect; a service either proxies or redirects`}},
		{"redirect with health path", svc("www.example.com", `{"HealthPath": "/health", "Redirect": {"URL": "https://example.com"}}`), []string{h + `HealthPath "/health" is not allowed on a redirect service`}},
		{"empty backends", svc("www.example.com", `{"Backends": []}`), []string{h + `Backends is empty`}},
		{"service typo", svc("www.example.com", `{"Backend": ["10.0.0.1"]}`), []string{h + `unknown field "Backend" (did you mean "Backends"?)`, h + `needs Backends or Redirect`}},
		{"service case typo", svc("www.example.com", `{"backends": ["10.0.0.1"], "healthpath": "/"}`), []string{
			h + `unknown field "backends" (did you mean "Backends"?)`,
			h + `unknown field "healthpath" (did you mean "HealthPath"?)`,
			h + `needs Backends or Redirect`,
		}},

		// Backends.
		{"backends wrong type", svc("www.example.com", `{"Backends": "10.0.0.1"}`), []string{h + `Backends: must be a list of strings, got string`}},
		{"backend wrong type", svc("www.example.com", `{"Backends": ["10.0.0.1", 3001]}`), []string{h + `Backends[1]: must be a string, got number`}},
		{"backend bad port", svc("www.example.com", `{"Backends": ["10.0.0.1:99999"]}`), []string{h + `backend "10.0.0.1:99999": invalid port (must be 1-65535)`}},
		{"backend port zero", svc("www.example.com", `{"Backends": ["10.0.0.1:0"]}`), []string{h + `backend "10.0.0.1:0": invalid port (must be 1-65535)`}},
		{"backend host name", svc("www.example.com", `{"Backends": ["app.internal:3001"]}`), []string{h + `backend "app.internal:3001": must be an IP address, e.g. 127.0.0.1:3001`}},
		{"backend IPv6 without brackets", svc("www.example.com", `{"Backends": ["fd00::1:3001"]}`), []string{h + `backend "fd00::1:3001": IPv6 address must be in brackets, e.g. [::1]:3001`}},
		{"backend zone", svc("www.example.com", `{"Backends": ["[fe80::1%eth0]:3001"]}`), []string{h + `backend "[fe80::1%eth0]:3001": IPv6 zones are not supported`}},
		{"backend duplicate", svc("www.example.com", `{"Backends": ["10.0.0.1:3001", "10.0.0.1:3001"]}`), []string{h + `backend "10.0.0.1:3001": listed twice`}},
		{"backend same", svc("www.example.com", `{"Backends": ["10.0.0.1", "10.0.0.1:80"]}`), []string{h + `backend "10.0.0.1:80": same backend as "10.0.0.1"`}},

		// HealthPath.
		{"health path wrong type", svc("www.example.com", `{"HealthPath": true, "Backends": ["10.0.0.1"]}`), []string{h + `HealthPath: must be a string, got boolean`}},
		{"health path relative", svc("www.example.com", `{"HealthPath": "health", "Backends": ["10.0.0.1"]}`), []string{h + `HealthPath "health": must start with "/"`}},
		{"health path space", svc("www.example.com", `{"HealthPath": "/he alth", "Backends": ["10.0.0.1"]}`), []string{h + `HealthPath "/he alth": must not contain spaces or control characters`}},
		{"health path control", svc("www.example.com", `{"HealthPath": "/health\n", "Backends": ["10.0.0.1"]}`), []string{h + `HealthPath "/health\n": must not contain spaces or control characters`}},

		// Redirect.
		{"redirect wrong type", svc("www.example.com", `{"Redirect": "https://example.com"}`), []string{h + `Redirect: must be an object with URL, DiscardPath and Permanent, got string`}},
		{"redirect typo", svc("www.example.com", `{"Redirect": {"Url": "https://example.com"}}`), []string{h + `Redirect: unknown field "Url" (did you mean "URL"?)`, h + `Redirect.URL is required`}},
		{"redirect no URL", svc("www.example.com", `{"Redirect": {"Permanent": true}}`), []string{h + `Redirect.URL is required`}},
		{"redirect URL wrong type", svc("www.example.com", `{"Redirect": {"URL": 1}}`), []string{h + `Redirect.URL: must be a string, got number`}},
		{"redirect flag wrong type", svc("www.example.com", `{"Redirect": {"URL": "https://example.com", "Permanent": "yes"}}`), []string{h + `Redirect.Permanent: must be a boolean, got string`}},
		{"redirect unparsable", svc("www.example.com", `{"Redirect": {"URL": "https://exa mple.com"}}`), []string{h + `Redirect.URL "https://exa mple.com": invalid character " " in host name`}},
		{"redirect relative", svc("www.example.com", `{"Redirect": {"URL": "/elsewhere"}}`), []string{h + `Redirect.URL "/elsewhere": must be an absolute URL, e.g. https://www.example.com`}},
		{"redirect scheme", svc("www.example.com", `{"Redirect": {"URL": "ftp://example.com"}}`), []string{h + `Redirect.URL "ftp://example.com": scheme must be http or https`}},
		{"redirect no host", svc("www.example.com", `{"Redirect": {"URL": "https:///path"}}`), []string{h + `Redirect.URL "https:///path": missing host`}},
		{"redirect loop", svc("www.example.com", `{"Redirect": {"URL": "https://WWW.example.com/x"}}`), []string{h + `Redirect.URL "https://WWW.example.com/x": redirects to the same host, a loop`}},

		// API.
		{"API wrong type", `{"Services": {"a": ` + ok + `}, "API": "10.0.0.0/24"}`, []string{`config.json: API: must be an object with Subnet, got string`}},
		{"API typo", `{"Services": {"a": ` + ok + `}, "API": {"Subnets": "10.0.0.0/24"}}`, []string{`config.json: API: unknown field "Subnets" (did you mean "Subnet"?)`}},
		{"subnet wrong type", `{"Services": {"a": ` + ok + `}, "API": {"Subnet": ["10.0.0.0/24"]}}`, []string{`config.json: API.Subnet: must be a string, got list`}},
		{"subnet unparsable", `{"Services": {"a": ` + ok + `}, "API": {"Subnet": "10.0.0.0"}}`, []string{`config.json: API.Subnet "10.0.0.0": must be an address prefix such as 10.0.0.0/24`}},
		{"subnet host bits", `{"Services": {"a": ` + ok + `}, "API": {"Subnet": "10.0.0.1/24"}}`, []string{`config.json: API.Subnet "10.0.0.1/24": host bits set (did you mean "10.0.0.0/24"?)`}},
		{"subnet mapped short", `{"Services": {"a": ` + ok + `}, "API": {"Subnet": "::ffff:0.0.0.0/80"}}`, []string{`config.json: API.Subnet "::ffff:0.0.0.0/80": host bits set (did you mean "::/80"?)`}},
		{"subnet zone", `{"Services": {"a": ` + ok + `}, "API": {"Subnet": "fe80::%eth0/64"}}`, []string{`config.json: API.Subnet "fe80::%eth0/64": must be an address prefix such as 10.0.0.0/24`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := Parse("config.json", []byte(tt.config))
			if err == nil {
				t.Fatalf("Parse succeeded (%d services), want %q", len(snap.Services()), tt.want)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("got problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestParseAllProblems checks that one bad value does not hide another.
func TestParseAllProblems(t *testing.T) {
	const config = `{
		"Services": {
			"www.example.com": {"HealthPath": "health", "Backends": ["10.0.0.1:99999", "backend:3001", "10.0.0.2"]},
			"example.com": {"Redirect": {"URL": "ftp://www.example.com", "Permanent": "yes"}, "Backends": ["10.0.0.1"]},
			"Example.com.": {"Backend": ["10.0.0.1"]},
			"api.example.com": {"Backends": []}
		},
		"API": {"Subnet": "10.0.0.1/24"},
		"Timeout": 30
	}`
	_, err := Parse("config.json", []byte(config))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := []string{
		`config.json: unknown field "Timeout" (known fields: Services, API)`,
		`config.json: service "Example.com.": unknown field "Backend" (did you mean "Backends"?)`,
		`config.json: service "Example.com.": needs Backends or Redirect`,
		`config.json: service "api.example.com": Backends is empty`,
		`config.json: service "example.com": same host as "Example.com."`,
		`config.json: service "example.com": Redirect.Permanent: must be a boolean, got string`,
		`config.json: service "example.com": Redirect.URL "ftp://www.example.com": scheme must be http or https`,
		`config.json: service "example.com": has both Backends and Redirect; a service either proxies or redirects`,
		`config.json: service "www.example.com": HealthPath "health": must start with "/"`,
		`config.json: service "www.example.com": backend "10.0.0.1:99999": invalid port (must be 1-65535)`,
		`config.json: service "www.example.com": backend "backend:3001": must be an IP address, e.g. 127.0.0.1:3001`,
		`config.json: API.Subnet "10.0.0.1/24": host bits set (did you mean "10.0.0.0/24"?)`,
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("got problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Each problem is its own error, for callers that log them one by one.
	if joined, ok := err.(interface{ Unwrap() []error }); !ok || len(joined.Unwrap()) != len(want) {
		t.Errorf("error is not a join of %d errors: %#v", len(want), err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}

	missing := filepath.Join(dir, "missing.json")
	_, err := Load(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "read config "+missing+": ") {
		t.Errorf("Load(missing) = %v, want a wrapped fs.ErrNotExist", err)
	}

	if err := os.WriteFile(path, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || err.Error() != path+": no services" {
		t.Errorf("Load(empty config) = %v, want the path in the message", err)
	}
}
