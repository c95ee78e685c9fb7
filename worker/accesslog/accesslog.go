// Package accesslog owns srp's access log: one line per answered request,
// as JSON or in the Combined Log Format, written to a file that can be
// swapped at run time (log rotation).
//
// Its invariants: a line is written whole, with one Write call, so lines
// from concurrent requests never interleave; nothing a client sends can
// end or break a line, because every string is escaped; and a line costs
// no allocation once the buffer pool is warm.
package accesslog

import (
	"fmt"
	"os"
	"sync"

	"srp/worker/observe"
)

// Format is how a line is written. The zero value is Off.
type Format uint8

const (
	Off      Format = iota // no access log
	JSON                   // one JSON object per line
	Combined               // the Combined Log Format with the request time appended
)

var formatNames = [...]string{Off: "off", JSON: "json", Combined: "combined"}

func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// Parse reads the value of -access-log.
func Parse(s string) (Format, error) {
	for f, name := range formatNames {
		if s == name {
			return Format(f), nil
		}
	}
	return Off, fmt.Errorf("access log format %q: must be off, json or combined", s)
}

// Log writes access log lines. It implements observe.Observer and is safe
// for concurrent use.
type Log struct {
	format Format
	// mu guards w and is held for the whole Write, so that Reopen can
	// promise the old file is no longer written to. It costs no extra
	// waiting: writes to one file are serialized by the file anyway.
	mu sync.Mutex
	w  *os.File
}

// New returns a log writing lines in format f to w. With f Off the log
// does nothing; with w nil it drops lines until Reopen gives it a file.
// The log never closes a file: the caller owns w.
func New(f Format, w *os.File) *Log {
	if int(f) >= len(formatNames) {
		f = Off
	}
	return &Log{format: f, w: w}
}

// Reopen makes w the destination of every line written after it returns
// and waits for a line being written to the previous file, if any, to
// finish. When it returns, the log will never touch the previous file
// again, so the caller closes that file then (not before: a line in
// flight would be lost). No line is split between the two files. A nil w
// drops lines from then on.
func (l *Log) Reopen(w *os.File) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

// Request writes the line for r. A failed write loses its line: there is
// nowhere better to report it, and retrying would hold up the request. A
// write that blocks (a pipe nobody reads) does hold up every request that
// logs behind it, as in any synchronous log.
func (l *Log) Request(r *observe.Request) {
	if l == nil || l.format == Off {
		return
	}
	lb := lineBufs.Get().(*lineBuf)
	if l.format == JSON {
		lb.b = appendJSON(lb.b[:0], r)
	} else {
		lb.b = appendCombined(lb.b[:0], r)
	}
	l.mu.Lock()
	if l.w != nil {
		l.w.Write(lb.b)
	}
	l.mu.Unlock()
	if cap(lb.b) <= maxPooledLine {
		lineBufs.Put(lb)
	}
}

// Attempt is not logged: the line of the request says which backend
// answered and how many attempts failed before it.
func (l *Log) Attempt(string, string, bool, int, string) {}

// maxPooledLine bounds the buffers kept for reuse, so that one request
// with a huge URI does not pin its buffer for the life of the process.
const maxPooledLine = 16 << 10

// lineBuf is pooled by pointer so that neither Get nor Put allocates.
type lineBuf struct{ b []byte }

var lineBufs = sync.Pool{New: func() any { return &lineBuf{b: make([]byte, 0, 1024)} }}
