// Command reactor-tls is the reactor TLS echo server for the side-by-side
// benchmarks: the reactor echo server (see servers/reactor) with
// reactor.WithTLS and a self-signed ECDSA P-256 certificate made at start,
// as every TLS peer here has. Everything else is the defaults.
package main

import (
	"flag"
	"log"
	"log/slog"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/bench/internal/peer"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "event loops serving connections (0: one loop accepts and serves)")
	flag.Parse()
	h := reactor.HandlerFuncs{
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			_, _ = c.Write(in.Next(in.Len())) // fails only once the connection is closing
		},
	}
	srv, err := reactor.NewServer(*addr, h, reactor.WithLoops(*loops),
		reactor.WithTLS(peer.TLSConfig()),
		reactor.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve())
}
