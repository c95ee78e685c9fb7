// Command backend is a sample HTTP backend for trying srp: it answers every
// request with its name and what it was asked, and /health with 200.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen `address`")
	name := flag.String("name", "backend", "name to answer with")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s: %s %s%s from %s (request %s)\n", *name, r.Method, r.Host, r.URL.RequestURI(),
			r.Header.Get("X-Real-Ip"), r.Header.Get("X-Request-Id"))
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("%s listening on %s", *name, *addr)
	log.Fatal(srv.ListenAndServe())
}
