package supervisor

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"srp/supervisor/link"
)

// Status is what "srp status" reports, as the control socket sends it:
// one JSON object whose keys are a stable interface for scripts. Times
// are UTC; a field added later never changes the meaning of one here.
type Status struct {
	PID           int       `json:"pid"` // the supervisor's
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	// State is serving, reloading, upgrading, restarting (a worker is
	// being replaced with the same config), leaving (a -drain-delay runs)
	// or stopping.
	State        string         `json:"state"`
	SuccessorPID int            `json:"successor_pid,omitempty"` // set once handed over to a new binary
	Generation   int            `json:"generation"`              // of the serving worker; 0 while none serves
	Workers      []WorkerStatus `json:"workers"`
	Config       ConfigStatus   `json:"config"`
	LastReload   *OpStatus      `json:"last_reload"`  // null: none since this supervisor started
	LastUpgrade  *OpStatus      `json:"last_upgrade"` // null: none, and this supervisor took over from none
	HTTPS        bool           `json:"https"`
	Certificates []CertStatus   `json:"certificates"` // empty without HTTPS
	// CertificatesError says why the certificate cache could not be
	// listed, or that the list was cut short.
	CertificatesError string `json:"certificates_error,omitempty"`
}

// WorkerStatus is one worker process that has not been reaped yet.
type WorkerStatus struct {
	PID        int       `json:"pid"`
	Generation int       `json:"generation"`
	State      string    `json:"state"` // serving, starting or draining
	Started    time.Time `json:"started"`
}

// ConfigStatus is the config the serving worker runs.
type ConfigStatus struct {
	Path   string    `json:"path"`
	SHA256 string    `json:"sha256"` // of the bytes the worker was given, hex
	Loaded time.Time `json:"loaded"`
}

// OpStatus is how the last reload or upgrade ended.
type OpStatus struct {
	Time    time.Time `json:"time"`
	Result  string    `json:"result"` // ok, failed or rejected (a reload of an invalid config)
	Message string    `json:"message"`
	FromPID int       `json:"from_pid,omitempty"` // upgrade: the supervisor this one took over from
	NewPID  int       `json:"new_pid,omitempty"`  // upgrade: the supervisor this one handed over to
}

// CertStatus is one certificate in the ACME cache.
type CertStatus struct {
	Host     string    `json:"host"`
	Key      string    `json:"key"` // ecdsa or rsa
	NotAfter time.Time `json:"not_after"`
	Error    string    `json:"error,omitempty"` // why the file could not be read; NotAfter is then zero
}

// Results of an operation as Status reports them.
const (
	resultOK       = "ok"
	resultFailed   = "failed"
	resultRejected = "rejected"
)

// maxOpMessage bounds a reload or upgrade message kept for status: a
// config with many problems says a lot, and the answer must stay small.
const maxOpMessage = 4 << 10

// statusSnap is what the lifecycle loop hands a status request: copies of
// its state, and what the control goroutine still has to read, so the loop
// does no I/O and no hashing for it.
type statusSnap struct {
	st      Status
	config  []byte // never modified once a worker was given it
	certDir string // "" without HTTPS
}

// snapshot copies the state status reports. It runs on the loop and
// returns at once.
func (s *supervisor) snapshot() statusSnap {
	now := s.w.now()
	st := Status{
		PID:           s.w.pid,
		Version:       s.o.Version,
		Started:       s.startedAt.UTC(),
		UptimeSeconds: int64(now.Sub(s.startedAt).Round(time.Second) / time.Second),
		State:         s.state(),
		SuccessorPID:  s.successor,
		Workers:       []WorkerStatus{},
		Config:        ConfigStatus{Path: s.o.ConfigPath, Loaded: s.configAt.UTC()},
		LastReload:    s.lastReload,
		LastUpgrade:   s.lastUpgrade,
		HTTPS:         s.o.CertCache != "",
		Certificates:  []CertStatus{},
	}
	if s.cur != nil {
		st.Generation = s.cur.gen
	}
	for p := range s.procs {
		w := WorkerStatus{PID: p.pid, Generation: p.gen, State: "draining", Started: p.started.UTC()}
		switch {
		case p == s.cur && !p.drained:
			w.State = "serving"
		case p == s.next:
			w.State = "starting"
		}
		st.Workers = append(st.Workers, w)
	}
	slices.SortFunc(st.Workers, func(a, b WorkerStatus) int { return a.Generation - b.Generation })
	return statusSnap{st: st, config: s.config, certDir: s.o.CertCache}
}

// state names what the supervisor is doing.
func (s *supervisor) state() string {
	switch {
	case s.stopping:
		return "stopping"
	case !s.leaveAt.IsZero():
		return "leaving" // -drain-delay: /ready answers 503, the drain comes after the delay
	case s.op == link.OpReload:
		return "reloading"
	case s.op == link.OpUpgrade:
		return "upgrading"
	case s.op != "" && s.op != opStart:
		return "restarting"
	}
	return "serving"
}

// noteResult records how the operation in flight ended, for status. A
// supervisor that took over through an upgrade reports that upgrade. A
// record is replaced, never modified, so snapshots may share it.
func (s *supervisor) noteResult(r result) {
	now := s.w.now().UTC()
	op := &OpStatus{Time: now, Result: resultOK, Message: r.msg}
	if r.err != nil {
		op.Result, op.Message = resultFailed, r.err.Error()
		if r.rejected {
			op.Result = resultRejected
		}
	}
	if len(op.Message) > maxOpMessage {
		op.Message = op.Message[:maxOpMessage] + "..."
	}
	switch s.op {
	case link.OpReload:
		s.lastReload = op
		if r.err == nil {
			s.configAt = now
		}
	case link.OpUpgrade:
		if r.err == nil {
			op.NewPID = s.successor
		}
		s.lastUpgrade = op
	case opStart:
		s.configAt = now
		if s.w.hasParent {
			op.FromPID, op.Message = s.parentPID, fmt.Sprintf("took over from pid %d", s.parentPID)
			s.lastUpgrade = op
		}
	}
}

// askStatus gets a snapshot from the loop and completes it here, off the
// loop: the config's hash, its absolute path and the certificates.
func askStatus(requests chan<- request, done <-chan struct{}) result {
	ch := make(chan statusSnap, 1)
	if err := send(requests, done, request{op: link.OpStatus, status: ch}); err != nil {
		return result{err: err}
	}
	var snap statusSnap
	select {
	case snap = <-ch:
	case <-done:
		return result{err: errShuttingDown}
	}
	b, err := encodeStatus(completeStatus(snap))
	if err != nil {
		return result{err: err}
	}
	return result{msg: string(b)}
}

// completeStatus does the status work that reads files or hashes.
func completeStatus(snap statusSnap) Status {
	st := snap.st
	sum := sha256.Sum256(snap.config)
	st.Config.SHA256 = hex.EncodeToString(sum[:])
	if abs, err := filepath.Abs(st.Config.Path); err == nil {
		st.Config.Path = abs // relative to the supervisor's directory, not the asker's
	}
	if snap.certDir != "" {
		st.Certificates, st.CertificatesError = readCertCache(snap.certDir)
	}
	return st
}

// encodeStatus writes st on one line, within what a client reads.
func encodeStatus(st Status) ([]byte, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}
	for len(b) > link.MaxStatus && len(st.Certificates) > 0 {
		// Only the certificate list can grow without bound.
		st.Certificates = st.Certificates[:len(st.Certificates)/2]
		st.CertificatesError = fmt.Sprintf("list cut short to %d certificates", len(st.Certificates))
		if b, err = json.Marshal(st); err != nil {
			return nil, fmt.Errorf("encode status: %w", err)
		}
	}
	if len(b) > link.MaxStatus {
		return nil, errors.New("status too large to send")
	}
	return b, nil
}

// The certificate cache is autocert's: a file per certificate named after
// its host ("+rsa" appended for an RSA one) holding the private key PEM and
// then the chain PEM, leaf first. Other entries ("acme_account+key",
// "HOST+token", "HOST+http-01") hold no certificate, and a file being
// written is the entry's name followed by digits.
const (
	maxCerts    = 1000    // listed at most, to bound the answer
	maxCertFile = 1 << 20 // bytes read of one file; a chain is a few KiB
)

// readCertCache lists the certificates in dir with their expiry, and
// says why it could not, or did not list them all.
func readCertCache(dir string) ([]CertStatus, string) {
	certs := []CertStatus{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return certs, fmt.Sprintf("read certificate cache: %v", err)
	}
	for _, e := range entries {
		host, key, ok := certEntry(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if len(certs) == maxCerts {
			return certs, fmt.Sprintf("only the first %d certificates listed", maxCerts)
		}
		c := CertStatus{Host: host, Key: key}
		leaf, err := readLeaf(filepath.Join(dir, e.Name()))
		// A name ending in a digit that does not hold a certificate for
		// itself is a file autocert is writing, not a host.
		if endsInDigit(host) && (err != nil || !slices.Contains(leaf.DNSNames, host)) {
			continue
		}
		if err != nil {
			c.Error = err.Error()
		} else {
			c.NotAfter = leaf.NotAfter.UTC()
		}
		certs = append(certs, c)
	}
	return certs, ""
}

// certEntry tells a certificate's cache entry from the others.
func certEntry(name string) (host, key string, ok bool) {
	host, key = name, "ecdsa"
	if h, rsa := strings.CutSuffix(name, "+rsa"); rsa {
		host, key = h, "rsa"
	}
	if host == "" || strings.Contains(host, "+") || strings.HasPrefix(host, ".") || strings.HasPrefix(host, "acme_account") {
		return "", "", false
	}
	return host, key, true
}

func endsInDigit(s string) bool {
	return s != "" && s[len(s)-1] >= '0' && s[len(s)-1] <= '9'
}

// readLeaf parses the first certificate in the cache file at path.
func readLeaf(path string) (*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	defer f.Close()
	// The leaf comes first: a file cut short here still yields it.
	data, err := io.ReadAll(io.LimitReader(f, maxCertFile))
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%s: no certificate", filepath.Base(path))
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		leaf, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
		return leaf, nil
	}
}
