package worker

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"srp/scripts/testkit"
)

// An event stream reaches an HTTP/2 client event by event, and its head
// before the first event: each event exists only once the client has
// seen the one before, so a proxy that buffered would never finish.
func TestH2StreamFlushed(t *testing.T) {
	next := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		for i := range 3 {
			select {
			case <-next:
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Second):
				return
			}
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	})}
	go be.Serve(ln)
	t.Cleanup(func() { be.Close() })
	cert, roots := testkit.SelfSigned(t, "app.test")
	var tlsAddr string
	runGuarded(t, config(ln.Addr().String()), func(o *Options) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tlsAddr = l.Addr().String()
		o.HTTPS, o.TLS = l, &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	resp, err := h2Do(t, tlsAddr, roots, "GET", "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		next <- struct{}{}
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("data: %d\n", i); line != want || err != nil {
			t.Fatalf("event %d: %q %v, want %q", i, line, err, want)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
}

// h2Do sends one request over HTTP/2 to the worker's TLS listener at addr.
func h2Do(t *testing.T, addr string, roots *x509.CertPool, method, path string) (*http.Response, error) {
	t.Helper()
	tr := &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.test"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, method, "https://app.test"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "h2-client")
	resp, err := tr.RoundTrip(req)
	if err == nil && resp.ProtoMajor != 2 {
		t.Fatalf("%s: not HTTP/2", resp.Proto)
	}
	return resp, err
}
