package registry

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// NormalizeHost turns a Host header or a config host key into the key
// services are stored under: ASCII lower case, without port, trailing dots
// or IPv6 brackets, IPv6 in canonical form. Input that cannot be a host
// gives "". NormalizeHost is idempotent and, for input that is already
// normalized and not IPv6, does not allocate.
func NormalizeHost(host string) string {
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return ""
		}
		return normalizeIPv6(host[1:end])
	}
	if i := strings.IndexByte(host, ':'); i >= 0 {
		if strings.IndexByte(host[i+1:], ':') >= 0 {
			return normalizeIPv6(host) // a bare IPv6 literal: no room for a port
		}
		host = host[:i]
	}
	return lowerASCII(strings.TrimRight(host, "."))
}

// normalizeIPv6 returns the canonical form of an IPv6 literal, or "" if s
// is not one. Zones are rejected: they have no meaning in a Host header.
func normalizeIPv6(s string) string {
	addr, err := netip.ParseAddr(s)
	if err != nil || !addr.Is6() || addr.Zone() != "" {
		return ""
	}
	return addr.String()
}

func lowerASCII(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if 'A' <= b[j] && b[j] <= 'Z' {
			b[j] += 'a' - 'A'
		}
	}
	return string(b)
}

// checkHost describes what is wrong with a config host key, or returns "".
// Keys are DNS names (letters, digits, '-', '_'; one trailing dot allowed)
// or IP literals, IPv6 optionally in brackets.
func checkHost(key string) string {
	switch {
	case key == "":
		return "empty host name"
	case strings.Contains(key, "://"):
		return "host name must be a bare name such as www.example.com, not a URL"
	case strings.HasPrefix(key, "["):
		inner, rest, ok := strings.Cut(key[1:], "]")
		switch {
		case !ok:
			return "missing ']' after IPv6 address"
		case strings.HasPrefix(rest, ":"):
			return "host name must not include a port"
		case rest != "" || normalizeIPv6(inner) == "":
			return "invalid IPv6 address in brackets"
		}
		return ""
	}
	if addr, err := netip.ParseAddr(key); err == nil {
		if addr.Zone() != "" {
			return "host name must not have an IPv6 zone"
		}
		return ""
	}
	switch {
	case strings.Contains(key, "/"):
		return "host name must not contain a path"
	case strings.Contains(key, ":"):
		return "host name must not include a port"
	case strings.HasPrefix(key, "*"):
		return "wildcard host names are not supported"
	}
	name := strings.TrimSuffix(key, ".")
	if len(name) > 253 {
		return "host name longer than 253 characters"
	}
	for label := range strings.SplitSeq(name, ".") {
		if problem := checkLabel(label); problem != "" {
			return problem
		}
	}
	return ""
}

func checkLabel(label string) string {
	switch {
	case label == "":
		return "host name has an empty label (two dots in a row, or a leading dot)"
	case len(label) > 63:
		return "host name has a label longer than 63 characters"
	case label[0] == '-' || label[len(label)-1] == '-':
		return "host name label must not start or end with '-'"
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case c >= utf8.RuneSelf:
			return "non-ASCII host name: write internationalized names in punycode (xn--...)"
		default:
			return fmt.Sprintf("invalid character %q in host name", rune(c))
		}
	}
	return ""
}

// ParseBackend validates a backend address and returns it normalized as
// "ip:port": port 80 when missing, IPv6 in brackets and canonical form,
// IPv4-mapped IPv6 as plain IPv4. Host names are rejected so that a
// backend never depends on DNS.
func ParseBackend(addr string) (string, error) {
	fail := func(problem string) (string, error) {
		return "", fmt.Errorf("backend %q: %s", addr, problem)
	}
	var host, port string
	var hasPort bool
	switch {
	case addr == "":
		return fail("empty address")
	case strings.HasPrefix(addr, "["):
		inner, rest, ok := strings.Cut(addr[1:], "]")
		host = inner
		switch {
		case !ok:
			return fail("missing ']' after IPv6 address")
		case strings.HasPrefix(rest, ":"):
			port, hasPort = rest[1:], true
		case rest != "":
			return fail("unexpected text after ']'")
		}
	case strings.Count(addr, ":") > 1:
		if _, err := netip.ParseAddr(addr); err == nil {
			return fail("IPv6 address must be in brackets, e.g. [::1]:3001")
		}
		return fail("must be an IP address, e.g. 127.0.0.1:3001")
	default:
		host, port, hasPort = strings.Cut(addr, ":")
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return fail("must be an IP address, e.g. 127.0.0.1:3001")
	case ip.Zone() != "":
		return fail("IPv6 zones are not supported")
	case strings.HasPrefix(addr, "[") && !ip.Is6():
		return fail("brackets are only for IPv6 addresses")
	case ip.IsUnspecified():
		return fail("unspecified address, use the backend's own address")
	}
	n := uint64(80)
	if hasPort {
		n, err = strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return fail("invalid port (must be 1-65535)")
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(n)).String(), nil
}
