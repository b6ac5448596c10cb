// This file holds the server's counters: Stats, a snapshot any goroutine may
// take, and the per-loop counters behind it. Each loop counter has a single
// writer, its loop goroutine, which publishes it with an atomic store (a
// plain MOV on amd64, no locked instruction); Stats sums them on read. So
// counting costs the hot path no shared cache line and no lock.

package reactor

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
)

// Stats is a snapshot of a server's or a client's counters, from
// Server.Stats or Client.Stats.
type Stats struct {
	Open         int64 // connections open now
	Accepted     int64 // connections accepted, including the rejected ones
	Rejected     int64 // connections closed at once by WithMaxConns
	AcceptErrors int64 // accept(2) failures other than descriptor exhaustion
	FDExhausted  int64 // accept(2) failures with EMFILE or ENFILE
	Dialed       int64 // connections established by Client.Dial and EventLoop.Dial
	DialErrors   int64 // dials that failed (refused, timed out, cancelled, ...)
	Closed       CloseStats
	BytesRead    int64
	BytesWritten int64
	// LingerExpired counts lingering closes that ended by the linger
	// timeout rather than the peer's EOF (see WithLingerTimeout).
	LingerExpired int64
	TLS           TLSStats
	Proxy         ProxyStats
	Loops         []LoopStats
}

// TLSStats counts TLS handshakes (see WithTLS). A handshake that fails
// never opens its connection: it appears here and nowhere else (not in
// Closed).
type TLSStats struct {
	Handshakes int64 // completed: OnOpen ran (or was due) for the connection
	Resumed    int64 // of Handshakes, those that resumed a session
	Failed     int64 // ended without completing: errors, timeouts, evictions, stops
	TimedOut   int64 // of Failed, those ended by WithTLSHandshakeTimeout
	Evicted    int64 // of Failed, those dropped for a newer one (WithTLSMaxHandshakes)
	InProgress int64 // handshakes that have begun and not ended, now
}

// ProxyStats counts PROXY protocol headers (see WithProxyProtocol). A
// connection whose header fails never opens: it appears here and nowhere
// else (not in Closed).
type ProxyStats struct {
	Headers  int64 // complete and valid: the connection went on
	Local    int64 // of Headers, those that gave no addresses (LOCAL, UNKNOWN)
	Failed   int64 // connections dropped before their header was complete: malformed, cut short, late, stopped
	TimedOut int64 // of Failed, those ended by WithProxyHeaderTimeout
}

// CloseStats counts closed connections by why they ended.
type CloseStats struct {
	Peer          int64 // the peer closed (EOF) and we finished in order
	Local         int64 // Close or CloseWrite on our side, then an orderly end
	Shutdown      int64 // closed by Shutdown or Close (of the Server or Client)
	Reset         int64 // ECONNRESET
	IdleTimeout   int64 // ErrIdleTimeout
	WriteTimeout  int64 // ErrWriteTimeout
	InputTooLarge int64 // ErrInputTooLarge
	Panic         int64 // ErrHandlerPanic
	Error         int64 // any other error (EPIPE, ETIMEDOUT, ...)
}

// LoopStats describes one event loop.
type LoopStats struct {
	Name         string
	Conns        int64 // connections assigned to the loop and still open
	Tasks        int   // tasks queued by Submit and not yet run
	BytesRead    int64
	BytesWritten int64
}

// Close reasons, indexes into loopStats.closed.
const (
	closePeer = iota
	closeLocal
	closeShutdown
	closeReset
	closeIdle
	closeWriteTimeout
	closeInputTooLarge
	closePanic
	closeError
	numCloseReasons
)

// loopStats are one loop's counters; the loop goroutine is the only writer.
type loopStats struct {
	bytesRead     atomic.Int64
	bytesWritten  atomic.Int64
	lingerExpired atomic.Int64
	closed        [numCloseReasons]atomic.Int64

	tlsDone       atomic.Int64
	tlsResumed    atomic.Int64
	tlsFailed     atomic.Int64
	tlsTimedOut   atomic.Int64
	tlsEvicted    atomic.Int64
	tlsInProgress atomic.Int64 // mirrors EventLoop.hsCount

	proxyHeaders  atomic.Int64
	proxyLocal    atomic.Int64
	proxyFailed   atomic.Int64
	proxyTimedOut atomic.Int64
}

// bump adds n to a counter that only the calling goroutine writes: a load and
// a store, not a locked read-modify-write.
func bump(c *atomic.Int64, n int64) { c.Store(c.Load() + n) }

func (l *EventLoop) bytesRead(n int)    { bump(&l.stats.bytesRead, int64(n)) }
func (l *EventLoop) bytesWritten(n int) { bump(&l.stats.bytesWritten, int64(n)) }

// countClose records why a connection ended.
func (l *EventLoop) countClose(c *Conn, err error) {
	bump(&l.stats.closed[closeReason(c, err)], 1)
}

func closeReason(c *Conn, err error) int {
	switch {
	case err == nil && c.drained:
		return closeShutdown
	case err == nil && c.eof && !c.shutDone:
		// The peer's FIN ended it; after our own CloseWrite, the FIN
		// only answers ours, and the close counts as local.
		return closePeer
	case err == nil:
		return closeLocal
	case errors.Is(err, ErrServerClosed), errors.Is(err, ErrClientClosed):
		return closeShutdown
	case errors.Is(err, syscall.ECONNRESET):
		return closeReset
	case errors.Is(err, ErrIdleTimeout):
		return closeIdle
	case errors.Is(err, ErrWriteTimeout):
		return closeWriteTimeout
	case errors.Is(err, ErrInputTooLarge):
		return closeInputTooLarge
	case errors.Is(err, ErrHandlerPanic):
		return closePanic
	}
	return closeError
}

// Stats returns a snapshot of the server's counters. Safe from any
// goroutine; it takes each loop's task-queue lock briefly and nothing else.
func (s *Server) Stats() Stats { return s.snapshot() }

// snapshot is Stats for a Server or a Client.
func (g *group) snapshot() Stats {
	st := Stats{
		Open:         g.stats.open.Load(),
		Accepted:     g.stats.accepted.Load(),
		Rejected:     g.stats.rejected.Load(),
		AcceptErrors: g.stats.acceptErrors.Load(),
		FDExhausted:  g.stats.fdExhausted.Load(),
		Dialed:       g.stats.dialed.Load(),
		DialErrors:   g.stats.dialErrors.Load(),
		Loops:        make([]LoopStats, 0, len(g.loops)),
	}
	var closed [numCloseReasons]int64
	for _, l := range g.allLoops {
		ls := LoopStats{
			Name:         l.name,
			Conns:        l.numConns.Load(),
			BytesRead:    l.stats.bytesRead.Load(),
			BytesWritten: l.stats.bytesWritten.Load(),
		}
		l.mu.Lock()
		ls.Tasks = len(l.tasks)
		l.mu.Unlock()
		st.BytesRead += ls.BytesRead
		st.BytesWritten += ls.BytesWritten
		st.LingerExpired += l.stats.lingerExpired.Load()
		st.TLS.Handshakes += l.stats.tlsDone.Load()
		st.TLS.Resumed += l.stats.tlsResumed.Load()
		st.TLS.Failed += l.stats.tlsFailed.Load()
		st.TLS.TimedOut += l.stats.tlsTimedOut.Load()
		st.TLS.Evicted += l.stats.tlsEvicted.Load()
		st.TLS.InProgress += l.stats.tlsInProgress.Load()
		st.Proxy.Headers += l.stats.proxyHeaders.Load()
		st.Proxy.Local += l.stats.proxyLocal.Load()
		st.Proxy.Failed += l.stats.proxyFailed.Load()
		st.Proxy.TimedOut += l.stats.proxyTimedOut.Load()
		for i := range closed {
			closed[i] += l.stats.closed[i].Load()
		}
		st.Loops = append(st.Loops, ls)
	}
	st.Closed = CloseStats{
		Peer:          closed[closePeer],
		Local:         closed[closeLocal],
		Shutdown:      closed[closeShutdown],
		Reset:         closed[closeReset],
		IdleTimeout:   closed[closeIdle],
		WriteTimeout:  closed[closeWriteTimeout],
		InputTooLarge: closed[closeInputTooLarge],
		Panic:         closed[closePanic],
		Error:         closed[closeError],
	}
	return st
}

// ExpvarStats returns a value that expvar can publish, without this package
// importing expvar (whose init registers an HTTP handler on the default
// mux): expvar.Publish("reactor", srv.ExpvarStats()). Its String method
// renders a fresh Stats snapshot as JSON each time it is read.
func (s *Server) ExpvarStats() fmt.Stringer { return statsVar{s} }

type statsVar struct{ s *Server }

func (v statsVar) String() string {
	b, err := json.Marshal(v.s.Stats())
	if err != nil {
		return fmt.Sprintf("%q", err.Error()) // Stats has only plain fields: cannot happen
	}
	return string(b)
}
