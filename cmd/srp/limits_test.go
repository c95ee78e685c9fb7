package main

import (
	"strings"
	"testing"
)

// TestReloadConfigTooLarge reloads a valid config too large to send to a
// worker: the reload is refused with that reason at once, and the old
// config keeps serving.
func TestReloadConfigTooLarge(t *testing.T) {
	f := newReloadFleet(t)
	s := startLife(t, srpBin, f.config(0))
	setConfig(t, s.config, f.config(1)+strings.Repeat(" ", 17<<20))
	code, out := srpCLI(t, "reload", "-pidfile", s.pidfile)
	if code == 0 || !strings.Contains(out, "larger than the 16 MiB a worker accepts") {
		t.Errorf("srp reload of a 17 MiB config: exit %d: %s", code, out)
	}
	if err := newConnGet(s.port); err != nil {
		t.Errorf("request after the refused reload: %v", err)
	}
	setConfig(t, s.config, f.config(1))
	if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
		t.Errorf("srp reload after: exit %d: %s", code, out)
	}
}
