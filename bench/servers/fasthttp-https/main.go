// Command fasthttp-https is the valyala/fasthttp HTTPS peer for the
// side-by-side benchmarks: the fasthttp server (see servers/fasthttp, whose
// handler, peer.Hello, it shares) served on a crypto/tls listener with ALPN
// http/1.1 and a self-signed ECDSA P-256 certificate made at start, as
// fasthttp's ServeTLS does. -loops sets GOMAXPROCS.
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"net"
	"runtime"

	"github.com/valyala/fasthttp"

	"github.com/tcpreactor/reactor/bench/internal/peer"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "GOMAXPROCS (fasthttp has no event-loop count)")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	runtime.GOMAXPROCS(*loops)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: peer.Hello, Name: "fasthttp"}
	log.Fatal(srv.Serve(tls.NewListener(ln, peer.TLSConfig("http/1.1"))))
}
