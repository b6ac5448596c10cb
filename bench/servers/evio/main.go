// Command evio is the evio echo peer for the side-by-side benchmarks: it
// echoes every byte back and does nothing else.
//
// It is written as evio's README echo is: the Data event returns its input as
// output, and evio queues and writes it. -loops sets Events.NumLoops (evio's
// own loop count; 1 means the loop that accepts also does all I/O). Everything
// else is evio's default: no SO_REUSEPORT, random load balancing, and Nagle's
// algorithm left on, since evio does not set TCP_NODELAY.
package main

import (
	"flag"
	"log"

	"github.com/tidwall/evio"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "event loops")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	var events evio.Events
	events.NumLoops = *loops
	// in is evio's read buffer, valid until Data returns; evio copies out
	// into the connection's output queue before the next read.
	events.Data = func(c evio.Conn, in []byte) (out []byte, action evio.Action) {
		return in, evio.None
	}
	log.Fatal(evio.Serve(events, "tcp://"+*addr))
}
