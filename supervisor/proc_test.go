package supervisor

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"srp/supervisor/link"
)

// sleeper starts a process that never reads its control socket, in place
// of a worker.
func sleeper(cmd *exec.Cmd) error {
	cmd.Path, cmd.Args = "/bin/sleep", []string{"sleep", "5"}
	return cmd.Start()
}

// TestWorkerFloodIsKilled has a "worker" send error texts without end: the
// supervisor keeps a few KiB of them and kills it.
func TestWorkerFloodIsKilled(t *testing.T) {
	events := make(chan procEvent, 4)
	done := make(chan struct{})
	defer close(done)
	cmd := exec.Command("/bin/sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ours, theirs, err := socketPair("test")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.FileConn(theirs) // the worker's end
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	p := newProc(1, cmd, ours)
	p.watch(events, done)
	go func() {
		line := []byte(strings.Repeat("x", link.MaxError))
		for range 1000 {
			if link.Write(peer, link.Error, line) != nil {
				return
			}
		}
	}()
	select {
	case e := <-events:
		if !e.exited {
			t.Fatalf("event %+v, want the exit", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a worker flooding its control socket was not killed")
	}
	if n := len(p.text()); n > maxFailText+64 {
		t.Errorf("kept %d bytes of the worker's failure text", n)
	}
	if r := p.reason(nil); !strings.Contains(r, "more than 64 messages") {
		t.Errorf("reason %.200q does not say the worker flooded", r)
	}
}

// TestSpawnDoesNotBlock starts a worker that never reads, with a config
// larger than any socket buffer: spawn returns at once.
func TestSpawnDoesNotBlock(t *testing.T) {
	events := make(chan procEvent, 4)
	done := make(chan struct{})
	defer close(done)
	returned := make(chan *proc, 1)
	go func() {
		p, err := spawn(workerCommand{path: "/bin/sleep", args: []string{"sleep"}, start: sleeper}, 1, nil, make([]byte, 4<<20), make([][32]byte, 1), events, done)
		if err != nil {
			t.Error(err)
		}
		returned <- p
	}()
	select {
	case p := <-returned:
		if p != nil {
			_ = p.cmd.Process.Kill()
		}
	case <-time.After(2 * time.Second):
		t.Fatal("spawn blocked writing to a worker that does not read")
	}
}

// TestWorkerBinaryReplaced checks that where a worker is started by path
// (every system but Linux), a binary replaced on disk is refused.
func TestWorkerBinaryReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srp")
	if err := os.WriteFile(path, []byte("release 1"), 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	wc := workerCommand{path: path, args: []string{"srp", "worker"}, self: fi}
	if err := wc.check(); err != nil {
		t.Fatalf("own binary refused: %v", err)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte("release 2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	_, err = spawn(wc, 1, nil, nil, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "run srp upgrade") {
		t.Errorf("spawn from a replaced binary: %v", err)
	}
}
