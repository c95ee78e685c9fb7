package main

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// With -drain-delay, SIGTERM turns /ready to 503 at once while srp serves
// on, so a balancer's check takes it out first; it drains and exits only
// after the delay. A second signal ends the delay.
func TestDrainDelay(t *testing.T) {
	be := newBackend(t, "app", nil)
	for _, second := range []bool{false, true} {
		s := startLife(t, srpBin, appConfigNoHealth(be.addr()), "-drain-delay", "3s")
		if code, _, _ := get(t, s.port, "127.0.0.1", "/ready"); code != http.StatusOK {
			t.Fatalf("/ready %d before SIGTERM, want 200", code)
		}
		s.signal(syscall.SIGTERM)
		start := time.Now()
		s.waitLog(`msg="leaving: /ready answers 503`, 5*time.Second)
		if code, _, _ := get(t, s.port, "127.0.0.1", "/ready"); code != http.StatusServiceUnavailable {
			t.Fatalf("/ready %d after SIGTERM, want 503", code)
		}
		if code, body, _ := get(t, s.port, "app.test", "/"); code != http.StatusOK || body != "app" {
			t.Fatalf("proxying during the delay: %d %q", code, body)
		}
		if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code == 0 {
			t.Errorf("a reload while leaving succeeded: %s", out)
		}
		if second {
			s.signal(syscall.SIGTERM)
		}
		s.waitLog(`msg="shutting down"`, 10*time.Second)
		took := time.Since(start)
		switch {
		case !second && took < 3*time.Second:
			t.Errorf("drain began %v after SIGTERM, before the 3s delay", took)
		case second && took > 2*time.Second:
			t.Errorf("a second SIGTERM did not end the delay: drain began after %v", took)
		}
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if code := s.wait(20 * time.Second); code != 0 {
			t.Fatalf("exit %d", code)
		}
		t.Logf("second signal %v: drain began %v after the first", second, took.Round(time.Millisecond))
	}
}

// appConfigNoHealth proxies app.test to backend with no health checks.
func appConfigNoHealth(backend string) string {
	return fmt.Sprintf(`{"Services": {"app.test": {"Backends": [%q]}}}`, backend)
}
