package platform

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// With DeferAccept, a connection reaches accept once it has sent bytes,
// ahead of one opened earlier that has sent nothing; the silent one still
// arrives after about deferAcceptSeconds, so srp's own limits see it.
func TestDeferAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var setErr error
	if err := raw.Control(func(fd uintptr) { setErr = DeferAccept(fd) }); err != nil || setErr != nil {
		t.Fatalf("DeferAccept: %v %v", err, setErr)
	}
	tl := ln.(*net.TCPListener)
	accept := func(within time.Duration) (net.Conn, error) {
		_ = tl.SetDeadline(time.Now().Add(within))
		return tl.Accept()
	}

	silentAt := time.Now()
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	talker, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer talker.Close()
	if _, err := talker.Write([]byte("GET")); err != nil {
		t.Fatal(err)
	}

	c, err := accept(5 * time.Second)
	if err != nil {
		t.Fatalf("the connection that sent bytes was not accepted: %v", err)
	}
	if c.RemoteAddr().String() != talker.LocalAddr().String() {
		t.Fatalf("accepted %s first, want the one that sent bytes (%s)", c.RemoteAddr(), talker.LocalAddr())
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "GET" {
		t.Fatalf("read %q, %v", buf, err)
	}
	c.Close()

	if c, err := accept(200 * time.Millisecond); err == nil {
		c.Close()
		if time.Since(silentAt) < deferAcceptSeconds*time.Second {
			t.Fatalf("the silent connection was accepted after %v", time.Since(silentAt))
		}
		t.Logf("the silent connection came before the check ended (%v after it opened): nothing to tell", time.Since(silentAt))
	}
	c, err = accept(10 * time.Second)
	if err != nil {
		t.Fatalf("the silent connection never reached accept: %v", err)
	}
	c.Close()
	if waited := time.Since(silentAt); waited < deferAcceptSeconds*time.Second {
		t.Errorf("the silent connection was accepted after %v, before the defer period", waited)
	} else {
		t.Logf("the silent connection was accepted after %v", waited)
	}
}
