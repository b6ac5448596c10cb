// Command fasthttp-https is the valyala/fasthttp HTTPS peer for the
// side-by-side benchmarks: the fasthttp server (see servers/fasthttp, whose
// handler, peer.Hello, it shares) served on a crypto/tls listener with ALPN
// http/1.1 and a self-signed ECDSA P-256 certificate made at start, as
// fasthttp's ServeTLS does. -loops sets GOMAXPROCS.
package main

import (
	"crypto/tls"
	"log"

	"github.com/valyala/fasthttp"

	"github.com/tcpreactor/reactor/bench/internal/peer"
)

func main() {
	ln := tls.NewListener(peer.Listen("fasthttp"), peer.TLSConfig("http/1.1"))
	srv := &fasthttp.Server{Handler: peer.Hello, Name: "fasthttp"}
	log.Fatal(srv.Serve(ln))
}
