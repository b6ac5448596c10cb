// This file holds the loop pool (the C design's thread_pool and
// event_loop_thread): the load balancer that picks the loop for a new
// connection (a Server's runs on the main loop's goroutine only), and the
// goroutine identity that tells whether a call comes from a loop. The loop
// goroutines themselves are group.runLoop.

package reactor

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
)

// LoadBalancer chooses the event loop that serves a new connection.
type LoadBalancer int

const (
	// RoundRobin hands connections to the loops in turn. The default.
	RoundRobin LoadBalancer = iota
	// LeastConns picks the loop with the fewest open connections (ties go
	// to the lowest-numbered loop).
	LeastConns
	// SourceHash picks the loop by a hash of the client's IP address, so
	// every connection from one client lands on the same loop. Clients of a
	// Unix domain socket have no address; they are served round-robin.
	SourceHash
)

// String returns the balancer's name.
func (lb LoadBalancer) String() string {
	switch lb {
	case RoundRobin:
		return "round-robin"
	case LeastConns:
		return "least-conns"
	case SourceHash:
		return "source-hash"
	}
	return fmt.Sprintf("LoadBalancer(%d)", int(lb))
}

// pick chooses the loop for a new connection. acceptLoop goroutine.
func (s *Server) pick(peer netip.AddrPort) *EventLoop {
	switch s.cfg.balancer {
	case LeastConns:
		return leastConns(s.loops)
	case SourceHash:
		if !peer.IsValid() {
			break // a Unix socket's client has no address: round-robin
		}
		// FNV-1a over the 16-byte form of the IP (IPv4 as ::ffff:a.b.c.d),
		// written out so that it allocates nothing.
		h := uint32(2166136261)
		for _, b := range peer.Addr().As16() {
			h = (h ^ uint32(b)) * 16777619
		}
		return s.loops[h%uint32(len(s.loops))]
	}
	l := s.loops[s.rr%len(s.loops)]
	s.rr++
	return l
}

// leastConns returns the loop with the fewest connections (ties go to the
// first). The counts are read without a lock: a concurrent change can only
// make the choice one connection less balanced.
func leastConns(loops []*EventLoop) *EventLoop {
	best := loops[0]
	for _, l := range loops[1:] {
		if l.numConns.Load() < best.numConns.Load() {
			best = l
		}
	}
	return best
}

// goroutineID returns the calling goroutine's number, as the runtime prints
// it in a stack trace ("goroutine 42 [running]:"). Go gives goroutines no
// identity on purpose; the server needs one for a single question, whether
// Shutdown or Close was called from one of its own loops (which they could
// not wait for), and a stack header answers it without any cost elsewhere.
// It returns 0 if the header cannot be read.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b, ok := bytes.CutPrefix(b, []byte("goroutine "))
	if !ok {
		return 0
	}
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0
	}
	return id
}
