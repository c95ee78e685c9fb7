// Package platform owns what each srp process may do once it serves: one
// table (Rules) says which pledge(2) promises and unveil(2) paths the
// supervisor and the worker keep, and Lockdown applies it early, once, before
// a role serves. On OpenBSD that is pledge and unveil; on Linux the worker
// gets no_new_privs and a Landlock domain built from the same table (see
// StartWorker); elsewhere Lockdown only prepares and returns.
//
// It also holds the socket calls that differ by system (PeerShutdown,
// DeferAccept).
//
// Each system's file (platform_linux.go, platform_openbsd.go,
// platform_other.go) defines Lockdown and StartWorker with the same
// signatures and the same opening (prepare, then that system's rules): the
// repetition is deliberate, one implementation per system, chosen by build
// tags.
//
// Invariant: a role reads or writes nothing after Lockdown that Rules does not
// list, so everything it needs later (time zone, system roots, the cache
// directory) is loaded or created before the restrictions apply.
package platform

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Role is a kind of srp process.
type Role int

const (
	// Supervisor holds the listeners, reads the config and starts workers.
	Supervisor Role = iota + 1
	// Worker serves HTTP on the listeners it inherited.
	Worker
)

func (r Role) String() string {
	switch r {
	case Supervisor:
		return "supervisor"
	case Worker:
		return "worker"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Paths is what a role touches after Lockdown. "" means unused.
type Paths struct {
	Config     string // config file the supervisor re-reads on reload
	CertCache  string // ACME certificate cache directory (with ACME)
	ACMECA     string // PEM roots for the ACME server; "" means the system roots
	PIDFileDir string // directory of the supervisor's pidfile
	AccessLog  string // access log file, which the supervisor reopens on SIGUSR1
	Binary     string // the srp executable, started again for workers and upgrades
	ACME       bool   // HTTPS mode: the worker talks to an ACME CA and keeps a cache
	// Fleet mode (with ACME): the worker talks to etcd, over TLS with these
	// files if set; without EtcdCA it trusts the system roots.
	Fleet                     bool
	EtcdCA, EtcdCert, EtcdKey string

	// User is who workers run as (-user); nil means the supervisor's own user.
	User *Credential
}

// Unveil is one path a role keeps, with unveil(2) permissions: r read,
// w write, c create and remove, x execute.
type Unveil struct {
	Path string
	Perm string
	Why  string
}

// Rules is the table: the pledge promises of role and the paths it unveils,
// each with the reason it is needed.
//
// Supervisor: stdio for the Go runtime and its pipes; rpath wpath cpath for
// the config (re-read on reload), the pidfile (written by temp file and
// rename, removed at exit), the control socket beside it (removed at exit)
// and the certificate cache; fattr because the pidfile's temp file is made
// world-readable with fchmod before the rename; inet for the listening
// sockets it holds and hands on; unix for the control socketpairs; dns as the
// process model prescribes for the listener side; proc exec to fork and exec
// workers and the upgraded binary, and to signal workers; id with -user, since
// the forked child inherits the pledge and must setgroups, setgid and setuid
// before it execs the worker.
//
// Worker: stdio for the Go runtime, the control socket and the sockets it
// inherited; inet to accept on them and connect to backends (proxying and
// health checks). In HTTPS mode also dns to resolve the ACME server, and
// rpath wpath cpath for the certificate cache (read, write a temp file,
// rename it over, remove), plus the ACME roots file. In fleet mode the
// same inet and dns reach etcd, and its TLS files are read when the worker
// connects.
func Rules(role Role, p Paths) (promises string, unveil []Unveil) {
	add := func(path, perm, why string) {
		if path != "" {
			unveil = append(unveil, Unveil{Path: path, Perm: perm, Why: why})
		}
	}
	switch role {
	case Supervisor:
		promises = "stdio rpath wpath cpath fattr inet unix dns proc exec"
		if p.User != nil {
			promises += " id"
		}
		add(p.Config, "r", "re-read and validated on every reload")
		if p.ACME {
			add(p.CertCache, "rwc", "certificate cache the supervisor creates and hands to the worker user")
		}
		add(p.PIDFileDir, "rwc", "pidfile written by temp file and rename; it and the control socket removed at exit")
		add(p.AccessLog, "wc", "access log, reopened (and created if rotated away) on SIGUSR1; workers write the descriptor they inherit")
		add(p.Binary, "x", "executed for every worker and for an upgrade")
		add(os.DevNull, "rw", "standard input of the processes it starts")
	case Worker:
		promises = "stdio inet"
		if p.ACME {
			promises += " dns rpath wpath cpath"
			add(p.CertCache, "rwc", "certificates and ACME account key: read, written by temp file and rename, removed")
			add(p.ACMECA, "r", "roots trusted for the ACME server")
			if p.Fleet {
				add(p.EtcdCA, "r", "roots trusted for etcd, the fleet's shared ACME store")
				add(p.EtcdCert, "r", "client certificate presented to etcd")
				add(p.EtcdKey, "r", "client certificate's key for etcd")
			}
		}
	}
	return promises, unveil
}

// prepare loads and creates, while nothing is restricted yet, what a role
// needs later: the local time zone (loaded on first use, which would come
// after Lockdown), the system roots for the ACME server, and the cache
// directory, which the supervisor gives to the worker user.
func prepare(role Role, p Paths) error {
	if role != Supervisor && role != Worker {
		return fmt.Errorf("lockdown: unknown %v", role)
	}
	//lint:ignore SA4017 the call loads the local zone, which time does on first use
	time.Now().Zone()
	if role == Worker && p.needsSystemRoots() {
		if _, err := x509.SystemCertPool(); err != nil {
			return fmt.Errorf("lockdown: load system roots: %w", err)
		}
	}
	owner := p.User
	if role == Worker {
		owner = nil
	}
	prepareCache(p, owner)
	return nil
}

// needsSystemRoots says a worker trusts the system roots for the ACME
// server or for etcd.
func (p Paths) needsSystemRoots() bool {
	return p.ACME && (p.ACMECA == "" || p.Fleet && p.EtcdCA == "")
}

// prepareCache creates the certificate cache in HTTPS mode and, if owner is
// set, gives it to owner: workers running as another user must be able to
// write it. It is best effort: the worker checks the cache before it serves
// and says precisely what is wrong with it.
func prepareCache(p Paths, owner *Credential) {
	if !p.ACME || p.CertCache == "" {
		return
	}
	if os.MkdirAll(p.CertCache, 0o700) == nil && owner != nil {
		_ = giveDir(p.CertCache, owner)
	}
}

func logger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.Default()
	}
	return log
}
