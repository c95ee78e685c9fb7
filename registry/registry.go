// Package registry parses and validates srp's JSON config into immutable snapshots.
//
// A Snapshot never changes after Parse returns, so any number of goroutines
// may read it without locking while a reload builds the next one. Parse
// reports every validation problem at once, each naming the file, the host
// and the problem, so an operator can fix a config in one pass.
package registry

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"slices"
)

// Snapshot is one validated config. It is never modified after Parse
// returns. A nil *Snapshot has no services and no API.
type Snapshot struct {
	byHost   map[string]*Service // keyed by NormalizeHost of the config key
	services []*Service          // sorted by Host
	subnet   netip.Prefix        // zero (invalid) when the internal API is off
}

// Service is one configured host. Shared by the snapshot: callers must not modify it.
type Service struct {
	Host       string    // normalized key: lower case, no trailing dot
	HealthPath string    // "" means no health checks
	Backends   []string  // normalized "ip:port"; IPv6 as "[::1]:3001"; port 80 filled in when missing
	Redirect   *Redirect // non-nil for a redirect service (then Backends is empty)
}

// Redirect describes where a redirect service sends its clients.
type Redirect struct {
	URL         *url.URL // absolute http or https URL
	DiscardPath bool     // false keeps the request's path and query
	Permanent   bool     // true answers 308, false 307
}

// Load reads the config file at path and parses it with Parse.
func Load(path string) (*Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse validates a config. file names the config in error messages. On
// failure the error joins one error per problem (see errors.Join), in a
// deterministic order: document-level problems, then services sorted by
// host, then the API section.
func Parse(file string, data []byte) (*Snapshot, error) {
	p := &problems{file: file}
	snap := p.parse(data)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return snap, nil
}

// Lookup returns the service for a request's Host header, or nil if the
// host is not configured. It does not allocate for a lower-case host
// without a port.
func (s *Snapshot) Lookup(host string) *Service {
	if s == nil {
		return nil
	}
	return s.byHost[NormalizeHost(host)]
}

// Services returns all services sorted by Host. The slice is the caller's;
// the services are shared.
func (s *Snapshot) Services() []*Service {
	if s == nil {
		return nil
	}
	return slices.Clone(s.services)
}

// APISubnet returns the subnet allowed to use the internal API, and false
// when the API is off. An IPv4-mapped IPv6 prefix in the config (such as
// "::ffff:10.0.0.0/120") is returned as its IPv4 equivalent ("10.0.0.0/24"),
// so callers should Unmap client addresses before calling Contains.
func (s *Snapshot) APISubnet() (netip.Prefix, bool) {
	if s == nil {
		return netip.Prefix{}, false
	}
	return s.subnet, s.subnet.IsValid()
}

func (p *problems) parse(data []byte) *Snapshot {
	doc := p.document(data)
	if doc == nil {
		return nil
	}
	f := p.fields(p.prefix(), doc, "Services", "API")
	services := p.services(f["Services"])
	subnet := p.api(f["API"])
	if len(p.errs) > 0 {
		return nil
	}
	snap := &Snapshot{byHost: make(map[string]*Service, len(services)), services: services, subnet: subnet}
	for _, svc := range services {
		snap.byHost[svc.Host] = svc
	}
	return snap
}

// services validates the Services object. Hosts are visited in sorted
// order so problems come out in the same order on every run.
func (p *problems) services(raw []byte) []*Service {
	if raw == nil {
		p.errorf(p.prefix(), "no services")
		return nil
	}
	if k := kind(raw); k != "object" {
		p.errorf(p.prefix(), "Services: must be an object mapping host names to services, got %s", k)
		return nil
	}
	members := objectMembers(raw)
	if len(members) == 0 {
		p.errorf(p.prefix(), "no services")
		return nil
	}
	slices.SortStableFunc(members, func(a, b member) int { return cmp.Compare(a.key, b.key) })
	firstKey := make(map[string]string, len(members)) // normalized host -> first config key for it
	var services []*Service
	for _, m := range members {
		where := p.at(m.key)
		problem := checkHost(m.key)
		if problem != "" {
			p.errorf(where, "%s", problem)
		}
		host := NormalizeHost(m.key)
		first, dup := firstKey[host]
		switch {
		case problem != "":
		case dup && first == m.key:
			p.errorf(where, "listed twice")
		case dup:
			p.errorf(where, "same host as %q", first)
		default:
			firstKey[host] = m.key
		}
		// Validate the body even under a bad key, to report all its problems now.
		svc := p.service(where, m.val)
		if problem != "" || dup || svc == nil {
			continue
		}
		svc.Host = host
		if svc.Redirect != nil && selfRedirect(host, svc.Redirect.URL) {
			p.errorf(where, "Redirect.URL %q: redirects to the same host, a loop", svc.Redirect.URL)
			continue
		}
		services = append(services, svc)
	}
	slices.SortFunc(services, func(a, b *Service) int { return cmp.Compare(a.Host, b.Host) })
	return services
}

func selfRedirect(host string, u *url.URL) bool {
	return u.Port() == "" && NormalizeHost(u.Host) == host
}
