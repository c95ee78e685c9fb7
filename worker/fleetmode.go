//go:build !nofleet

package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/acme"

	"srp/registry"
	"srp/worker/fleet"
)

// newFleetSource serves certificates through the fleet: etcd's client
// is linked only into builds without the nofleet tag.
func newFleetSource(o Options, hosts map[string]bool, client *acme.Client, issued func()) (*certSource, error) {
	a := o.ACME
	tc, err := etcdTLS(a.Etcd)
	if err != nil {
		return nil, err
	}
	fl, err := fleet.Open(fleet.Options{
		Endpoints: a.Etcd.Endpoints, Prefix: a.Etcd.Prefix, TLS: tc,
		Dir: a.CacheDir, Hosts: slices.Sorted(maps.Keys(hosts)),
		Client: client, Email: a.Email, Log: o.Logger, Issued: issued,
	})
	if err != nil {
		return nil, err
	}
	policy := hostPolicy(hosts)
	m := fl.Responder(policy)
	get := func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
			return m.GetCertificate(hello) // a TLS-ALPN-01 validation
		}
		ctx := hello.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		if err := policy(ctx, hello.ServerName); err != nil {
			return nil, err
		}
		return fl.Certificate(ctx, registry.NormalizeHost(hello.ServerName))
	}
	o.Logger.Info("acme: fleet mode", "etcd", strings.Join(a.Etcd.Endpoints, ","), "prefix", a.Etcd.Prefix)
	return &certSource{get: get, m: m, close: fl.Close}, nil
}

// etcdTLS reads the TLS files for etcd. Without any, https endpoints are
// checked against the system roots and http ones are plain.
func etcdTLS(e *Etcd) (*tls.Config, error) {
	https := slices.ContainsFunc(e.Endpoints, func(u string) bool { return strings.HasPrefix(u, "https://") })
	if e.CAFile == "" && e.CertFile == "" && !https {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CAFile != "" {
		data, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read etcd CA roots: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("read etcd CA roots %s: no PEM certificate in the file", e.CAFile)
		}
	}
	if e.CertFile != "" || e.KeyFile != "" {
		c, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate %s, key %s: %w", e.CertFile, e.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}
