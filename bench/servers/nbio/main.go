// Command nbio is the nbio echo peer for the side-by-side benchmarks: it
// echoes every byte back and does nothing else.
//
// It is written as nbio's README echo is: OnData writes the bytes it got back
// on the connection. nbio's Conn.Write writes directly and copies only what
// the socket did not take into its own buffer, so the read buffer passed to
// OnData may be handed to it as is. -loops sets Config.NPoller; the rest is
// nbio's default (level-triggered epoll, OnData called on the poller
// goroutine, a separate listener goroutine).
package main

import (
	"flag"
	"log"

	"github.com/lesismal/nbio"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "pollers")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	engine := nbio.NewEngine(nbio.Config{
		Network: "tcp",
		Addrs:   []string{*addr},
		NPoller: *loops,
	})
	engine.OnData(func(c *nbio.Conn, data []byte) {
		if _, err := c.Write(data); err != nil {
			_ = c.Close() // the write already failed; nothing more to say
		}
	})
	if err := engine.Start(); err != nil {
		log.Fatalf("nbio: %v", err)
	}
	select {} // serve until killed
}
