package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"srp/supervisor"
)

// statusJSON runs "srp status -json" and decodes its answer.
func statusJSON(t *testing.T, pidfile string) supervisor.Status {
	t.Helper()
	code, out := srpCLI(t, "status", "-json", "-pidfile", pidfile)
	if code != 0 {
		t.Fatalf("srp status -json: exit %d:\n%s", code, out)
	}
	var st supervisor.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("srp status -json: %v:\n%s", err, out)
	}
	return st
}

// fileSum is the hex SHA-256 of the file at path.
func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// servingWorker checks st names one serving worker, a child of the
// supervisor st describes, and returns its PID.
func servingWorker(t *testing.T, st supervisor.Status) int {
	t.Helper()
	var pids []int
	for _, w := range st.Workers {
		if w.State == "serving" {
			pids = append(pids, w.PID)
		}
	}
	if len(pids) != 1 || st.Generation < 1 {
		t.Fatalf("status lists serving workers %v in generation %d, want one: %+v", pids, st.Generation, st)
	}
	if _, ppid, ok := procStat(pids[0]); !ok || ppid != st.PID {
		t.Errorf("serving worker %d has parent %d (running: %v), want supervisor %d", pids[0], ppid, ok, st.PID)
	}
	return pids[0]
}

// humanFields parses the aligned "key: value" lines of srp status, and
// checks every value starts in the same column.
func humanFields(t *testing.T, out string) map[string][]string {
	t.Helper()
	fields, column := map[string][]string{}, -1
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("line %q is not key: value:\n%s", line, out)
		}
		col := len(line) - len(strings.TrimLeft(v, " "))
		if column >= 0 && col != column {
			t.Errorf("value of %q starts in column %d, others in %d:\n%s", k, col, column, out)
		}
		column = col
		fields[k] = append(fields[k], strings.TrimSpace(v))
	}
	return fields
}

func TestStatusCommand(t *testing.T) {
	be := newBackend(t, "a", func(w http.ResponseWriter, _ *http.Request) {})
	bin := filepath.Join(t.TempDir(), "srp")
	installBinary(t, srpBin, bin)
	s := startLife(t, bin, appConfig(be.addr()))
	pid := s.cmd.Process.Pid

	code, out := srpCLI(t, "status", "-pidfile", s.pidfile)
	if code != 0 {
		t.Fatalf("srp status: exit %d:\n%s", code, out)
	}
	t.Logf("srp status:\n%s", out)
	f := humanFields(t, out)
	for key, want := range map[string]string{
		"supervisor pid": strconv.Itoa(pid), "config": s.config, "config sha256": fileSum(t, s.config),
		"generation": "1", "last reload": "none", "last upgrade": "none", "state": "serving",
	} {
		if got := f[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	if w := f["worker"]; len(w) != 1 || !strings.Contains(w[0], " serving (generation 1, started ") {
		t.Errorf("worker: %q", w)
	}
	if started, err := time.Parse(time.RFC3339, f["started"][0]); err != nil || !strings.HasSuffix(f["started"][0], "Z") || time.Since(started) > time.Minute {
		t.Errorf("started: %q (%v), want RFC 3339 UTC, recent", f["started"], err)
	}
	if _, err := time.ParseDuration(f["uptime"][0]); err != nil || strings.Contains(f["uptime"][0], ".") {
		t.Errorf("uptime: %q, want whole seconds", f["uptime"])
	}

	st := statusJSON(t, s.pidfile)
	if st.PID != pid || st.Config.Path != s.config || st.Config.SHA256 != fileSum(t, s.config) || st.HTTPS || st.Version == "" {
		t.Errorf("status -json: %+v, want pid %d, config %s with its sha256, plain HTTP, a version", st, pid, s.config)
	}
	worker1 := servingWorker(t, st)

	// A reload: the result, a new worker and the new config's hash.
	setConfig(t, s.config, appConfig(be.addr(), "127.0.0.1:9"))
	if code, out := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 0 {
		t.Fatalf("srp reload: exit %d:\n%s", code, out)
	}
	st = statusJSON(t, s.pidfile)
	worker2 := servingWorker(t, st)
	r := st.LastReload
	if worker2 == worker1 || st.Generation < 2 || r == nil || r.Result != "ok" || !strings.Contains(r.Message, "worker pid "+strconv.Itoa(worker2)) {
		t.Errorf("after a reload: worker %d (was %d), generation %d, last reload %+v", worker2, worker1, st.Generation, r)
	}
	if st.Config.SHA256 != fileSum(t, s.config) || time.Since(r.Time) > time.Minute {
		t.Errorf("after a reload: config %+v, reload at %v", st.Config, r.Time)
	}

	// A refused reload: reported, and the config served keeps its hash.
	served := st.Config
	setConfig(t, s.config, `{"Services": {}}`)
	if code, _ := srpCLI(t, "reload", "-pidfile", s.pidfile); code != 1 {
		t.Fatalf("srp reload of a bad config: exit %d, want 1", code)
	}
	st = statusJSON(t, s.pidfile)
	if st.LastReload == nil || st.LastReload.Result != "rejected" || st.Config.SHA256 != served.SHA256 || !st.Config.Loaded.Equal(served.Loaded) {
		t.Errorf("after a refused reload: last reload %+v, config %+v (served %+v)", st.LastReload, st.Config, served)
	}
	code, out = srpCLI(t, "status", "-pidfile", s.pidfile)
	if lr := humanFields(t, out)["last reload"]; code != 0 || len(lr) != 1 || !strings.Contains(lr[0], " rejected: ") {
		t.Errorf("srp status after a refused reload: exit %d, last reload %q", code, lr)
	}
	setConfig(t, s.config, appConfig(be.addr()))

	// An upgrade: the new supervisor says whom it took over from.
	if code, out := srpCLI(t, "upgrade", "-pidfile", s.pidfile); code != 0 {
		t.Fatalf("srp upgrade: exit %d:\n%s", code, out)
	}
	newPID, err := readPID(s.pidfile)
	if err != nil || newPID == pid {
		t.Fatalf("pidfile after the upgrade: %d (%v)", newPID, err)
	}
	// The retiring supervisor may still take a connection for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for st = statusJSON(t, s.pidfile); st.PID != newPID && time.Now().Before(deadline); st = statusJSON(t, s.pidfile) {
		time.Sleep(20 * time.Millisecond)
	}
	u := st.LastUpgrade
	if st.PID != newPID || u == nil || u.Result != "ok" || u.FromPID != pid || st.LastReload != nil {
		t.Errorf("after the upgrade: pid %d (want %d), last upgrade %+v (want from pid %d), last reload %+v", st.PID, newPID, u, pid, st.LastReload)
	}
	if w := servingWorker(t, st); w == worker2 {
		t.Errorf("the new supervisor reports the old one's worker %d", w)
	}
}

func TestStatusNotRunning(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "srp.pid")
	if err := os.WriteFile(pidfile, []byte("999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := srpCLI(t, "status", "-pidfile", pidfile)
	if code != 1 || !strings.Contains(out, "srp is not running with -pidfile "+pidfile) {
		t.Errorf("srp status with no srp: exit %d, %q", code, out)
	}
	// A socket left by a killed srp refuses connections.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "srp.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	code, out = srpCLI(t, "status", "-json", "-pidfile", pidfile)
	if code != 1 || !strings.Contains(out, "srp is not running with -pidfile "+pidfile) || !strings.Contains(out, "refused") {
		t.Errorf("srp status with a stale socket: exit %d, %q", code, out)
	}
	if code, out := srpCLI(t, "status"); code != 2 || !strings.Contains(out, "-pidfile is required") {
		t.Errorf("srp status without -pidfile: exit %d, %q", code, out)
	}
}

// TestStatusHTTPSCertificates starts srp in HTTPS mode with a certificate
// already in its cache (no CA is reached) and checks status lists it.
func TestStatusHTTPSCertificates(t *testing.T) {
	certs := t.TempDir()
	expiry := time.Now().Add(60 * 24 * time.Hour).UTC().Truncate(time.Second)
	cachedCert(t, certs, "proxy.srp.test", expiry)
	s := startHTTPS(t, nil, freePort(t), freePort(t), certs, httpsConfig("127.0.0.1:9"))
	st := statusJSON(t, s.pidfile)
	if !st.HTTPS || len(st.Certificates) != 1 || st.Certificates[0].Host != "proxy.srp.test" || !st.Certificates[0].NotAfter.Equal(expiry) {
		t.Errorf("status lists certificates %+v (https %v), want proxy.srp.test expiring %v", st.Certificates, st.HTTPS, expiry)
	}
	code, out := srpCLI(t, "status", "-pidfile", s.pidfile)
	want := "proxy.srp.test (ecdsa) expires " + expiry.Format(time.RFC3339) + ", in 59 days"
	if c := humanFields(t, out)["certificate"]; code != 0 || len(c) != 1 || c[0] != want {
		t.Errorf("srp status: exit %d, certificate %q, want %q:\n%s", code, c, want, out)
	}
}

// cachedCert writes a self-signed certificate for host, valid until
// notAfter, into the certificate cache dir as srp's -certs reads it (the
// key, then the chain, in a file named after the host), so srp serves
// HTTPS without reaching a CA, and returns a pool that trusts it.
func cachedCert(t *testing.T, dir, host string, notAfter time.Time) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	data := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(filepath.Join(dir, host), data, 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return roots
}
