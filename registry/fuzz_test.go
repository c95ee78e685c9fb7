package registry

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte(`{"Services": {"[::1]": {"Backends": ["[::1]", "[::ffff:10.0.0.1]:3001"]}}, "API": {"Subnet": "::ffff:10.0.0.0/120"}}`))
	f.Add([]byte(`{"Services": {"A.": {"Backends": ["10.0.0.1", "10.0.0.1:80"]}, "a": {"Redirect": {"URL": "http://a"}}}}`))
	f.Add([]byte(`{"Services": {"a": {"Redirect": {"URL": "https://b", "Url": 1}, "Backends": null}}, "API": null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := Parse("config.json", data)
		if err != nil {
			// User text is quoted, so every problem stays on its own line.
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "config.json: ") {
					t.Fatalf("problem %q does not start with the file name", line)
				}
			}
			return
		}
		services := snap.Services()
		if len(services) == 0 {
			t.Fatal("valid config without services")
		}
		for i, svc := range services {
			if i > 0 && services[i-1].Host >= svc.Host {
				t.Fatalf("Services() not sorted: %q before %q", services[i-1].Host, svc.Host)
			}
			if got := snap.Lookup(svc.Host); got != svc {
				t.Fatalf("Lookup(%q) = %v, want %v", svc.Host, got, svc)
			}
			if NormalizeHost(svc.Host) != svc.Host {
				t.Fatalf("Host %q is not normalized", svc.Host)
			}
			if (svc.Redirect == nil) == (len(svc.Backends) == 0) {
				t.Fatalf("service %q: want either a redirect or backends: %+v", svc.Host, svc)
			}
			if svc.Redirect != nil && (svc.Redirect.URL == nil || svc.HealthPath != "") {
				t.Fatalf("service %q: bad redirect service %+v", svc.Host, svc)
			}
			for _, b := range svc.Backends {
				if got, err := ParseBackend(b); err != nil || got != b {
					t.Fatalf("service %q: backend %q does not round-trip: %q, %v", svc.Host, b, got, err)
				}
			}
		}
		if subnet, ok := snap.APISubnet(); ok && subnet != subnet.Masked() {
			t.Fatalf("APISubnet() = %v has host bits", subnet)
		}
	})
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"WWW.Example.COM.:8080", "[::1]:80", "", "::1", "[::ffff:10.0.0.1]", "a..", "[[a]]", "a:b:c", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		n := NormalizeHost(host)
		if again := NormalizeHost(n); again != n {
			t.Fatalf("NormalizeHost(%q) = %q, but NormalizeHost(%q) = %q", host, n, n, again)
		}
		if strings.HasSuffix(n, ".") {
			t.Fatalf("NormalizeHost(%q) = %q ends with a dot", host, n)
		}
		if strings.ContainsFunc(n, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
			t.Fatalf("NormalizeHost(%q) = %q has upper case", host, n)
		}
	})
}
