// Command reactor-https is the reactor HTTPS server for the side-by-side
// benchmarks: the server of examples/http (see servers/reactor-http) with
// reactor.WithTLS, ALPN http/1.1 and a self-signed ECDSA P-256 certificate
// made at start.
package main

import (
	"flag"
	"log"
	"log/slog"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/bench/internal/peer"
	"github.com/tcpreactor/reactor/examples/http/httpd"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "event loops serving connections (0: one loop accepts and serves)")
	flag.Parse()
	srv, err := httpd.NewServer(*addr, *loops, "epoll", slog.New(slog.DiscardHandler), httpd.WithServerOptions(reactor.WithTLS(peer.TLSConfig("http/1.1"))))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve())
}
