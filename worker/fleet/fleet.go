// Package fleet shares one ACME state among srp nodes through etcd: the
// account key, the certificates and the challenge answers live under a key
// prefix, so the fleet has one account and any node answers any validation.
// A name is ordered by one node at a time, under a lock on that node's etcd
// lease, and its certificate is stored only while the lock is still held.
//
// Each node keeps its own copy of the certificates in its cache directory
// and serves from memory: no handshake for a name the node holds waits on
// etcd, and a node restarted while etcd is down serves what it had.
package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Options configures a node's part in the fleet.
type Options struct {
	Endpoints []string    // etcd client URLs
	Prefix    string      // key prefix shared by the fleet, such as "/srp/"
	TLS       *tls.Config // TLS to etcd; nil means plain connections
	Dir       string      // the node's own copy, in autocert's cache format
	Hosts     []string    // names whose local copies are loaded at start
	// Client is the ACME client every order copies: directory, user agent
	// and HTTP client. Its Key is replaced by the fleet's account key.
	Client *acme.Client
	Email  string
	Log    *slog.Logger
	Issued func() // a certificate this node ordered was stored
}

// ErrStoreUnavailable wraps every failure that comes from etcd.
var ErrStoreUnavailable = errors.New("store unavailable")

// Fleet is one worker's view of the fleet. Its methods are safe for
// concurrent use.
type Fleet struct {
	o      Options
	cli    *clientv3.Client
	local  autocert.DirCache
	log    *slog.Logger
	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu      sync.Mutex
	certs   map[string]*tls.Certificate // served from memory
	calls   map[string]*call            // obtains in flight, one per name
	failed  map[string]failure          // recent failures, answered at once
	pending map[string][]byte           // certificates not yet written to etcd
	tokens  map[string][]byte           // challenge answers this node stored
	account []byte                      // the account key's PEM, once read

	// sessMu, not mu, guards the session: it is made while etcd is asked,
	// and mu is taken by every handshake.
	sessMu  sync.Mutex
	session *concurrency.Session
}

type failure struct {
	err   error
	until time.Time
}

// Open connects to etcd without waiting for it, loads the local copies of
// opts.Hosts and starts the renewal loop. Nothing here needs etcd up.
func Open(o Options) (*Fleet, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("fleet: no etcd endpoint")
	}
	if o.Client == nil || o.Client.HTTPClient == nil {
		return nil, errors.New("fleet: an ACME client with its HTTP client is required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Issued == nil {
		o.Issued = func() {}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            o.Endpoints,
		TLS:                  o.TLS,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: storeTimeout,
		// Its own JSON log would bypass slog; failures reach the operator
		// through the calls that met them.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: etcd client for %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{o: o, cli: cli, local: autocert.DirCache(o.Dir), log: o.Log, ctx: ctx, cancel: cancel,
		certs: map[string]*tls.Certificate{}, calls: map[string]*call{}, failed: map[string]failure{},
		pending: map[string][]byte{}, tokens: map[string][]byte{}}
	for _, h := range o.Hosts {
		if data, err := f.local.Get(ctx, h); err == nil {
			if c, err := parseCert(h, data, time.Now()); err == nil {
				f.certs[h] = c
			}
		}
	}
	go f.loop()
	return f, nil
}

// Close stops the renewal loop and gives up this node's lease, so a lock
// it held is free at once rather than when the lease expires.
func (f *Fleet) Close() {
	f.sessMu.Lock()
	s := f.session
	f.session = nil
	f.sessMu.Unlock()
	if s != nil {
		s.Orphan()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = f.cli.Revoke(ctx, s.Lease())
		cancel()
	}
	f.cancel()
	_ = f.cli.Close()
}

// key is where an autocert cache entry lives in etcd.
func (f *Fleet) key(name string) string { return f.o.Prefix + "acme/" + name }

// get reads one entry; nil data means there is none.
func (f *Fleet) get(ctx context.Context, name string) ([]byte, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	resp, err := f.cli.Get(ctx, f.key(name))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: get %s: %w", ErrStoreUnavailable, f.key(name), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// lease returns this node's session, made anew if the last one expired
// (etcd unreachable for longer than its TTL).
func (f *Fleet) lease(ctx context.Context) (*concurrency.Session, error) {
	f.sessMu.Lock()
	defer f.sessMu.Unlock()
	if f.session != nil {
		select {
		case <-f.session.Done():
		default:
			return f.session, nil
		}
	}
	gctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	// Granted here, under a deadline: the session would wait for etcd
	// without one.
	l, err := f.cli.Grant(gctx, int64(lockTTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: grant lease: %w", ErrStoreUnavailable, err)
	}
	s, err := concurrency.NewSession(f.cli, concurrency.WithLease(l.ID), concurrency.WithContext(f.ctx))
	if err != nil {
		return nil, fmt.Errorf("%w: session: %w", ErrStoreUnavailable, err)
	}
	f.session = s
	return s, nil
}

// refuse is the transport of a client that must never reach the CA.
type refuse struct{}

func (refuse) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("fleet: orders go through the fleet's lock")
}
