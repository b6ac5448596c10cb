// Command gonet-tls is the Go standard library TLS echo peer for the
// side-by-side benchmarks: the gonet server (one goroutine per connection,
// a read/write loop with a 4 KiB buffer) on a crypto/tls listener
// (tls.NewListener) with a self-signed ECDSA P-256 certificate made at
// start. The handshake runs in the connection's goroutine on its first
// Read, as in net/http. -loops sets GOMAXPROCS.
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"net"
	"runtime"

	"github.com/tcpreactor/reactor/bench/internal/peer"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "GOMAXPROCS (Go's net has no event-loop count)")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	runtime.GOMAXPROCS(*loops)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	peer.Accept(tls.NewListener(ln, peer.TLSConfig()), peer.Echo)
}
