// Command srp is a small reverse proxy: it routes requests by Host to
// healthy backends, terminates TLS with automatic certificates, and reloads
// its config or its own binary without dropping a request.
//
// This package is the command line only; the work lives in the packages it calls.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `srp is a small reverse proxy that routes requests by Host to healthy backends.

Usage:
  srp [flags]                   run the proxy (see flags below)
  srp check   -c FILE           validate a config: print "ok", or every problem and exit 1
  srp reload  -pidfile FILE     reload the running srp's config (as SIGHUP) and wait for the result
  srp upgrade -pidfile FILE     hand over to the srp binary now on disk (as SIGUSR2) and wait
  srp status  -pidfile FILE     show the running srp: PIDs, workers, config, last reload and upgrade (-json)
  srp version                   print the version

Quick start:
  srp -c config.json -p 3000    serve plain HTTP on :3000 with the services in config.json

Run flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return cmdCheck(args[1:], stdout, stderr)
		case "version":
			fmt.Fprintf(stdout, "srp %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return 0
		case "reload", "upgrade":
			return cmdSignal(args[0], args[1:], stdout, stderr)
		case "status":
			return cmdStatus(args[1:], stdout, stderr)
		case "worker":
			return cmdWorker(args[1:], stderr)
		case "help":
			args = []string{"-h"}
		}
	}
	return cmdRun(args, stderr)
}

// parse parses fs and turns -h and bad flags into exit codes.
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q (run \"srp -h\" for usage)\n", fs.Arg(0))
		return 2, false
	}
	return 0, true
}
