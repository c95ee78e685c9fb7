package platform

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The helper is this test binary started again as a stand-in worker: it
// locks down as a worker with the paths it is given, tries what a worker
// might, prints each outcome, prints "ready" and waits for its standard
// input to close, so the test can inspect it while it runs.
const helperEnv = "SRP_PLATFORM_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// helperOpts is what a test asks the helper to do.
type helperOpts struct {
	paths  Paths
	read   []string // files to open for reading after Lockdown
	create string   // file to create after Lockdown
	port   string   // port to listen on after Lockdown
}

func (o helperOpts) env() []string {
	acme := ""
	if o.paths.ACME {
		acme = "1"
	}
	return append(os.Environ(),
		helperEnv+"=1",
		"HELPER_ACME="+acme,
		"HELPER_CACHE="+o.paths.CertCache,
		"HELPER_CA="+o.paths.ACMECA,
		"HELPER_READ="+strings.Join(o.read, "\n"),
		"HELPER_CREATE="+o.create,
		"HELPER_PORT="+o.port,
	)
}

func helperMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	p := Paths{ACME: os.Getenv("HELPER_ACME") == "1", CertCache: os.Getenv("HELPER_CACHE"), ACMECA: os.Getenv("HELPER_CA")}
	if err := Lockdown(Worker, p, log); err != nil {
		fmt.Println("lockdown:", err)
		return 1
	}
	for _, f := range strings.Split(os.Getenv("HELPER_READ"), "\n") {
		if f != "" {
			_, err := os.ReadFile(f)
			fmt.Printf("read %s: %s\n", f, outcome(err))
		}
	}
	if f := os.Getenv("HELPER_CREATE"); f != "" {
		fmt.Printf("create %s: %s\n", f, outcome(os.WriteFile(f, []byte("x"), 0o600)))
	}
	if port := os.Getenv("HELPER_PORT"); port != "" {
		fmt.Printf("bind: %s\n", outcome(bindTCP(port)))
	}
	slack, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	fmt.Printf("timerslack: %d %v\n", slack, err)
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// bindTCP binds a plain TCP socket to 127.0.0.1:port. Go's net.Listen would
// use MPTCP, which Landlock does not mediate.
func bindTCP(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Bind(fd, &unix.SockaddrInet4{Port: n, Addr: [4]byte{127, 0, 0, 1}})
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, os.ErrPermission):
		return "denied"
	}
	return err.Error()
}

// readHelper collects the helper's lines up to "ready".
func readHelper(t *testing.T, stdout io.Reader, stderr func() string) map[string]string {
	t.Helper()
	lines := map[string]string{}
	got := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				got <- nil
				return
			}
			k, v, _ := strings.Cut(line, ": ")
			lines[k] = v
		}
		got <- fmt.Errorf("helper ended before ready: %v; lines %q", sc.Err(), lines)
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("%v\nstderr:\n%s", err, stderr())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("helper not ready within 30s\nstderr:\n%s", stderr())
	}
	return lines
}
