package worker

import (
	"bufio"
	"net"
	"net/http"
	"strings"
)

// upgradeWriter is the ResponseWriter ReverseProxy gets for a WebSocket
// handshake. ReverseProxy tunnels from the hijacked net.Conn, so bytes the
// client sent right behind its handshake, already read into the server's
// buffer, would be lost; the conn returned here reads that buffer first.
type upgradeWriter struct {
	http.ResponseWriter
}

// forUpgrade returns w, wrapped when r asks for a WebSocket.
func forUpgrade(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	if r.ProtoMajor != 1 || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return w
	}
	return &upgradeWriter{w}
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (u *upgradeWriter) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func (u *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(u.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &bufferedConn{Conn: conn, r: brw.Reader}, brw, nil
}

// bufferedConn reads what the server had buffered before the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite passes the end of the backend's stream on to the client.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
