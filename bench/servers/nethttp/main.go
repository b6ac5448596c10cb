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
	"log"
	"net/http"

	"github.com/tcpreactor/reactor/bench/internal/peer"
)

var hello = []byte("Hello, World!")

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(hello) // a failed write means the client left
	})
	srv := &http.Server{Handler: mux}
	log.Fatal(srv.Serve(peer.Listen("net/http")))
}
