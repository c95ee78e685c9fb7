package main

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"srp/scripts/testkit"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestStatusPage loads GET /status from a running srp in headless Chromium
// and checks the DOM it rendered: every service and backend, the rates of
// the requests sent, and a backend shown down once its health checks fail.
func TestStatusPage(t *testing.T) {
	chrome := chromiumBin(t)
	var failing atomic.Bool
	flaky := newBackend(t, "flaky", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "flaky")
	})
	steady := newBackend(t, "steady", healthAnswers(200, "steady"))
	alone := newBackend(t, "alone", healthAnswers(200, "alone"))
	config := fmt.Sprintf(`{
		"Services": {
			"alpha.test": {"HealthPath": "/health", "Backends": [%q]},
			"beta.test": {"HealthPath": "/health", "Backends": [%q, %q]}
		},
		"API": {"Subnet": "127.0.0.0/8"}
	}`, alone.addr(), steady.addr(), flaky.addr())
	port, _ := serveSRP(t, config)
	for range 10 {
		for _, host := range []string{"alpha.test", "beta.test"} {
			if code, _, _ := get(t, port, host, "/"); code != 200 {
				t.Fatalf("GET %s: %d", host, code)
			}
		}
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/status", port)

	dom := chromiumDOM(t, chrome, url)
	for _, svc := range []string{"alpha.test", "beta.test"} {
		if e := findElement(dom, "data-service", svc); e == nil || e.attr["data-state"] != "up" {
			t.Fatalf("service %s not shown up: %+v", svc, e)
		}
	}
	for _, b := range []*backend{alone, steady, flaky} {
		if e := findElement(dom, "data-backend", b.addr()); e == nil || e.attr["data-state"] != "up" || !strings.Contains(e.text, "UP") {
			t.Fatalf("backend %s (%s) not shown UP: %+v", b.name, b.addr(), e)
		}
	}

	// Two failed checks, 2 s apart, take flaky out of rotation.
	failing.Store(true)
	deadline := time.Now().Add(15 * time.Second)
	for {
		dom = chromiumDOM(t, chrome, url)
		if e := findElement(dom, "data-backend", flaky.addr()); e != nil && e.attr["data-state"] == "down" {
			if !strings.Contains(e.text, "DOWN") {
				t.Fatalf("down backend without the DOWN marker: %q", e.text)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flaky backend not shown down within 15 s of failing its checks; last page:\n%s", dom)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if e := findElement(dom, "data-service", "beta.test"); e == nil || e.attr["data-state"] != "degraded" || !strings.Contains(e.text, "1 of 2 backends up") {
		t.Fatalf("beta.test with one backend down: %+v", e)
	}
	if e := findElement(dom, "data-backend", steady.addr()); e == nil || e.attr["data-state"] != "up" {
		t.Fatalf("steady backend: %+v", e)
	}
	alpha := findElement(dom, "data-service", "alpha.test")
	if alpha == nil || alpha.attr["data-state"] != "up" {
		t.Fatalf("alpha.test: %+v", alpha)
	}
	// The sampler's first snapshot predates the requests, so they show as a rate.
	for _, class := range []string{"req", "p50", "p99"} {
		e := findElement(alpha.inner, "class", class)
		if e == nil || e.text == "–" || e.text == "0/s" || e.text == "" {
			t.Errorf("alpha.test %s: %+v, want a value", class, e)
		}
	}
	if findElement(dom, "id", "certs") != nil {
		t.Error("certificate section in plain-HTTP mode")
	}
}

// chromiumBin finds Chromium as $CHROMIUM or chromium on PATH (see
// testkit.Server).
func chromiumBin(t *testing.T) string {
	t.Helper()
	return testkit.Server(t, "apt-get install chromium, or set $CHROMIUM", os.Getenv("CHROMIUM"), "chromium")
}

// chromiumDOM loads url in a fresh headless Chromium and returns the DOM
// it rendered. Chromium runs in a process group of its own, killed whole
// if it takes more than 30 s, and killed at return in case a child lingers.
func chromiumDOM(t *testing.T, bin, url string) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--window-size=375,812", "--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	err := cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil || !strings.Contains(out.String(), "</html>") {
		t.Fatalf("chromium --dump-dom %s: %v\nstdout:\n%s\nstderr:\n%s", url, err, out.String(), errOut.String())
	}
	return out.String()
}

// element is one element of a serialized DOM: its attributes, its inner
// HTML and its text with the tags taken out.
type element struct {
	tag   string
	attr  map[string]string
	inner string
	text  string
}

var (
	tagRE  = regexp.MustCompile(`<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>`)
	attrRE = regexp.MustCompile(`([^\s=/]+)(?:="([^"]*)")?`)
)

// voidTags have no end tag.
var voidTags = map[string]bool{"meta": true, "link": true, "br": true, "img": true, "input": true, "hr": true}

// findElement returns the first element of dom (as Chromium serializes
// it: quoted attributes, every non-void element closed) whose attribute
// name is value, or nil.
func findElement(dom, name, value string) *element {
	type open struct {
		e     *element
		start int // where the inner HTML begins
	}
	var stack []open
	for _, m := range tagRE.FindAllStringSubmatchIndex(dom, -1) {
		tag := strings.ToLower(dom[m[4]:m[5]])
		if dom[m[2]:m[3]] == "/" {
			for i := len(stack) - 1; i >= 0; i-- {
				if stack[i].e.tag != tag {
					continue
				}
				e := stack[i].e
				if e.attr[name] == value {
					e.inner = dom[stack[i].start:m[0]]
					e.text = strings.TrimSpace(html.UnescapeString(tagRE.ReplaceAllString(e.inner, "")))
					return e
				}
				stack = stack[:i]
				break
			}
			continue
		}
		e := &element{tag: tag, attr: map[string]string{}}
		for _, a := range attrRE.FindAllStringSubmatch(dom[m[6]:m[7]], -1) {
			e.attr[a[1]] = html.UnescapeString(a[2])
		}
		if voidTags[tag] {
			if e.attr[name] == value {
				return e
			}
			continue
		}
		stack = append(stack, open{e, m[1]})
	}
	return nil
}
