// Command gnet is the gnet v2 echo peer for the side-by-side benchmarks: it
// echoes every byte back and does nothing else.
//
// It is written as gnet's own echo example is: OnTraffic takes everything
// buffered with Next(-1) and writes it back; gnet copies it into the
// connection's outbound buffer when the socket cannot take it all at once.
// Multicore is off when -loops is 1 (one event loop, gnet's default) and on
// otherwise, with WithNumEventLoop(-loops); all other options are gnet's
// defaults (TCP_NODELAY on, no SO_REUSEPORT: one acceptor feeding the loops).
package main

import (
	"flag"
	"log"

	"github.com/panjf2000/gnet/v2"
)

type echoServer struct {
	gnet.BuiltinEventEngine
}

// OnTraffic runs on the connection's event loop; the slice from Next is only
// valid until it returns, and Write copies what the socket does not take.
func (*echoServer) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Next(-1)
	if _, err := c.Write(buf); err != nil {
		return gnet.Close
	}
	return gnet.None
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "event loops")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	err := gnet.Run(&echoServer{}, "tcp://"+*addr,
		gnet.WithMulticore(*loops > 1),
		gnet.WithNumEventLoop(*loops))
	log.Fatal(err)
}
