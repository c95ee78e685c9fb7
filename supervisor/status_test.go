package supervisor

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"srp/supervisor/link"
)

// TestStatusSnapshot drives the state machine as TestMachine does and
// checks what status reports at the end.
func TestStatusSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name     string
		takeover bool
		events   []string
		state    string
		gen      int
		workers  string // "pid state" for each worker, generation order
		reload   string // "result: message" or "none"
		upgrade  string
		uptime   int64
	}{
		{name: "start", events: []string{"ready 1", "wait 90s"}, state: "serving", gen: 1, workers: "101 serving",
			reload: "none", upgrade: "none", uptime: 90},
		{name: "reload in flight", events: []string{"ready 1", "reload"}, state: "reloading", gen: 1,
			workers: "101 serving, 102 starting", reload: "none", upgrade: "none"},
		{name: "reload done", events: []string{"ready 1", "hup", "ready 2"}, state: "serving", gen: 2,
			workers: "101 draining, 102 serving", reload: "ok: reloaded: worker pid 102 serving", upgrade: "none"},
		{name: "reload rejected", events: []string{"ready 1", "badconfig", "reload"}, state: "serving", gen: 1,
			workers: "101 serving", reload: "rejected: config refused", upgrade: "none"},
		{name: "reload failed", events: []string{"ready 1", "reload", "exit 2"}, state: "serving", gen: 1,
			workers: "101 serving", reload: "failed: reload failed, old config still serving: worker pid 102", upgrade: "none"},
		{name: "respawn", events: []string{"ready 1", "exit 1", "wait 100ms"}, state: "restarting", gen: 0,
			workers: "102 starting", reload: "none", upgrade: "none"},
		{name: "upgrade failed", events: []string{"ready 1", "upgrade", "upgrade-failed"}, state: "serving", gen: 1,
			workers: "101 serving", reload: "none", upgrade: "failed: upgrade failed, old binary still serving: first worker failed"},
		{name: "upgrade done", events: []string{"ready 1", "upgrade", "upgraded"}, state: "stopping", gen: 1,
			workers: "101 draining", reload: "none", upgrade: "ok: upgraded: srp pid 2000 serving"},
		{name: "took over", takeover: true, events: []string{"ready 1"}, state: "serving", gen: 1,
			workers: "101 serving", reload: "none", upgrade: "ok: took over from pid 900"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newMachine(t, tc.takeover)
			start := f.now
			s.startedAt, s.o.Version = start, "v1.2.3"
			if tc.takeover {
				s.parentPID = oldPID
			}
			waiters := map[string]chan result{}
			for i, ev := range tc.events {
				f.step(i, ev, waiters)
			}
			st := completeStatus(s.snapshot())
			var workers []string
			for _, w := range st.Workers {
				workers = append(workers, fmt.Sprintf("%d %s", w.PID, w.State))
			}
			if got := strings.Join(workers, ", "); got != tc.workers {
				t.Errorf("workers %q, want %q", got, tc.workers)
			}
			if st.State != tc.state || st.Generation != tc.gen || st.PID != ourPID || st.Version != "v1.2.3" {
				t.Errorf("state %q generation %d pid %d version %q, want %q %d %d v1.2.3", st.State, st.Generation, st.PID, st.Version, tc.state, tc.gen, ourPID)
			}
			if !st.Started.Equal(start) || st.UptimeSeconds != tc.uptime {
				t.Errorf("started %v uptime %ds, want %v %ds", st.Started, st.UptimeSeconds, start, tc.uptime)
			}
			if got := describe(st.LastReload); !strings.HasPrefix(got, tc.reload) {
				t.Errorf("last reload %q, want %q", got, tc.reload)
			}
			if got := describe(st.LastUpgrade); !strings.HasPrefix(got, tc.upgrade) {
				t.Errorf("last upgrade %q, want %q", got, tc.upgrade)
			}
			if u := st.LastUpgrade; u != nil && u.Result == resultOK {
				if tc.takeover && u.FromPID != oldPID || !tc.takeover && (u.NewPID != newPID || st.SuccessorPID != newPID) {
					t.Errorf("upgrade from pid %d to pid %d (successor %d)", u.FromPID, u.NewPID, st.SuccessorPID)
				}
			}
			sum := sha256.Sum256([]byte(`{"ok": true}`))
			if st.Config.SHA256 != hex.EncodeToString(sum[:]) || !filepath.IsAbs(st.Config.Path) || st.Config.Loaded.IsZero() {
				t.Errorf("config %+v", st.Config)
			}
			if st.HTTPS || st.Certificates == nil || st.Workers == nil {
				t.Errorf("plain HTTP reports https %v, certificates %v, workers %v: want false and empty lists", st.HTTPS, st.Certificates, st.Workers)
			}
		})
	}
}

func describe(o *OpStatus) string {
	if o == nil {
		return "none"
	}
	return o.Result + ": " + o.Message
}

// TestStatusReloadTime checks a reload moves the config's load time and
// sets the reload's own, while a refused one moves neither the config's.
func TestStatusReloadTime(t *testing.T) {
	s, f := newMachine(t, false)
	waiters := map[string]chan result{}
	for i, ev := range []string{"ready 1", "wait 1m", "reload", "wait 2s", "ready 2", "wait 1m", "badconfig", "hup"} {
		f.step(i, ev, waiters)
	}
	st := s.snapshot().st
	loaded := time.Unix(1e9, 0).Add(62 * time.Second).UTC()
	if !st.Config.Loaded.Equal(loaded) {
		t.Errorf("config loaded %v, want %v (the reload, not the refused one)", st.Config.Loaded, loaded)
	}
	if r := st.LastReload; r == nil || r.Result != resultRejected || !r.Time.Equal(f.now) {
		t.Errorf("last reload %+v, want rejected at %v", r, f.now)
	}
}

// TestStatusOverControl asks through the control socket, as srp status
// does, while a goroutine plays the lifecycle loop.
func TestStatusOverControl(t *testing.T) {
	s, f := newMachine(t, false)
	f.step(0, "ready 1", nil)
	s.startedAt = f.now
	dir, err := os.MkdirTemp("", "srp-status")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir) // a short path: unix socket names are limited
	pidfile := filepath.Join(dir, "srp.pid")
	if _, err := link.Status(context.Background(), pidfile); !errors.Is(err, link.ErrNotRunning) || !strings.Contains(err.Error(), pidfile) {
		t.Errorf("no srp running: %v, want ErrNotRunning naming the pidfile", err)
	}
	ln, err := listenControl(link.ControlPath(pidfile))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go serveControl(ln, s.requests, done, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer ln.Close()
	go func() {
		for {
			select {
			case req := <-s.requests:
				s.onRequest(req)
			case <-done:
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := link.Status(ctx, pidfile)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if st.PID != ourPID || len(st.Workers) != 1 || st.Workers[0].PID != 101 || st.LastReload != nil {
		t.Errorf("status %s", b)
	}
	for _, key := range []string{`"pid":`, `"uptime_seconds":`, `"generation":1`, `"sha256":"`, `"last_reload":null`, `"certificates":[]`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("answer lacks %s: %s", key, b)
		}
	}
	// reload and upgrade keep their answers.
	ok, lines, err := link.Request(ctx, pidfile, "bogus")
	if err != nil || ok || len(lines) != 1 || !strings.Contains(lines[0], `unknown request "bogus"`) {
		t.Errorf("unknown request: ok %v lines %q err %v", ok, lines, err)
	}
}

// writeCert writes a certificate for host into dir as autocert's cache
// does: the key PEM, then the certificate PEM.
func writeCert(t *testing.T, dir, name, host string, notAfter time.Time, useRSA bool) {
	t.Helper()
	var key crypto.Signer
	var keyPEM *pem.Block
	if useRSA {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		key, keyPEM = k, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		key, keyPEM = k, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	data := append(pem.EncodeToMemory(keyPEM), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReadCertCache(t *testing.T) {
	dir := t.TempDir()
	expiry := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	writeCert(t, dir, "a.example.com", "a.example.com", expiry, false)
	writeCert(t, dir, "a.example.com+rsa", "a.example.com", expiry.Add(time.Hour), true)
	writeCert(t, dir, "a.example.com+token", "a.example.com", expiry, false)  // a tls-alpn-01 challenge
	writeCert(t, dir, "a.example.com4012345", "a.example.com", expiry, false) // being written
	writeCert(t, dir, "host1", "host1", expiry.Add(2*time.Hour), false)       // a host ending in a digit
	for name, data := range map[string]string{
		"acme_account+key":      "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
		"b.example.com":         "not a certificate",
		"x.example.com+http-01": "token",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "c.example.com"), 0o700); err != nil {
		t.Fatal(err)
	}
	certs, note := readCertCache(dir)
	var got []string
	for _, c := range certs {
		got = append(got, fmt.Sprintf("%s %s %s %q", c.Host, c.Key, c.NotAfter.Format(time.RFC3339), c.Error))
	}
	want := []string{
		`a.example.com ecdsa 2027-03-01T12:00:00Z ""`,
		`a.example.com rsa 2027-03-01T13:00:00Z ""`,
		`b.example.com ecdsa 0001-01-01T00:00:00Z "b.example.com: no certificate"`,
		`host1 ecdsa 2027-03-01T14:00:00Z ""`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || note != "" {
		t.Errorf("certificates:\n%s\nnote %q; want:\n%s", strings.Join(got, "\n"), note, strings.Join(want, "\n"))
	}
	certs, note = readCertCache(filepath.Join(dir, "missing"))
	if len(certs) != 0 || certs == nil || !strings.Contains(note, "no such file") {
		t.Errorf("missing cache: %v %q", certs, note)
	}
}

// TestStatusBounded checks a huge certificate list is cut to fit one answer.
func TestStatusBounded(t *testing.T) {
	st := Status{Workers: []WorkerStatus{}}
	for i := range 20000 {
		st.Certificates = append(st.Certificates, CertStatus{Host: fmt.Sprintf("host-%d.%s.example.com", i, strings.Repeat("x", 40)), Key: "ecdsa"})
	}
	b, err := encodeStatus(st)
	if err != nil {
		t.Fatal(err)
	}
	var back Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(b) > link.MaxStatus || len(back.Certificates) == 0 || !strings.Contains(back.CertificatesError, "cut short") {
		t.Errorf("%d bytes, %d certificates, note %q", len(b), len(back.Certificates), back.CertificatesError)
	}
}
