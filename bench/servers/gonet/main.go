// Command gonet is the Go standard library echo peer for the side-by-side
// benchmarks: it echoes every byte back and does nothing else.
//
// One goroutine per connection, blocking Read and Write on a net.Conn; Go's
// runtime netpoller (one epoll set for the whole process) parks and wakes the
// goroutines. There is no event-loop count to set, so -loops is only a hint:
// it sets GOMAXPROCS, the number of threads running Go code at once.
//
// Why not io.Copy(c, c), the net package's own example: on Linux
// TCPConn.ReadFrom turns it into splice(2) through a pipe, and a goroutine
// blocked waiting for input keeps its pipe (two descriptors), so 19 000 idle
// connections would need 57 000 descriptors and fail against a 20 000 limit.
// A plain read/write loop with one 4 KiB buffer (bufio's default size) per
// connection is the other common form and costs one read and one write per
// burst, as the event-loop servers do (peer.Echo, shared with gonet-tls).
package main

import "github.com/tcpreactor/reactor/bench/internal/peer"

func main() {
	peer.Accept(peer.Listen("Go's net"), peer.Echo)
}
