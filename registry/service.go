package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// service validates one service object. It returns nil when the service
// has a problem (already reported).
func (p *problems) service(where string, raw []byte) *Service {
	if k := kind(raw); k != "object" {
		p.errorf(where, "must be an object with Backends or Redirect, got %s", k)
		return nil
	}
	before := len(p.errs)
	f := p.fields(where, raw, "HealthPath", "Backends", "Redirect")
	healthPath := p.healthPath(where, f["HealthPath"])
	backends, listed := p.backends(where, f["Backends"])
	redirect := p.redirect(where, f["Redirect"])
	isRedirect := f["Redirect"] != nil
	switch {
	case isRedirect && listed > 0:
		p.errorf(where, "has both Backends and Redirect; a service either proxies or redirects")
	case isRedirect && healthPath != "":
		p.errorf(where, "HealthPath %q is not allowed on a redirect service", healthPath)
	case !isRedirect && f["Backends"] == nil:
		p.errorf(where, "needs Backends or Redirect")
	case !isRedirect && listed == 0:
		p.errorf(where, "Backends is empty")
	}
	if len(p.errs) > before {
		return nil
	}
	return &Service{HealthPath: healthPath, Backends: backends, Redirect: redirect}
}

func (p *problems) healthPath(where string, raw []byte) string {
	path := p.str(where, "HealthPath", raw)
	switch {
	case path == "":
	case path[0] != '/':
		p.errorf(where, "HealthPath %q: must start with \"/\"", path)
	case strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		p.errorf(where, "HealthPath %q: must not contain spaces or control characters", path)
	default:
		return path
	}
	return ""
}

// backends validates the Backends list. listed is the number of entries in
// the config, valid or not, or -1 when Backends is not a list.
func (p *problems) backends(where string, raw []byte) (addrs []string, listed int) {
	if raw == nil {
		return nil, 0
	}
	if k := kind(raw); k != "list" {
		p.errorf(where, "Backends: must be a list of strings, got %s", k)
		return nil, -1
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		p.errorf(where, "Backends: %w", err)
		return nil, -1
	}
	written := make(map[string]string, len(items)) // normalized -> as written
	for i, item := range items {
		if k := kind(item); k != "string" {
			p.errorf(where, "Backends[%d]: must be a string, got %s", i, k)
			continue
		}
		var s string
		if err := json.Unmarshal(item, &s); err != nil {
			p.errorf(where, "Backends[%d]: %w", i, err)
			continue
		}
		addr, err := ParseBackend(s)
		switch first, dup := written[addr]; {
		case err != nil:
			p.errorf(where, "%w", err)
		case dup && first == s:
			p.errorf(where, "backend %q: listed twice", s)
		case dup:
			p.errorf(where, "backend %q: same backend as %q", s, first)
		default:
			written[addr] = s
			addrs = append(addrs, addr)
		}
	}
	return addrs, len(items)
}

func (p *problems) redirect(where string, raw []byte) *Redirect {
	if raw == nil {
		return nil
	}
	if k := kind(raw); k != "object" {
		p.errorf(where, "Redirect: must be an object with URL, DiscardPath and Permanent, got %s", k)
		return nil
	}
	f := p.fields(where+"Redirect: ", raw, "URL", "DiscardPath", "Permanent")
	r := &Redirect{
		DiscardPath: p.boolean(where, "Redirect.DiscardPath", f["DiscardPath"]),
		Permanent:   p.boolean(where, "Redirect.Permanent", f["Permanent"]),
	}
	s := p.str(where, "Redirect.URL", f["URL"])
	if s == "" {
		if f["URL"] == nil || kind(f["URL"]) == "string" {
			p.errorf(where, "Redirect.URL is required")
		}
		return nil
	}
	u, err := url.Parse(s)
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err // the outer error repeats the URL
	}
	switch {
	case err != nil:
		p.errorf(where, "Redirect.URL %q: %w", s, err)
	case !u.IsAbs():
		p.errorf(where, "Redirect.URL %q: must be an absolute URL, e.g. https://www.example.com", s)
	case u.Scheme != "http" && u.Scheme != "https":
		p.errorf(where, "Redirect.URL %q: scheme must be http or https", s)
	case u.Host == "":
		p.errorf(where, "Redirect.URL %q: missing host", s)
	default:
		r.URL = u
		return r
	}
	return nil
}

// api validates the API section and returns the subnet allowed to use it.
func (p *problems) api(raw []byte) netip.Prefix {
	where := p.prefix()
	if raw == nil {
		return netip.Prefix{}
	}
	if k := kind(raw); k != "object" {
		p.errorf(where, "API: must be an object with Subnet, got %s", k)
		return netip.Prefix{}
	}
	f := p.fields(where+"API: ", raw, "Subnet")
	s := p.str(where, "API.Subnet", f["Subnet"])
	if s == "" {
		return netip.Prefix{}
	}
	prefix, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		p.errorf(where, "API.Subnet %q: must be an address prefix such as 10.0.0.0/24", s)
	case prefix != prefix.Masked():
		p.errorf(where, "API.Subnet %q: host bits set (did you mean %q?)", s, prefix.Masked())
	case prefix.Addr().Is4In6():
		// Clients connecting over IPv4 are seen as IPv4 addresses, which an
		// IPv4-mapped prefix would never contain. Being masked, the prefix
		// is at least /96 here, since shorter ones clear part of ::ffff.
		return netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
	default:
		return prefix
	}
	return netip.Prefix{}
}

// str decodes an optional string field; absent or null is "".
func (p *problems) str(where, name string, raw []byte) string {
	var s string
	p.leaf(where, name, "string", raw, &s)
	return s
}

// boolean decodes an optional boolean field; absent or null is false.
func (p *problems) boolean(where, name string, raw []byte) bool {
	var b bool
	p.leaf(where, name, "boolean", raw, &b)
	return b
}

func (p *problems) leaf(where, name, want string, raw []byte, v any) {
	if raw == nil {
		return
	}
	if k := kind(raw); k != want {
		p.errorf(where, "%s: must be a %s, got %s", name, want, k)
		return
	}
	if err := json.Unmarshal(raw, v); err != nil {
		p.errorf(where, "%s: %w", name, err)
	}
}

// errorf records one problem. where is the file and, for a service, the
// host; it is an argument, never part of the format, since it holds
// user-supplied text.
func (p *problems) errorf(where, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s"+format, append([]any{where}, args...)...))
}
