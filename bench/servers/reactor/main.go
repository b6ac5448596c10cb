// Command reactor is the reactor echo server for the side-by-side
// benchmarks: it echoes every byte back and does nothing else.
//
// It is written as a user would write it from the README: OnMessage writes
// everything it was given (Write copies, so the input is consumed at once)
// and the loop flushes once per iteration. -loops is reactor.WithLoops:
// with 1, a main loop accepts and one sub-loop serves every connection (as
// gnet's one event loop with its acceptor); all other options are the
// defaults (epoll, TCP_NODELAY on, round-robin).
package main

import (
	"flag"
	"log"
	"log/slog"

	"github.com/tcpreactor/reactor"
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
	srv, err := reactor.NewServer(*addr, h, reactor.WithLoops(*loops), reactor.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve())
}
