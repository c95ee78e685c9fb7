package worker

import (
	"crypto/tls"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Etcd is where a fleet of nodes keeps its shared ACME state.
type Etcd struct {
	Endpoints []string
	Prefix    string
	CAFile    string // PEM roots for etcd; "" means the system roots
	CertFile  string // client certificate and key; "" means none
	KeyFile   string
}

// certSource is where HTTPS mode's certificates come from: get serves
// handshakes, m answers the CA's validations on the plain listener.
type certSource struct {
	get   func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	m     *autocert.Manager
	close func()
}

// newCertSource is autocert on its own for a single node, and for a fleet
// autocert behind the fleet's store and locks.
func newCertSource(o Options, rt *router, hosts map[string]bool, client *acme.Client) (*certSource, error) {
	a := o.ACME
	issued := func() { rt.metrics.ACMEOrder(true) }
	if a.Etcd == nil {
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS, // running in HTTPS mode is the operator's consent
			Cache:      &loggedCache{Cache: autocert.DirCache(a.CacheDir), log: o.Logger, issued: issued},
			HostPolicy: hostPolicy(hosts),
			Email:      a.Email,
			Client:     client,
		}
		return &certSource{get: m.GetCertificate, m: m, close: func() {}}, nil
	}
	return newFleetSource(o, hosts, client, issued)
}
