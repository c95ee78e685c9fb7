package fleet

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// errLockLost says a certificate was issued after this node's lease ended,
// when another node may be ordering the same name: it is served here but
// not stored.
var errLockLost = errors.New("the name's lock was lost before the certificate was stored")

// order places an order for name, whose lock m is held, through a
// throwaway autocert Manager: autocert stays the ACME client, and a
// manager of its own per order is the one way to make it order now, for a
// name it may already hold. Its cache stores the certificate only while m
// is held. ECDSA only: the fleet keeps one certificate per name.
func (f *Fleet) order(ctx context.Context, name string, m *concurrency.Mutex) (*tls.Certificate, error) {
	key, err := f.accountKey(ctx)
	if err != nil {
		return nil, f.unavailable(name, err)
	}
	tmpl := f.o.Client
	g := &gate{next: tmpl.HTTPClient.Transport}
	if g.next == nil {
		g.next = http.DefaultTransport
	}
	view := &orderCache{f: f, name: name, lock: m, gate: g}
	om := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      view,
		HostPolicy: autocert.HostWhitelist(name),
		Email:      f.o.Email,
		Client: &acme.Client{Key: key, DirectoryURL: tmpl.DirectoryURL, UserAgent: tmpl.UserAgent,
			HTTPClient: &http.Client{Timeout: tmpl.HTTPClient.Timeout, Transport: g}},
	}
	om.HTTPHandler(nil) // offers HTTP-01 after TLS-ALPN-01
	stop := context.AfterFunc(ctx, func() { g.close(ctx.Err()) })
	defer stop()
	f.log.Info("acme: ordering", "host", name)
	start := time.Now()
	c, err := om.GetCertificate(&tls.ClientHelloInfo{ServerName: name,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	// The manager keeps a renewal timer of its own; closed, it never
	// reaches the CA again.
	why := g.close(errors.New("fleet: order finished"))
	took := time.Since(start).Round(time.Millisecond).String()
	if err != nil {
		if why != nil {
			err = fmt.Errorf("%w (%w)", err, why)
		}
		f.log.Warn("acme: order failed", "host", name, "took", took, "err", err)
		return nil, err
	}
	data, perr := view.result()
	if data == nil {
		return nil, errors.New("fleet: autocert returned a certificate it did not store")
	}
	switch {
	case perr == nil:
	case errors.Is(perr, errLockLost):
		f.log.Warn("acme: certificate not stored", "host", name, "err", perr)
	default:
		f.mu.Lock()
		f.pending[name] = data
		f.mu.Unlock()
		f.log.Error("acme: store unavailable", "host", name, "err", perr, "then", "served from this node, stored when etcd answers")
	}
	f.adopt(name, c, data)
	f.o.Issued()
	f.log.Info("acme: certificate stored", "host", name, "took", took, "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339), "fleet", perr == nil)
	return c, nil
}

// orderCache is an order's view of the store: a miss for every read, so
// autocert orders; the certificate written only under the name's lock;
// challenge answers written to etcd for every node to give.
type orderCache struct {
	f    *Fleet
	name string
	lock *concurrency.Mutex
	gate *gate

	mu   sync.Mutex
	data []byte
	err  error
}

func (c *orderCache) Get(context.Context, string) ([]byte, error) { return nil, autocert.ErrCacheMiss }

func (c *orderCache) Put(ctx context.Context, key string, data []byte) error {
	if key == c.name {
		err := c.f.putCert(ctx, key, data, c.lock)
		c.mu.Lock()
		c.data, c.err = data, err
		c.mu.Unlock()
		return err
	}
	if err := c.f.putToken(ctx, key, data); err != nil {
		// autocert ignores this error and asks the CA to validate, which
		// would then fail at every other node and count against the CA's
		// limit of failed validations: the order stops here instead.
		c.gate.close(err)
		return err
	}
	return nil
}

func (c *orderCache) Delete(ctx context.Context, key string) error { return c.f.deleteToken(ctx, key) }

func (c *orderCache) result() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.data, c.err
}

// putCert stores a certificate if lock is still held: the write and the
// check of the lock's key are one transaction, so a node whose lease ended
// mid-order cannot overwrite what the next holder stored.
func (f *Fleet) putCert(ctx context.Context, name string, data []byte, lock *concurrency.Mutex) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	resp, err := f.cli.Txn(ctx).If(lock.IsOwner()).Then(clientv3.OpPut(f.key(name), string(data))).Commit()
	if err != nil {
		return fmt.Errorf("%w: store certificate of %s: %w", ErrStoreUnavailable, name, err)
	}
	if !resp.Succeeded {
		return errLockLost
	}
	return nil
}

// putToken stores a challenge answer on this node's lease, so an order cut
// short by a dead node leaves none behind. It is retried within
// tokenBudget: the CA is asked to validate only once it is stored.
func (f *Fleet) putToken(ctx context.Context, key string, data []byte) error {
	f.mu.Lock()
	f.tokens[key] = data
	f.mu.Unlock()
	deadline := time.Now().Add(tokenBudget)
	for {
		err := f.tryPutToken(ctx, key, data)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			f.log.Error("acme: store unavailable", "key", key, "err", err, "then", "order stopped before validation")
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (f *Fleet) tryPutToken(ctx context.Context, key string, data []byte) error {
	s, err := f.lease(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if _, err := f.cli.Put(ctx, f.key(key), string(data), clientv3.WithLease(s.Lease())); err != nil {
		return fmt.Errorf("%w: store challenge answer: %w", ErrStoreUnavailable, err)
	}
	return nil
}

func (f *Fleet) deleteToken(ctx context.Context, key string) error {
	f.mu.Lock()
	delete(f.tokens, key)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	// Left behind on failure, it goes with this node's lease.
	_, err := f.cli.Delete(ctx, f.key(key))
	return err
}

// accountKey returns the fleet's one ACME account key. The first node to
// order creates it: its own key if it ran alone before (its cache has
// one), else a new one; a node that loses that race uses the winner's.
func (f *Fleet) accountKey(ctx context.Context) (crypto.Signer, error) {
	const name = "acme_account+key"
	f.mu.Lock()
	data := f.account
	f.mu.Unlock()
	if data == nil {
		var err error
		if data, err = f.sharedAccount(ctx, name); err != nil {
			return nil, err
		}
	}
	b, _ := pem.Decode(data)
	if b == nil || !strings.Contains(b.Type, "PRIVATE") {
		return nil, errors.New("fleet: stored ACME account key is not a PEM private key")
	}
	key, err := parseKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("fleet: stored ACME account key: %w", err)
	}
	f.mu.Lock()
	f.account = data
	f.mu.Unlock()
	return key, nil
}

func (f *Fleet) sharedAccount(ctx context.Context, name string) ([]byte, error) {
	data, _, err := f.get(ctx, name)
	if err != nil || data != nil {
		return data, err
	}
	mine, err := f.local.Get(ctx, name)
	if err != nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, err
		}
		mine = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	tctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	k := f.key(name)
	resp, err := f.cli.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(mine))).Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return nil, fmt.Errorf("%w: store account key: %w", ErrStoreUnavailable, err)
	}
	if !resp.Succeeded {
		return resp.Responses[0].GetResponseRange().Kvs[0].Value, nil
	}
	if err := f.local.Put(ctx, name, mine); err != nil {
		f.log.Error("acme: local copy of the account key not written", "err", err)
	}
	return mine, nil
}

// parseKey reads the key encodings autocert writes and reads.
func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("unknown private key type")
}

// gate is an order's HTTP transport. Closed, it fails every request: the
// way to stop an autocert order from outside, since autocert gives its
// order a context of its own.
type gate struct {
	next http.RoundTripper
	mu   sync.Mutex
	err  error
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	err := g.err
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return g.next.RoundTrip(r)
}

// close closes g for err and returns the error it was first closed with.
func (g *gate) close(err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	first := g.err
	if first == nil {
		g.err = err
	}
	return first
}
