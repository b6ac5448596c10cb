// Command fasthttp is the valyala/fasthttp plaintext peer for the
// side-by-side benchmarks: GET / answers "Hello, World!" (text/plain), other
// paths 404.
//
// A fasthttp.Server with a RequestHandler, as fasthttp's README shows, with
// its defaults (a worker pool of goroutines; it answers pipelined requests in
// order and flushes once no more input is buffered). -loops only sets
// GOMAXPROCS: fasthttp uses Go's runtime netpoller and has no event-loop count.
package main

import (
	"log"

	"github.com/valyala/fasthttp"

	"github.com/tcpreactor/reactor/bench/internal/peer"
)

func main() {
	srv := &fasthttp.Server{Handler: peer.Hello, Name: "fasthttp"}
	log.Fatal(srv.Serve(peer.Listen("fasthttp")))
}
