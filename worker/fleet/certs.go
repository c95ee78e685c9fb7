package fleet

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// call is one obtain of a name in flight, which every handshake for that
// name waits on.
type call struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// Certificate returns name's certificate, which the caller has allowed. A
// held one comes from memory at once, and one that is due is renewed in
// the background; otherwise the caller waits, bounded by ctx, for the
// store's copy or for an order.
func (f *Fleet) Certificate(ctx context.Context, name string) (*tls.Certificate, error) {
	now := time.Now()
	f.mu.Lock()
	c := f.certs[name]
	if c != nil && now.Before(c.Leaf.NotAfter) {
		if due(c, now) && !f.backingOff(name, now) {
			f.start(name)
		}
		f.mu.Unlock()
		return c, nil
	}
	if f.backingOff(name, now) {
		err := f.failed[name].err
		f.mu.Unlock()
		return nil, err
	}
	cl := f.start(name)
	f.mu.Unlock()
	select {
	case <-cl.done:
		return cl.cert, cl.err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the certificate of %s: %w", name, ctx.Err())
	}
}

// start runs an obtain of name unless one is in flight. f.mu is held.
func (f *Fleet) start(name string) *call {
	if cl := f.calls[name]; cl != nil {
		return cl
	}
	cl := &call{done: make(chan struct{})}
	f.calls[name] = cl
	go func() {
		// Not the handshake's context: an order outlives a client that
		// gave up, as autocert's do.
		ctx, cancel := context.WithTimeout(f.ctx, orderTimeout)
		cl.cert, cl.err = f.obtain(ctx, name)
		cancel()
		f.mu.Lock()
		delete(f.calls, name)
		if cl.err != nil {
			wait := orderRetry
			if errors.Is(cl.err, ErrStoreUnavailable) {
				wait = storeRetry
			}
			f.failed[name] = failure{err: cl.err, until: time.Now().Add(wait)}
		} else {
			delete(f.failed, name)
		}
		f.mu.Unlock()
		close(cl.done)
	}()
	return cl
}

// backingOff says name's last obtain failed recently: handshakes get its
// error at once rather than start an order each. f.mu is held.
func (f *Fleet) backingOff(name string, now time.Time) bool {
	fl, ok := f.failed[name]
	return ok && now.Before(fl.until)
}

// obtain brings name's certificate into memory: the store's copy if it is
// not due, else a new order placed under the name's lock.
func (f *Fleet) obtain(ctx context.Context, name string) (*tls.Certificate, error) {
	c, err := f.fromStore(ctx, name)
	if err != nil || c != nil {
		return c, f.unavailable(name, err)
	}
	s, err := f.lease(ctx)
	if err != nil {
		return nil, f.unavailable(name, err)
	}
	m := concurrency.NewMutex(s, f.o.Prefix+"lock/"+name+"/")
	start := time.Now()
	if err := m.Lock(ctx); err != nil {
		return nil, f.unavailable(name, fmt.Errorf("%w: lock %s: %w", ErrStoreUnavailable, name, err))
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		_ = m.Unlock(uctx) // else the lease's end frees it
		cancel()
	}()
	if waited := time.Since(start); waited > time.Second {
		f.log.Info("acme: waited for another node's order", "host", name, "took", waited.Round(time.Millisecond).String())
	}
	// Another node may have stored it while this one waited, or failed.
	if c, err := f.fromStore(ctx, name); err != nil || c != nil {
		return c, f.unavailable(name, err)
	}
	if err := f.failedRecently(ctx, name); err != nil {
		return nil, f.unavailable(name, err)
	}
	c, err = f.order(ctx, name, m)
	if err != nil && ctx.Err() == nil && !errors.Is(err, ErrStoreUnavailable) {
		f.markFailed(name, err)
	}
	return c, err
}

// failedRecently returns the error of a failed order for name that any
// node placed within orderRetry: without it, each node waiting on the lock
// would order again in turn, and a name the CA refuses would cost one
// failed order per node.
func (f *Fleet) failedRecently(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	resp, err := f.cli.Get(ctx, f.o.Prefix+"failed/"+name)
	if err != nil {
		return fmt.Errorf("%w: get %s: %w", ErrStoreUnavailable, f.o.Prefix+"failed/"+name, err)
	}
	if len(resp.Kvs) > 0 {
		return fmt.Errorf("an order for %s failed on another node less than %v ago: %s", name, orderRetry, resp.Kvs[0].Value)
	}
	return nil
}

// markFailed tells the fleet that an order for name failed, for
// orderRetry: on a lease of its own, so the mark goes away by itself.
func (f *Fleet) markFailed(name string, why error) {
	ctx, cancel := context.WithTimeout(f.ctx, storeTimeout)
	defer cancel()
	l, err := f.cli.Grant(ctx, int64(orderRetry/time.Second))
	if err == nil {
		_, err = f.cli.Put(ctx, f.o.Prefix+"failed/"+name, why.Error(), clientv3.WithLease(l.ID))
	}
	if err != nil {
		f.log.Warn("acme: store unavailable", "host", name, "err", err, "then", "other nodes may order the name again at once")
	}
}

// fromStore returns the store's certificate for name if it is there and not
// due, keeping it in memory and in the local copy; nil if an order is needed.
func (f *Fleet) fromStore(ctx context.Context, name string) (*tls.Certificate, error) {
	data, _, err := f.get(ctx, name)
	if err != nil || data == nil {
		return nil, err
	}
	now := time.Now()
	c, err := parseCert(name, data, now)
	if err != nil {
		f.log.Error("acme: stored certificate unusable, ordering anew", "host", name, "err", err)
		return nil, nil
	}
	if due(c, now) {
		return nil, nil
	}
	if f.adopt(name, c, data) {
		f.log.Info("acme: certificate loaded from the fleet", "host", name, "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// adopt serves c for name and writes the local copy, reporting whether it
// is new to this node.
func (f *Fleet) adopt(name string, c *tls.Certificate, data []byte) bool {
	f.mu.Lock()
	old := f.certs[name]
	f.certs[name] = c
	f.mu.Unlock()
	if old != nil && string(old.Certificate[0]) == string(c.Certificate[0]) {
		return false
	}
	if err := f.local.Put(f.ctx, name, data); err != nil {
		f.log.Error("acme: local certificate copy not written", "host", name, "err", err)
	}
	return true
}

// unavailable logs a store fault once per obtain, with what it costs.
func (f *Fleet) unavailable(name string, err error) error {
	if errors.Is(err, ErrStoreUnavailable) {
		f.log.Warn("acme: store unavailable", "host", name, "err", err)
	}
	return err
}

// parseCert reads autocert's cache format, the private key and then the
// chain, and checks the pair matches, names name and has not expired.
func parseCert(name string, data []byte, now time.Time) (*tls.Certificate, error) {
	key, chain := pem.Decode(data)
	if key == nil {
		return nil, errors.New("no PEM private key")
	}
	c, err := tls.X509KeyPair(chain, data[:len(data)-len(chain)])
	if err != nil {
		return nil, err
	}
	if err := c.Leaf.VerifyHostname(name); err != nil {
		return nil, err
	}
	if !now.Before(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("expired at %s", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &c, nil
}

// due says c should be renewed: a third of its lifetime is left, which
// for Let's Encrypt's 90 days is autocert's own 30.
func due(c *tls.Certificate, now time.Time) bool {
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return c.Leaf.NotAfter.Sub(now) < life/3
}

// loop renews what is due and retries writes to etcd that failed, until
// Close. It wakes when the next certificate falls due, at least every
// minute.
func (f *Fleet) loop() {
	for {
		now := time.Now()
		wake := now.Add(time.Minute)
		f.mu.Lock()
		for name, c := range f.certs {
			at := c.Leaf.NotAfter.Add(-c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) / 3)
			if !now.Before(at) {
				if !f.backingOff(name, now) {
					f.start(name)
				}
				at = now.Add(storeRetry)
			}
			if at.Before(wake) {
				wake = at
			}
		}
		retry := len(f.pending) > 0
		f.mu.Unlock()
		if retry {
			f.flush()
		}
		t := time.NewTimer(max(time.Until(wake), 100*time.Millisecond))
		select {
		case <-f.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// flush retries the writes of certificates ordered while etcd was down,
// unless the fleet stored a later one meanwhile.
func (f *Fleet) flush() {
	f.mu.Lock()
	p := maps.Clone(f.pending)
	f.mu.Unlock()
	for name, data := range p {
		err := f.storeNewer(name, data)
		if err != nil {
			f.log.Warn("acme: store unavailable", "host", name, "err", err, "then", "certificate write retried")
			continue
		}
		f.mu.Lock()
		delete(f.pending, name)
		f.mu.Unlock()
		f.log.Info("acme: certificate stored after a store fault", "host", name)
	}
}

func (f *Fleet) storeNewer(name string, data []byte) error {
	now := time.Now()
	mine, err := parseCert(name, data, now)
	if err != nil {
		return nil // expired meanwhile: nothing worth storing
	}
	cur, rev, err := f.get(f.ctx, name)
	if err != nil {
		return err
	}
	if c, err := parseCert(name, cur, now); cur != nil && err == nil && !c.Leaf.NotAfter.Before(mine.Leaf.NotAfter) {
		return nil
	}
	ctx, cancel := context.WithTimeout(f.ctx, storeTimeout)
	defer cancel()
	k := f.key(name)
	resp, err := f.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, string(data))).Commit()
	if err != nil {
		return fmt.Errorf("%w: store certificate of %s: %w", ErrStoreUnavailable, name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s changed while it was written", k)
	}
	return nil
}
