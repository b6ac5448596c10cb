// Command reactor-https is the reactor HTTPS server for the side-by-side
// benchmarks: the server of examples/http (see servers/reactor-http) with
// httpd.WithTLS, ALPN http/1.1 and a self-signed ECDSA P-256 certificate
// made at start.
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"log/slog"

	"github.com/tcpreactor/reactor/examples/http/httpd"
	"github.com/tcpreactor/reactor/internal/selfsigned"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "event loops serving connections (0: one loop accepts and serves)")
	flag.Parse()
	cert, err := selfsigned.New("127.0.0.1")
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	srv, err := httpd.NewServer(*addr, *loops, "epoll", slog.New(slog.DiscardHandler), httpd.WithTLS(cfg))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve())
}
