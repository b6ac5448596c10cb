// Command gonet-tls is the Go standard library TLS echo peer for the
// side-by-side benchmarks: the gonet server (one goroutine per connection,
// a read/write loop with a 4 KiB buffer) on a crypto/tls listener
// (tls.NewListener) with a self-signed ECDSA P-256 certificate made at
// start. The handshake runs in the connection's goroutine on its first
// Read, as in net/http. -loops sets GOMAXPROCS.
package main

import (
	"crypto/tls"

	"github.com/tcpreactor/reactor/bench/internal/peer"
)

func main() {
	peer.Accept(tls.NewListener(peer.Listen("Go's net"), peer.TLSConfig()), peer.Echo)
}
