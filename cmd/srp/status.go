package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"srp/supervisor"
	"srp/supervisor/link"
)

// statusTimeout bounds "srp status": the supervisor answers from memory
// and a directory listing, so a longer wait means it is stuck.
const statusTimeout = 15 * time.Second

// cmdStatus asks the running srp how it is and prints the answer, as
// aligned "key: value" lines or, with -json, as the supervisor's JSON.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("srp status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pidfile := fs.String("pidfile", "", "pidfile `file` of the running srp (its control socket is derived from it)")
	asJSON := fs.Bool("json", false, "print one JSON object (snake_case keys) for scripts")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *pidfile == "" {
		fmt.Fprintln(stderr, "srp status: -pidfile is required")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	b, err := link.Status(ctx, *pidfile)
	if err != nil {
		fmt.Fprintf(stderr, "srp status: %v\n", err)
		return 1
	}
	var st supervisor.Status
	if err := json.Unmarshal(b, &st); err != nil {
		fmt.Fprintf(stderr, "srp status: malformed answer: %v\n", err)
		return 1
	}
	if *asJSON {
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	printStatus(stdout, &st, time.Now())
	return 0
}

// printStatus writes st as "key: value" lines with the values aligned.
func printStatus(w io.Writer, st *supervisor.Status, now time.Time) {
	var lines [][2]string
	add := func(k, format string, args ...any) {
		lines = append(lines, [2]string{k, fmt.Sprintf(format, args...)})
	}
	add("supervisor pid", "%d", st.PID)
	add("version", "%s", st.Version)
	add("started", "%s", stamp(st.Started))
	add("uptime", "%s", time.Duration(st.UptimeSeconds)*time.Second)
	add("state", "%s", st.State)
	if st.SuccessorPID != 0 {
		add("handed over to", "pid %d", st.SuccessorPID)
	}
	add("generation", "%d", st.Generation)
	if len(st.Workers) == 0 {
		add("worker", "none")
	}
	for _, wk := range st.Workers {
		add("worker", "pid %d %s (generation %d, started %s)", wk.PID, wk.State, wk.Generation, stamp(wk.Started))
	}
	add("config", "%s", st.Config.Path)
	add("config sha256", "%s", st.Config.SHA256)
	add("config loaded", "%s", stamp(st.Config.Loaded))
	add("last reload", "%s", describeOp(st.LastReload))
	add("last upgrade", "%s", describeOp(st.LastUpgrade))
	if st.HTTPS {
		add("https", "on")
		if len(st.Certificates) == 0 {
			add("certificate", "none yet")
		}
		for _, c := range st.Certificates {
			if c.Error != "" {
				add("certificate", "%s (%s): %s", c.Host, c.Key, c.Error)
				continue
			}
			add("certificate", "%s (%s) expires %s, %s", c.Host, c.Key, stamp(c.NotAfter), until(c.NotAfter, now))
		}
		if st.CertificatesError != "" {
			add("certificates", "%s", st.CertificatesError)
		}
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l[0]))
	}
	for _, l := range lines {
		// A message of several lines (a config's problems) stays in the value column.
		v := strings.ReplaceAll(l[1], "\n", "\n"+strings.Repeat(" ", width+2))
		fmt.Fprintf(w, "%-*s %s\n", width+1, l[0]+":", v)
	}
}

// stamp writes t in RFC 3339, UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func describeOp(o *supervisor.OpStatus) string {
	if o == nil {
		return "none"
	}
	return fmt.Sprintf("%s %s: %s", stamp(o.Time), o.Result, o.Message)
}

// until says how long a certificate has left, in days.
func until(t, now time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return "expired"
	}
	return fmt.Sprintf("in %d days", int(d/(24*time.Hour)))
}

// certCache is the certificate cache status lists: none in plain-HTTP mode.
func (f *runFlags) certCache() string {
	if f.url == "" {
		return ""
	}
	return f.certs
}
