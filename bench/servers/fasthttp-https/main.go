// Command fasthttp-https is the valyala/fasthttp HTTPS peer for the
// side-by-side benchmarks: the fasthttp server (see servers/fasthttp,
// whose handler it shares in spirit: GET / answers "Hello, World!") served
// on a crypto/tls listener with ALPN http/1.1 and a self-signed ECDSA
// P-256 certificate made at start, as fasthttp's ServeTLS does. -loops
// sets GOMAXPROCS.
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"net"
	"runtime"

	"github.com/valyala/fasthttp"

	"github.com/tcpreactor/reactor/internal/selfsigned"
)

var hello = []byte("Hello, World!")

func handler(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	if string(ctx.Path()) != "/" {
		ctx.Error("Not Found", fasthttp.StatusNotFound)
		return
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBody(hello)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "GOMAXPROCS (fasthttp has no event-loop count)")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	runtime.GOMAXPROCS(*loops)
	cert, err := selfsigned.New("127.0.0.1")
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	srv := &fasthttp.Server{Handler: handler, Name: "fasthttp"}
	log.Fatal(srv.Serve(tls.NewListener(ln, cfg)))
}
