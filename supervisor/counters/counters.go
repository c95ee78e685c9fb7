// Package counters keeps srp's counters in one shared memory region that
// every process of a running srp maps: the first supervisor creates it,
// and every worker and every upgraded binary inherits its descriptor. So a
// counter goes on through any number of reloads and upgrades, and the
// requests a draining worker finishes count too; only a full stop loses
// the region.
//
// The region is an open-addressing table of 64-bit key hashes and values.
// A process claims a key's slot with one compare-and-swap and adds to it
// with atomic instructions: no lock, so a process that dies at any moment
// leaves the table consistent. Keys are metric names with their labels,
// drawn from the config and fixed sets only, so the table cannot be filled
// by clients.
package counters

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// Slots is how many counters the region holds: 1 MiB, far more than
	// the series of a few dozen services with their backends.
	Slots = 1 << 16
	size  = Slots * 16 // a key hash and a value per slot
)

// ErrFull means no slot was left for a new key; the counter is not kept.
var ErrFull = errors.New("counters: region full")

// Region is the mapped table. Its methods are safe for concurrent use,
// within and across processes.
type Region struct {
	file *os.File
	keys []uint64 // key hashes; 0 is a free slot
	vals []uint64
}

// Create makes a new region. Only the first supervisor of a run does.
func Create() (*Region, error) {
	f, err := newMemory(size)
	if err != nil {
		return nil, fmt.Errorf("counters: create: %w", err)
	}
	r, err := Open(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// Open maps the region behind an inherited descriptor.
func Open(f *os.File) (*Region, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("counters: %w", err)
	}
	if fi.Size() != size {
		return nil, fmt.Errorf("counters: region of %d bytes, want %d", fi.Size(), size)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("counters: map: %w", err)
	}
	all := unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), 2*Slots)
	return &Region{file: f, keys: all[:Slots], vals: all[Slots:]}, nil
}

// Local returns a region in this process's memory only: for a worker run
// without a supervisor (tests, benchmarks), whose counts nobody else reads.
func Local() *Region {
	all := make([]uint64, 2*Slots)
	return &Region{keys: all[:Slots], vals: all[Slots:]}
}

// File is the region's descriptor, to hand to another process; nil for a
// Local region.
func (r *Region) File() *os.File { return r.file }

// Counter returns the value cell of key, claiming a slot the first time
// any process asks for it. Add to it with sync/atomic only.
func (r *Region) Counter(key string) (*uint64, error) {
	h := hash(key)
	for i, n := h%Slots, 0; n < Slots; i, n = (i+1)%Slots, n+1 {
		k := atomic.LoadUint64(&r.keys[i])
		if k == 0 && atomic.CompareAndSwapUint64(&r.keys[i], 0, h) {
			return &r.vals[i], nil
		}
		if k == h || atomic.LoadUint64(&r.keys[i]) == h {
			return &r.vals[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrFull, key)
}

// Value reads key's counter; a key no process claimed reads 0.
func (r *Region) Value(key string) uint64 {
	h := hash(key)
	for i, n := h%Slots, 0; n < Slots; i, n = (i+1)%Slots, n+1 {
		switch atomic.LoadUint64(&r.keys[i]) {
		case h:
			return atomic.LoadUint64(&r.vals[i])
		case 0:
			return 0
		}
	}
	return 0
}

// hash is FNV-1a, never 0 (a free slot).
func hash(key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	if v := h.Sum64(); v != 0 {
		return v
	}
	return 1
}

// The supervisor's own counters, which every worker exposes.
const (
	ReloadsOK       = `srp_config_reloads_total{result="ok"}`
	ReloadsRejected = `srp_config_reloads_total{result="rejected"}` // the config did not validate
	ReloadsFailed   = `srp_config_reloads_total{result="failed"}`   // the new worker did not become ready
	LastReload      = `srp_config_last_reload_success_timestamp_seconds`
	UpgradesOK      = `srp_upgrades_total{result="ok"}`
	UpgradesFailed  = `srp_upgrades_total{result="failed"}`
	WorkerRestarts  = `srp_worker_restarts_total`
)
