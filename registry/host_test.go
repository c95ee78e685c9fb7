package registry

import (
	"fmt"
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"www.example.com", "www.example.com"},
		{"WWW.Example.COM.:8080", "www.example.com"},
		{"example.com.", "example.com"},
		{"example.com..", "example.com"},
		{"example.com:", "example.com"},
		{"10.0.0.1:80", "10.0.0.1"},
		{"[::1]:80", "::1"},
		{"[::1]", "::1"},
		{"::1", "::1"},
		{"[FD00:0::1]:443", "fd00::1"},
		{"[::ffff:10.0.0.1]", "::ffff:10.0.0.1"},
		{"", ""},
		{":80", ""},
		{".", ""},
		{"[", ""},
		{"[::1", ""},
		{"[10.0.0.1]", ""},
		{"[fe80::1%eth0]", ""},
		{"[not-an-ip]:80", ""},
		{"a:b:c", ""},
		{"ünïcode.example", "ünïcode.example"},
	}
	for _, tt := range tests {
		if got := NormalizeHost(tt.in); got != tt.want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNormalizeHostDoesNotAllocate(t *testing.T) {
	for _, host := range []string{"www.example.com", "www.example.com:8080", "www.example.com."} {
		if n := testing.AllocsPerRun(100, func() { NormalizeHost(host) }); n != 0 {
			t.Errorf("NormalizeHost(%q) allocates %v times", host, n)
		}
	}
}

func TestLookup(t *testing.T) {
	snap, err := Parse("config.json", []byte(`{"Services": {
		"Example.COM.": {"Backends": ["10.0.0.1"]},
		"[FD00::1]": {"Backends": ["10.0.0.2"]},
		"10.0.0.9": {"Backends": ["10.0.0.3"]}
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, want string }{ // want is the service's Host, "" for none
		{"example.com", "example.com"},
		{"EXAMPLE.com", "example.com"},
		{"example.com:3000", "example.com"},
		{"example.com.", "example.com"},
		{"Example.Com.:443", "example.com"},
		{"[fd00::1]", "fd00::1"},
		{"[fd00:0::1]:443", "fd00::1"},
		{"fd00::1", "fd00::1"},
		{"10.0.0.9:80", "10.0.0.9"},
		{"www.example.com", ""},
		{"example.co", ""},
		{"", ""},
		{":", ""},
		{"[", ""},
		{"]]:[[", ""},
		{"example.com/path", ""},
		{"\x00\xff", ""},
	}
	for _, tt := range tests {
		svc := snap.Lookup(tt.host)
		got := ""
		if svc != nil {
			got = svc.Host
		}
		if got != tt.want {
			t.Errorf("Lookup(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
	var nilSnap *Snapshot
	if nilSnap.Lookup("example.com") != nil || nilSnap.Services() != nil {
		t.Error("a nil snapshot has services")
	}
	if _, ok := nilSnap.APISubnet(); ok {
		t.Error("a nil snapshot has an API subnet")
	}
}

func TestParseBackend(t *testing.T) {
	tests := []struct{ in, want, problem string }{
		{"10.0.0.3", "10.0.0.3:80", ""},
		{"10.0.0.1:3001", "10.0.0.1:3001", ""},
		{"10.0.0.1:65535", "10.0.0.1:65535", ""},
		{"10.0.0.1:08080", "10.0.0.1:8080", ""},
		{"[::1]:3001", "[::1]:3001", ""},
		{"[::1]", "[::1]:80", ""},
		{"[FD00:0:0::1]:3001", "[fd00::1]:3001", ""},
		{"[::ffff:10.0.0.1]:3001", "10.0.0.1:3001", ""},
		{"", "", "empty address"},
		{"localhost:3001", "", "must be an IP address, e.g. 127.0.0.1:3001"},
		{"app.internal", "", "must be an IP address, e.g. 127.0.0.1:3001"},
		{"http://10.0.0.1:3001", "", "must be an IP address, e.g. 127.0.0.1:3001"},
		{"10.0.0.256", "", "must be an IP address, e.g. 127.0.0.1:3001"},
		{"10.0.0.1:3001/path", "", "invalid port (must be 1-65535)"},
		{"10.0.0.1:", "", "invalid port (must be 1-65535)"},
		{"10.0.0.1:0", "", "invalid port (must be 1-65535)"},
		{"10.0.0.1:65536", "", "invalid port (must be 1-65535)"},
		{"10.0.0.1:-1", "", "invalid port (must be 1-65535)"},
		{"10.0.0.1:+80", "", "invalid port (must be 1-65535)"},
		{"10.0.0.1:http", "", "invalid port (must be 1-65535)"},
		{"::1", "", "IPv6 address must be in brackets, e.g. [::1]:3001"},
		{"fd00::1:3001", "", "IPv6 address must be in brackets, e.g. [::1]:3001"},
		{"[::1", "", "missing ']' after IPv6 address"},
		{"[::1]3001", "", "unexpected text after ']'"},
		{"[10.0.0.1]:80", "", "brackets are only for IPv6 addresses"},
		{"[fe80::1%eth0]:80", "", "IPv6 zones are not supported"},
		{"0.0.0.0:80", "", "unspecified address, use the backend's own address"},
		{"[::]:80", "", "unspecified address, use the backend's own address"},
		{" 10.0.0.1", "", "must be an IP address, e.g. 127.0.0.1:3001"},
	}
	for _, tt := range tests {
		got, err := ParseBackend(tt.in)
		if tt.problem == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseBackend(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		want := fmt.Sprintf("backend %q: %s", tt.in, tt.problem)
		if err == nil || err.Error() != want || got != "" {
			t.Errorf("ParseBackend(%q) = %q, %v; want error %q", tt.in, got, err, want)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	var config strings.Builder
	config.WriteString(`{"Services": {`)
	for i := range 100 {
		fmt.Fprintf(&config, `"host%d.example.com": {"Backends": ["10.0.0.1"]},`, i)
	}
	config.WriteString(`"www.example.com": {"Backends": ["10.0.0.1"]}}}`)
	snap, err := Parse("config.json", []byte(config.String()))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if snap.Lookup("www.example.com") == nil {
			b.Fatal("not found")
		}
	}
}
