package counters

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// Two mappings of one region, as two processes have, see each other's
// adds, and a key claimed by one is found by the other.
func TestSharedAcrossMappings(t *testing.T) {
	a, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	dup, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", a.File().Fd()), os.O_RDWR, 0)
	if err != nil {
		dup = a.File() // no /proc: map the same descriptor twice
	}
	b, err := Open(dup)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := a.Counter(`srp_requests_total{host="a",code="200"}`)
	if err != nil {
		t.Fatal(err)
	}
	atomic.AddUint64(ca, 3)
	cb, err := b.Counter(`srp_requests_total{host="a",code="200"}`)
	if err != nil {
		t.Fatal(err)
	}
	atomic.AddUint64(cb, 4)
	if got := a.Value(`srp_requests_total{host="a",code="200"}`); got != 7 {
		t.Fatalf("value %d, want 7", got)
	}
	if got := b.Value(`srp_requests_total{host="b",code="200"}`); got != 0 {
		t.Fatalf("unclaimed key reads %d", got)
	}
}

// Concurrent claims of the same keys end with one slot per key and no add
// lost.
func TestConcurrentClaims(t *testing.T) {
	r, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				c, err := r.Counter(fmt.Sprintf("k%d", (i+g)%100))
				if err != nil {
					t.Error(err)
					return
				}
				atomic.AddUint64(c, 1)
			}
		})
	}
	wg.Wait()
	var total uint64
	for i := range 100 {
		total += r.Value(fmt.Sprintf("k%d", i))
	}
	if total != 8000 {
		t.Fatalf("total %d, want 8000", total)
	}
}

func TestRegionFull(t *testing.T) {
	r, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	for i := range Slots {
		if _, err := r.Counter(fmt.Sprint(i)); err != nil {
			t.Fatalf("key %d of %d: %v", i, Slots, err)
		}
	}
	if _, err := r.Counter("one more"); err == nil {
		t.Fatal("a full region took another key")
	}
	if _, err := r.Counter("17"); err != nil {
		t.Fatalf("a claimed key in a full region: %v", err)
	}
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(f); err == nil {
		t.Fatal("an empty file was mapped as a region")
	}
}
