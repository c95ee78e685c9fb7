package platform

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// A worker started by StartWorker runs with workerTimerSlack from exec on,
// so every thread its runtime starts inherits it, sysmon included; a
// process started otherwise keeps the slack it inherited. (The helper reads
// its own thread's slack: Landlock keeps it from reading its other threads'.)
func TestStartWorkerTimerSlack(t *testing.T) {
	own, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if own == int(workerTimerSlack) {
		t.Skipf("this test already runs with the worker's slack %d: it could not tell", own)
	}
	for _, c := range []struct {
		restricted bool
		want       int
	}{{true, int(workerTimerSlack)}, {false, own}} {
		lines, _, stop := runHelper(t, helperOpts{}, c.restricted)
		expect(t, lines, "timerslack", fmt.Sprintf("%d <nil>", c.want))
		stop()
	}
}
