package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCLI runs the srp binary to completion and returns its exit code and output.
func runCLI(t *testing.T, limit time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, srpBin, args...)
	cmd.Dir = t.TempDir()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("srp %v still running after %v; output:\n%s%s", args, limit, out.String(), errOut.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("srp %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// badConfig has one problem of each kind the validator reports, each
// under its own host, so a report that stops at the first is caught.
const badConfig = `{
	"Services": {
		"typo.test": {"Backend": ["127.0.0.1:3001"]},
		"empty.test": {"Backends": []},
		"both.test": {"Backends": ["127.0.0.1:3001"], "Redirect": {"URL": "https://x.test"}},
		"badurl.test": {"Redirect": {"URL": "::not a url"}},
		"badaddr.test": {"Backends": ["127.0.0.1:99999"]},
		"": {"Backends": ["127.0.0.1:3001"]}
	},
	"API": {"Subnet": "10.0.0.0/99"}
}`

// wantEveryProblem checks out names the file and every broken host.
func wantEveryProblem(t *testing.T, out, file string) {
	t.Helper()
	for _, want := range []string{`"typo.test"`, "Backend", `"empty.test"`, `"both.test"`, `"badurl.test"`, `"badaddr.test"`, `""`, "Subnet"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not mention %s:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(line, file) {
			t.Errorf("problem line does not name the file %s: %q", file, line)
		}
	}
}

func TestCheck(t *testing.T) {
	good := writeConfig(t, `{"Services": {"app.test": {"HealthPath": "/health", "Backends": ["127.0.0.1:3001", "[::1]:3002", "10.0.0.3"]},
		"old.test": {"Redirect": {"URL": "https://app.test", "DiscardPath": true, "Permanent": true}}},
		"API": {"Subnet": "10.0.0.0/24"}}`)
	if code, out, errOut := runCLI(t, 10*time.Second, "check", "-c", good); code != 0 || out != "ok\n" {
		t.Fatalf("check of a good config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	bad := writeConfig(t, badConfig)
	code, out, errOut := runCLI(t, 10*time.Second, "check", "-c", bad)
	if code != 1 || out != "" {
		t.Fatalf("check of a bad config: exit %d, stdout %q, want 1 and nothing", code, out)
	}
	wantEveryProblem(t, errOut, bad)

	missing := filepath.Join(t.TempDir(), "nope.json")
	if code, _, errOut := runCLI(t, 10*time.Second, "check", "-c", missing); code != 1 || !strings.Contains(errOut, missing) {
		t.Fatalf("check of a missing file: exit %d, %q", code, errOut)
	}
	// Without -c, check reads config.json in the working directory, which is not there.
	if code, _, errOut := runCLI(t, 10*time.Second, "check"); code != 1 || !strings.Contains(errOut, "config.json") {
		t.Fatalf("check without -c: exit %d, %q", code, errOut)
	}
}

// A bad config stops srp at once with every problem, never a half-started proxy.
func TestRunWithBadConfigExits(t *testing.T) {
	bad := writeConfig(t, badConfig)
	port := freePort(t)
	start := time.Now()
	code, out, errOut := runCLI(t, 10*time.Second, "-c", bad, "-p", fmt.Sprint(port))
	took := time.Since(start)
	if code == 0 {
		t.Fatalf("srp with a bad config exited 0:\n%s%s", out, errOut)
	}
	if took > time.Second {
		t.Errorf("srp with a bad config took %v to exit, want under a second", took)
	}
	wantEveryProblem(t, strings.TrimSpace(grepLines(errOut, bad)), bad)

	missing := filepath.Join(t.TempDir(), "nope.json")
	if code, _, errOut := runCLI(t, 10*time.Second, "-c", missing, "-p", fmt.Sprint(port)); code == 0 || !strings.Contains(errOut, missing) {
		t.Fatalf("srp with a missing config: exit %d, %q", code, errOut)
	}
}

// grepLines keeps the lines of s that contain substr.
func grepLines(s, substr string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, 10*time.Second, "version")
	if code != 0 || !strings.HasPrefix(out, "srp ") || !strings.Contains(out, "go1.") {
		t.Fatalf("srp version: exit %d, %q", code, out)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, out, errOut := runCLI(t, 10*time.Second, args...)
		all := out + errOut
		if code != 0 {
			t.Errorf("srp %v: exit %d, want 0", args, code)
		}
		for _, want := range []string{"reverse proxy", "check", "reload", "upgrade", "version",
			"-c ", "-p ", "-url", "-http-addr", "-https-addr", "-certs", "-acme-directory", "-acme-ca",
			"-email", "-pidfile", "-timeout", "config.json", "3000", "30s"} {
			if !strings.Contains(all, want) {
				t.Errorf("srp %v usage does not mention %q:\n%s", args, want, all)
			}
		}
	}
	if code, _, errOut := runCLI(t, 10*time.Second, "check", "-h"); code != 0 || !strings.Contains(errOut, "-c") {
		t.Errorf("srp check -h: exit %d, %q", code, errOut)
	}
}

func TestBadUsageExits2(t *testing.T) {
	for _, args := range [][]string{
		{"-bogus"},
		{"-p", "notaport"},
		{"-timeout", "soon"},
		{"stray-argument"},
		{"check", "-bogus"},
		{"check", "-c", "a.json", "extra"},
	} {
		code, _, errOut := runCLI(t, 10*time.Second, args...)
		if code != 2 {
			t.Errorf("srp %v: exit %d, want 2", args, code)
		}
		if errOut == "" {
			t.Errorf("srp %v: nothing on stderr says what was wrong", args)
		}
	}
}
