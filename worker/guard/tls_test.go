package guard

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"srp/scripts/testkit"
	"testing"
	"time"
)

// The listener itself: a silent client is closed at the handshake timeout
// while others are accepted, and Close ends the handshakes in progress and
// every later Accept.
func TestTLSListenerTimeoutAndClose(t *testing.T) {
	cert, roots := testkit.SelfSigned(t, "app.test")
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	l := NewTLSListener(raw, conf, 0, 300*time.Millisecond, slog.New(slog.DiscardHandler), new(Conns)).(*tlsListener)
	defer l.Close()
	addr := raw.Addr().String()

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for _, proto := range []string{"http/1.1", "h2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d := tls.Dialer{Config: &tls.Config{RootCAs: roots, NextProtos: []string{proto}}}
		c, err := d.DialContext(ctx, "tcp", addr)
		cancel()
		if err != nil {
			t.Fatalf("%s handshake: %v", proto, err)
		}
		defer c.Close()
		select {
		case sc := <-accepted:
			defer sc.Close()
			_, isTLS := sc.(*tls.Conn)
			tg, isGuard := sc.(*TLSConn)
			if proto == "h2" && !isTLS || proto == "http/1.1" && (!isGuard || tg.ConnectionState().NegotiatedProtocol != proto) {
				t.Errorf("%s: accepted a %T", proto, sc)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not accepted", proto)
		}
	}
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("silent client: read %v, want EOF at the handshake timeout", err)
	}

	waiting, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	if !testkit.WaitFor(5*time.Second, func() bool { return len(l.slots) == 1 }) {
		t.Fatal("second client's handshake never started")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	waiting.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := waiting.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("handshake in progress at Close: read %v, want EOF", err)
	}
	if c, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v %v", c, err)
	}
}
