package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"srp/registry"
	"srp/worker"
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
	return fs, f
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
	o := worker.Options{Snapshot: snap, HTTP: lns[0], Timeout: f.timeout, Logger: log}
	if len(lns) > 1 {
		o.HTTPS = lns[1]
	}
	return o
}

func newLogger(w io.Writer, role string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil)).With("role", role, "pid", os.Getpid())
}

func cmdRun(args []string, stderr io.Writer) int {
	fs, f := newRunFlags(stderr)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	log := newLogger(stderr, "srp")
	snap, err := registry.Load(f.config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var lns []net.Listener
	for _, addr := range f.listenAddrs() {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Error("listen", "addr", addr, "err", err)
			return 1
		}
		lns = append(lns, ln)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := worker.Run(ctx, f.workerOptions(snap, lns, log), nil); err != nil {
		log.Error("worker", "err", err)
		return 1
	}
	return 0
}

func cmdWorker(args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "srp worker: started by the supervisor only")
	return 2
}

func cmdSignal(name string, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stderr, "srp %s: not available yet\n", name)
	return 1
}
