// Command nethttp is the net/http plaintext peer for the side-by-side
// benchmarks: GET / answers "Hello, World!" (text/plain), other paths 404.
//
// A plain http.Server with a ServeMux, as the net/http documentation shows.
// net/http reads pipelined requests but answers them one after another, each
// in its own flush; that is part of what is measured. Like the gonet echo
// peer, -loops only sets GOMAXPROCS: net/http runs a goroutine per
// connection on Go's one runtime netpoller and has no event-loop count.
package main

import (
	"flag"
	"log"
	"net/http"
	"runtime"
)

var hello = []byte("Hello, World!")

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "GOMAXPROCS (net/http has no event-loop count)")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	runtime.GOMAXPROCS(*loops)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(hello) // a failed write means the client left
	})
	srv := &http.Server{Addr: *addr, Handler: mux}
	log.Fatal(srv.ListenAndServe())
}
