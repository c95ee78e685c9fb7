package main

import (
	"flag"
	"fmt"
	"io"

	"srp/registry"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("srp check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("c", "config.json", "config `file` to validate")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if _, err := registry.Load(*cfg); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
