// Command netpoll is the cloudwego/netpoll echo peer for the side-by-side
// benchmarks: it echoes every byte back and does nothing else.
//
// It is written as netpoll's guide and examples are: an OnRequest handler
// takes what the connection's Reader holds, writes it with the nocopy Writer
// and flushes. -loops sets Config.PollerNum (netpoll's pollers); handlers run
// on netpoll's default goroutine pool, as in its examples.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/cloudwego/netpoll"
)

// echo runs once per readable burst. WriteBinary references the bytes Next
// returned without copying, so Release comes after Flush has sent them.
func echo(_ context.Context, conn netpoll.Connection) error {
	r, w := conn.Reader(), conn.Writer()
	n := r.Len()
	if n == 0 {
		return nil
	}
	buf, err := r.Next(n)
	if err != nil {
		return err
	}
	if _, err := w.WriteBinary(buf); err != nil {
		return err
	}
	err = w.Flush()
	_ = r.Release() // only frees consumed buffer nodes; cannot fail usefully
	return err
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "pollers")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	if err := netpoll.Configure(netpoll.Config{PollerNum: *loops}); err != nil {
		log.Fatalf("netpoll: %v", err)
	}
	ln, err := netpoll.CreateListener("tcp", *addr)
	if err != nil {
		log.Fatalf("netpoll: %v", err)
	}
	loop, err := netpoll.NewEventLoop(echo)
	if err != nil {
		log.Fatalf("netpoll: %v", err)
	}
	log.Fatal(loop.Serve(ln))
}
