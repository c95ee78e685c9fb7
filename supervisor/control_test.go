package supervisor

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails its first accepts, as one out of descriptors does.
type flakyListener struct {
	fails int
	conns chan net.Conn
	done  chan struct{}
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, syscall.EMFILE
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *flakyListener) Close() error   { close(l.done); return nil }
func (l *flakyListener) Addr() net.Addr { return &net.UnixAddr{Name: "test", Net: "unix"} }

// TestControlSurvivesAcceptErrors has the control socket fail to accept a
// few times: it keeps serving, and the next client is answered.
func TestControlSurvivesAcceptErrors(t *testing.T) {
	ln := &flakyListener{fails: 3, conns: make(chan net.Conn, 1), done: make(chan struct{})}
	requests := make(chan request)
	done := make(chan struct{})
	defer close(done)
	go serveControl(ln, requests, done, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer ln.Close()
	client, server := net.Pipe()
	defer client.Close()
	ln.conns <- server
	go func() {
		_, _ = io.WriteString(client, "reload\n")
	}()
	select {
	case req := <-requests:
		req.reply <- result{msg: "reloaded"}
	case <-time.After(5 * time.Second):
		t.Fatal("control socket stopped serving after accept errors")
	}
	b, err := io.ReadAll(client)
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatal(err)
	}
	if string(b) != "ok\nreloaded\n" {
		t.Errorf("answer %q", b)
	}
}
