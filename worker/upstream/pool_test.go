package upstream

import "testing"

func fixedPool(up ...string) *Pool {
	p := &Pool{}
	p.healthy.Store(&up)
	return p
}

func TestPickRoundRobin(t *testing.T) {
	p := fixedPool("a", "b", "c")
	counts := map[string]int{}
	for range 300 {
		counts[p.Pick(nil)]++
	}
	if counts["a"] != 100 || counts["b"] != 100 || counts["c"] != 100 {
		t.Fatalf("300 picks over 3 backends: %v", counts)
	}
	// Consecutive picks never repeat a backend while others are healthy.
	prev := ""
	for range 10 {
		b := p.Pick(nil)
		if b == prev {
			t.Fatalf("picked %s twice in a row", b)
		}
		prev = b
	}
}

func TestPickSkipsTried(t *testing.T) {
	p := fixedPool("a", "b", "c")
	for range 30 {
		if b := p.Pick([]string{"a", "c"}); b != "b" {
			t.Fatalf("pick after trying a and c = %q, want b", b)
		}
	}
	if b := p.Pick([]string{"a", "b", "c"}); b != "" {
		t.Fatalf("pick with every backend tried = %q, want none", b)
	}
	if b := fixedPool().Pick(nil); b != "" {
		t.Fatalf("pick from no healthy backend = %q", b)
	}
}
