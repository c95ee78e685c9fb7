package accesslog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"srp/worker/observe"
)

func TestLineDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers at random")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r := sample()
	for _, f := range []Format{JSON, Combined} {
		l := New(f, null)
		if n := testing.AllocsPerRun(1000, func() { l.Request(&r) }); n != 0 {
			t.Errorf("%v: %v allocations per line", f, n)
		}
	}
}

func TestOff(t *testing.T) {
	dir := t.TempDir()
	file := createFile(t, filepath.Join(dir, "log"))
	r := sample()
	New(Off, file).Request(&r)
	New(Format(9), file).Request(&r)
	(*Log)(nil).Request(&r)
	l := New(JSON, nil)
	l.Request(&r)
	if got := readLines(t, file.Name()); len(got) != 0 {
		t.Fatalf("an access log that is off wrote %q", got)
	}
	l.Reopen(file)
	l.Request(&r)
	if got := readLines(t, file.Name()); len(got) != 1 {
		t.Fatalf("after Reopen with a file: %d lines, want 1", len(got))
	}
}

// TestConcurrentLines logs from many goroutines through one Log into a
// pipe, with some lines larger than the pipe's atomic write size, and
// checks that every line arrives whole and once.
func TestConcurrentLines(t *testing.T) {
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	const goroutines, perGoroutine = 16, 300
	l := New(JSON, wr)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				r := sample()
				r.URI = uriFor(g, i)
				l.Request(&r)
			}
		})
	}
	go func() {
		wg.Wait()
		wr.Close()
	}()
	seen := map[string]bool{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct{ URI string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %.200q: %v", sc.Text(), err)
		}
		if seen[rec.URI] {
			t.Fatalf("line for %.50s twice", rec.URI)
		}
		seen[rec.URI] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for g := range goroutines {
		for i := range perGoroutine {
			if !seen[uriFor(g, i)] {
				t.Fatalf("no intact line for goroutine %d, line %d", g, i)
			}
		}
	}
}

// uriFor makes every 50th line 20 KiB long.
func uriFor(g, i int) string {
	uri := fmt.Sprintf("/g%d/i%d", g, i)
	if i%50 == 0 {
		uri += "/" + strings.Repeat("x", 20<<10)
	}
	return uri
}

// TestReopen swaps the file under a steady stream of lines and closes the
// old one as soon as Reopen returns: no line may be lost or split, and
// every line begun after Reopen returned goes to the new file.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	oldFile := createFile(t, filepath.Join(dir, "old"))
	newFile := createFile(t, filepath.Join(dir, "new"))
	l := New(JSON, oldFile)
	var (
		written atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				r := sample()
				r.RequestID = fmt.Sprintf("g%d-%d", g, i)
				l.Request(&r)
				written.Add(1)
			}
		})
	}
	for written.Load() < 2000 {
		runtime.Gosched()
	}
	l.Reopen(newFile)
	if err := oldFile.Close(); err != nil {
		t.Fatal(err)
	}
	r := sample()
	r.RequestID = "after-reopen"
	l.Request(&r)
	for at := written.Load(); written.Load() < at+2000; {
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()

	oldLines, newLines := readLines(t, oldFile.Name()), readLines(t, newFile.Name())
	if len(oldLines) == 0 || len(newLines) == 0 {
		t.Fatalf("%d lines in the old file, %d in the new one: want both", len(oldLines), len(newLines))
	}
	ids := map[string]bool{}
	for _, line := range append(oldLines, newLines...) {
		var rec struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if ids[rec.RequestID] {
			t.Fatalf("line %q twice", rec.RequestID)
		}
		ids[rec.RequestID] = true
	}
	if want := written.Load() + 1; int64(len(ids)) != want {
		t.Errorf("%d lines in the files, %d logged", len(ids), want)
	}
	if !strings.Contains(strings.Join(newLines, "\n"), `"after-reopen"`) {
		t.Error("the line logged after Reopen is not in the new file")
	}
}

func createFile(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// readLines returns the lines of a file, failing on a last line with no
// newline.
func readLines(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s ends in a partial line", name)
	}
	return strings.Split(string(b[:len(b)-1]), "\n")
}

var _ observe.Observer = (*Log)(nil)
