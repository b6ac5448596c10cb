// Command reactor-http is the reactor HTTP/1.1 server for the side-by-side
// benchmarks: exactly the server of examples/http (package httpd: a strict
// parser, keep-alive, pipelined requests answered in order with one write
// per read, a Date header), answering GET / with "Hello, World!".
package main

import (
	"flag"
	"log"
	"log/slog"

	"github.com/tcpreactor/reactor/examples/http/httpd"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "event loops serving connections (0: one loop accepts and serves)")
	flag.Parse()
	srv, err := httpd.NewServer(*addr, *loops, "epoll", slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve())
}
