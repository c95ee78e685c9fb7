package fleet

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Responder returns the autocert Manager that answers the CA's
// validations on this node, for orders any node placed: HTTP-01 through
// its HTTPHandler, TLS-ALPN-01 through its GetCertificate for acme-tls/1
// hellos. It serves no certificate and can never order.
func (f *Fleet) Responder(policy autocert.HostPolicy) *autocert.Manager {
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      challenges{f},
		HostPolicy: policy,
		Client:     &acme.Client{HTTPClient: &http.Client{Transport: refuse{}}},
	}
}

// challenges is the Responder's cache: the answers this node stored, then
// those in etcd.
type challenges struct{ f *Fleet }

func (c challenges) Get(ctx context.Context, key string) ([]byte, error) {
	if !strings.HasSuffix(key, "+token") && !strings.HasSuffix(key, "+http-01") {
		return nil, autocert.ErrCacheMiss
	}
	c.f.mu.Lock()
	data, ok := c.f.tokens[key]
	c.f.mu.Unlock()
	if ok {
		return data, nil
	}
	data, _, err := c.f.get(ctx, key)
	if err != nil {
		c.f.log.Warn("acme: store unavailable", "key", key, "err", err, "then", "validation not answered")
		return nil, err
	}
	if data == nil {
		return nil, autocert.ErrCacheMiss
	}
	return data, nil
}

func (challenges) Put(context.Context, string, []byte) error {
	return errors.New("fleet: only orders store ACME state")
}

func (challenges) Delete(context.Context, string) error { return nil }
