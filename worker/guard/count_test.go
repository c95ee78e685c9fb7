package guard

import (
	"crypto/tls"
	"log/slog"
	"net"
	"srp/scripts/testkit"
	"testing"
	"time"
)

// A connection counts from its accept until it is closed or hijacked,
// once, whichever comes first and however often: the drain's count of open
// connections must come back to zero.
func TestConnsCountAcceptToClose(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns Conns
	ln := Listen(raw, 0, slog.New(slog.DiscardHandler), &conns)
	defer ln.Close()
	var served []*Conn
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		served = append(served, s.(*Conn))
	}
	gone := conns.Gone()
	served[0].Close()
	served[0].Close()    // a second close does not count again
	served[1].Hijacked() // a tunnel: its handler is waited for instead
	served[1].Close()
	select {
	case <-gone:
		t.Fatal("count reached zero with a connection open")
	case <-time.After(50 * time.Millisecond):
	}
	served[2].Close()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("count never reached zero")
	}
	select {
	case <-conns.Gone():
	default:
		t.Fatal("Gone with nothing open is not closed at once")
	}
}

// Over TLS a connection counts from its raw accept, through the handshake,
// until the TLS connection or the guard above it is closed.
func TestConnsCountOverTLS(t *testing.T) {
	cert, roots := testkit.SelfSigned(t, "app.test")
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns Conns
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	ln := NewTLSListener(raw, conf, 0, 5*time.Second, slog.New(slog.DiscardHandler), &conns)
	defer ln.Close()
	for _, proto := range []string{"http/1.1", "h2"} {
		c, err := tls.Dial("tcp", raw.Addr().String(), &tls.Config{RootCAs: roots, NextProtos: []string{proto}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-conns.Gone():
			t.Fatalf("%s: accepted connection not counted", proto)
		default:
		}
		s.Close()
		select {
		case <-conns.Gone():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: closed connection still counted", proto)
		}
	}
}
