package worker

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// certExpiry returns what the metrics and the status page show of the
// certificates held: each configured host's expiry, read from the cache
// when asked (a scrape), so a renewal shows at once. Hosts without a
// certificate yet are left out.
func certExpiry(cache autocert.Cache, hosts map[string]bool) func() map[string]time.Time {
	return func() map[string]time.Time {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out := map[string]time.Time{}
		for h := range hosts {
			data, err := cache.Get(ctx, h)
			if err != nil {
				continue
			}
			if t, ok := leafExpiry(data); ok {
				out[h] = t
			}
		}
		return out
	}
}

// leafExpiry reads autocert's cache format, the private key and then the
// chain as PEM, and returns the leaf's expiry.
func leafExpiry(data []byte) (time.Time, bool) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return time.Time{}, false
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return time.Time{}, false
			}
			return c.NotAfter, true
		}
	}
}
