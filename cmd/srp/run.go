package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"srp/platform"
	"srp/registry"
	"srp/supervisor"
	"srp/supervisor/link"
	"srp/worker"
	"srp/worker/accesslog"
)

// runFlags are the flags of "srp" itself.
type runFlags struct {
	config        string
	port          int
	url           string
	httpAddr      string
	httpsAddr     string
	certs         string
	acmeDirectory string
	acmeCA        string
	email         string
	pidfile       string
	timeout       time.Duration
	user          string
	accessLog     string
	accessLogFile string
	drainDelay    time.Duration
	etcd          string
	etcdPrefix    string
	etcdCA        string
	etcdCert      string
	etcdKey       string
}

func newRunFlags(stderr io.Writer) (*flag.FlagSet, *runFlags) {
	f := &runFlags{}
	fs := flag.NewFlagSet("srp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.config, "c", "config.json", "config `file`")
	fs.IntVar(&f.port, "p", 3000, "plain-HTTP `port` when HTTPS is off")
	fs.StringVar(&f.url, "url", "", "the proxy's own https `URL`; turns HTTPS on (listen on -http-addr and -https-addr)")
	fs.StringVar(&f.httpAddr, "http-addr", ":80", "HTTP listener `address` in HTTPS mode")
	fs.StringVar(&f.httpsAddr, "https-addr", ":443", "HTTPS listener `address`")
	fs.StringVar(&f.certs, "certs", "certs", "ACME certificate cache `directory`")
	fs.StringVar(&f.acmeDirectory, "acme-directory", "https://acme-v02.api.letsencrypt.org/directory", "ACME directory `URL`")
	fs.StringVar(&f.acmeCA, "acme-ca", "", "PEM `file` of roots to trust when talking to the ACME server (default: system roots)")
	fs.StringVar(&f.email, "email", "", "ACME account contact `address` (optional)")
	fs.StringVar(&f.pidfile, "pidfile", "", "`file` to write the serving supervisor's PID to once ready")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "backend response-header timeout and drain limit")
	fs.StringVar(&f.user, "user", "", "run workers as `user[:group]` (srp must start as root; never root itself; default: srp's own user)")
	fs.DurationVar(&f.drainDelay, "drain-delay", 0, "after SIGTERM, answer 503 on /ready and keep serving this long before draining")
	fs.StringVar(&f.accessLog, "access-log", "off", "access log `format`: off, json or combined")
	fs.StringVar(&f.accessLogFile, "access-log-file", "", "`file` the access log is appended to, reopened on SIGUSR1 (default: standard error)")
	fs.StringVar(&f.etcd, "etcd", "", "comma-separated etcd endpoint `URLs`; turns fleet mode on (HTTPS mode only)")
	fs.StringVar(&f.etcdPrefix, "etcd-prefix", "/srp/", "etcd key `prefix`; nodes with the same endpoints and prefix are one fleet")
	fs.StringVar(&f.etcdCA, "etcd-ca", "", "PEM `file` of roots to trust for etcd (default: system roots)")
	fs.StringVar(&f.etcdCert, "etcd-cert", "", "client certificate PEM `file` presented to etcd")
	fs.StringVar(&f.etcdKey, "etcd-key", "", "client certificate's key PEM `file` for etcd")
	return fs, f
}

// checkFleet says what is wrong with the fleet flags, if anything.
func (f *runFlags) checkFleet() error {
	if f.etcd == "" {
		for _, fl := range [][2]string{{"-etcd-ca", f.etcdCA}, {"-etcd-cert", f.etcdCert}, {"-etcd-key", f.etcdKey}} {
			if fl[1] != "" {
				return fmt.Errorf("%s is set without -etcd", fl[0])
			}
		}
		return nil
	}
	if f.url == "" {
		return errors.New("-etcd shares ACME state, so it needs HTTPS mode: set -url too")
	}
	for _, e := range f.etcdEndpoints() {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-etcd: %q is not an http:// or https:// URL", e)
		}
	}
	if (f.etcdCert == "") != (f.etcdKey == "") {
		return errors.New("-etcd-cert and -etcd-key go together")
	}
	if f.etcdPrefix == "" {
		return errors.New("-etcd-prefix must not be empty")
	}
	return nil
}

func (f *runFlags) etcdEndpoints() []string {
	var out []string
	for _, e := range strings.Split(f.etcd, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// logFile is the access log file the supervisor opens and hands to
// workers; "" when they write the log to standard error, or write none.
func (f *runFlags) logFile() string {
	if f.accessLog == "off" {
		return ""
	}
	return f.accessLogFile
}

// listenAddrs are the sockets srp serves: the plain-HTTP port, or in HTTPS
// mode the HTTP and then the HTTPS address.
func (f *runFlags) listenAddrs() []string {
	if f.url == "" {
		return []string{fmt.Sprintf(":%d", f.port)}
	}
	return []string{f.httpAddr, f.httpsAddr}
}

// workerOptions maps the run flags onto a worker serving lns, which are in
// the order listenAddrs gives.
func (f *runFlags) workerOptions(snap *registry.Snapshot, lns []net.Listener, log *slog.Logger) worker.Options {
	o := worker.Options{Snapshot: snap, HTTP: lns[0], Timeout: f.timeout, Logger: log, Version: version}
	if len(lns) > 1 {
		o.HTTPS = lns[1]
		o.ACME = &worker.ACME{URL: f.url, CacheDir: f.certs, Directory: f.acmeDirectory, CAFile: f.acmeCA, Email: f.email}
		if f.etcd != "" {
			o.ACME.Etcd = &worker.Etcd{Endpoints: f.etcdEndpoints(), Prefix: f.etcdPrefix, CAFile: f.etcdCA, CertFile: f.etcdCert, KeyFile: f.etcdKey}
		}
	}
	return o
}

// lockdownPaths says what srp touches once it serves; workers run as user.
func (f *runFlags) lockdownPaths(user *platform.Credential) platform.Paths {
	p := platform.Paths{Config: f.config, CertCache: f.certs, ACMECA: f.acmeCA, ACME: f.url != "", User: user, AccessLog: f.logFile(),
		Fleet: f.etcd != "", EtcdCA: f.etcdCA, EtcdCert: f.etcdCert, EtcdKey: f.etcdKey}
	if f.pidfile != "" {
		p.PIDFileDir = filepath.Dir(f.pidfile)
	}
	if exe, err := os.Executable(); err == nil {
		p.Binary = exe
	}
	return p
}

func newLogger(w io.Writer, role string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil)).With("role", role, "pid", os.Getpid())
}

// cmdRun runs the supervisor: it owns the listening sockets and runs
// "srp worker" processes with the same flags to serve them.
func cmdRun(args []string, stderr io.Writer) int {
	fs, f := newRunFlags(stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	log := newLogger(stderr, "supervisor")
	if _, err := accesslog.Parse(f.accessLog); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := f.checkFleet(); err != nil {
		fmt.Fprintln(stderr, "srp:", err)
		return 1
	}
	user, err := platform.WorkerCredential(f.user)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	paths := f.lockdownPaths(user)
	err = supervisor.Run(supervisor.Options{
		Addrs:      f.listenAddrs(),
		WorkerArgs: args,
		ConfigPath: f.config,
		Validate: func(path string, data []byte) error {
			_, err := registry.Parse(path, data)
			return err
		},
		PIDFile:      f.pidfile,
		AccessLog:    f.logFile(),
		Version:      version,
		CertCache:    f.certCache(),
		ReadyTimeout: max(f.timeout, 5*time.Second),
		DrainTimeout: f.timeout,
		DrainDelay:   f.drainDelay,
		Logger:       log,
		Lockdown:     func() error { return platform.Lockdown(platform.Supervisor, paths, log) },
		StartWorker:  func(cmd *exec.Cmd) error { return platform.StartWorker(cmd, paths, log) },
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// cmdWorker runs a worker process; its supervisor started it with the
// same flags.
func cmdWorker(args []string, stderr io.Writer) int {
	fs, f := newRunFlags(stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	log := newLogger(stderr, "worker")
	format, err := accesslog.Parse(f.accessLog)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	return worker.RunProcess(worker.Process{
		ConfigPath: f.config,
		Listeners:  len(f.listenAddrs()),
		AccessLog:  format,
		LogFile:    f.logFile() != "",
		DrainDelay: f.drainDelay > 0,
		// Everything the worker reads from here on is in the platform table.
		Lockdown: func() error { return platform.Lockdown(platform.Worker, f.lockdownPaths(nil), log) },
		Options: func(snap *registry.Snapshot, lns []net.Listener) worker.Options {
			return f.workerOptions(snap, lns, log)
		},
		Logger: log,
	})
}

// cmdSignal asks the running srp for a reload or an upgrade and waits for
// the outcome, like SIGHUP or SIGUSR2 but with an answer.
func cmdSignal(name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("srp "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	pidfile := fs.String("pidfile", "", "pidfile `file` of the running srp (its control socket is derived from it)")
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for the outcome")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *pidfile == "" {
		fmt.Fprintf(stderr, "srp %s: -pidfile is required\n", name)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait)
	defer cancel()
	ok, lines, err := link.Request(ctx, *pidfile, name)
	if err != nil {
		fmt.Fprintf(stderr, "srp %s: %v\n", name, err)
		return 1
	}
	out := stdout
	if !ok {
		out = stderr
	}
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	if !ok {
		return 1
	}
	return 0
}
