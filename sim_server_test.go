package reactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/internal/sim"
)

func TestServerOverSimSmoke(t *testing.T) {
	s := NewSim(1)
	h := HandlerFuncs{Message: func(c *Conn, in *Buffer) { _, _ = c.Write(in.Next(in.Len())) }}
	srv, err := NewServer("127.0.0.1:80", h, WithDispatcher(s.Dispatcher), WithLoops(2))
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	c, err := s.k.Dial("127.0.0.1:80")
	require.NoError(t, err)
	_, _ = c.Write([]byte("hello"))
	s.k.RunUntilIdle()
	assert.Equal(t, "hello", string(c.ReadAll()))
	require.NoError(t, srv.Shutdown(context.Background()))
	require.ErrorIs(t, <-errc, ErrServerClosed)
}

// simLifecycle is the lifecycle storm of TestLifecycleStorm, over the
// simulation: connections closed by the client, from OnOpen, from OnMessage,
// from another loop's callback (the cross-goroutine path, made deterministic),
// by a peer reset, and by the server's shutdown. It returns the callback
// record and the trace, for comparing runs.
func simLifecycle(t *testing.T, seed int64) (events []string, trace string) {
	const perKind = 8
	s := NewSim(seed)
	var (
		opens, closes   int
		writeAfterClose int
		resets          int
		victims         []*Conn // closed from another connection's callback
	)
	h := HandlerFuncs{
		Open: func(c *Conn) {
			opens++
			if c.RemoteAddr().String() != "192.0.2.1:"+fmt.Sprint(c.RemoteAddr().(*net.TCPAddr).Port) {
				t.Errorf("remote address %v", c.RemoteAddr())
			}
		},
		Message: func(c *Conn, in *Buffer) {
			cmd := string(in.Next(in.Len()))
			events = append(events, fmt.Sprintf("msg %s", cmd))
			switch cmd {
			case "close-in-open":
			case "close-in-message":
				_, _ = c.Write([]byte("bye"))
				_ = c.Close()
			case "victim":
				victims = append(victims, c) // owned by this loop; closed by another
			case "killer":
				// Close every victim from this connection's callback, which
				// may run on another loop than theirs.
				for _, v := range victims {
					_, _ = v.Write([]byte("bye"))
					_ = v.Close()
				}
				victims = nil
				_, _ = c.Write([]byte("done"))
			default:
				_, _ = c.Write([]byte(cmd))
			}
		},
		Close: func(c *Conn, err error) {
			closes++
			if _, werr := c.Write([]byte("x")); errors.Is(werr, ErrConnClosed) {
				writeAfterClose++
			}
			if errors.Is(err, syscall.ECONNRESET) {
				resets++
			} else if err != nil {
				t.Errorf("unexpected close error: %v", err)
			}
			events = append(events, fmt.Sprintf("close err=%v", err))
		},
	}
	// The victims list is shared by loops; the simulation runs one loop at
	// a time, so the accesses never overlap (the race detector agrees:
	// every hand-over between loops goes through the kernel's mutex).
	srv, err := NewServer("127.0.0.1:80", h, WithDispatcher(s.Dispatcher), WithLoops(3))
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()

	dial := func() *sim.Conn {
		c, err := s.k.Dial("127.0.0.1:80")
		require.NoError(t, err)
		return c
	}
	var all []*sim.Conn
	send := func(kind string) *sim.Conn {
		c := dial()
		all = append(all, c)
		_, _ = c.Write([]byte(kind))
		return c
	}
	var victimConns, idle []*sim.Conn
	for range perKind {
		send("close-in-message")
		send("echo")
		victimConns = append(victimConns, send("victim"))
		reset := send("reset-me")
		s.k.RunUntilIdle()
		assert.Equal(t, "reset-me", string(reset.ReadAll()))
		require.NoError(t, reset.Reset())
		idle = append(idle, dial())
	}
	s.k.RunUntilIdle()
	killer := send("killer")
	s.k.RunUntilIdle()
	assert.Equal(t, "done", string(killer.ReadAll()))
	for _, v := range victimConns {
		assert.Equal(t, "bye", string(v.ReadAll()))
	}
	// Client-side closes of the echo connections, then shutdown closes the
	// idle ones.
	for _, c := range all {
		c.ReadAll() // unread bytes would turn the close into a reset
		_ = c.Close()
	}
	s.k.RunUntilIdle()
	require.NoError(t, srv.Shutdown(context.Background()))
	require.ErrorIs(t, <-errc, ErrServerClosed)
	for _, c := range idle {
		_, err := c.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF, "idle connections see an orderly close at shutdown")
	}

	n := len(all) + len(idle)
	assert.Equal(t, n, opens)
	assert.Equal(t, n, closes)
	assert.Equal(t, n, writeAfterClose)
	assert.Equal(t, perKind, resets)
	return events, s.k.TraceText()
}

func TestLifecycleOverSimIsDeterministic(t *testing.T) {
	ev1, tr1 := simLifecycle(t, 42)
	ev2, tr2 := simLifecycle(t, 42)
	assert.Equal(t, ev1, ev2)
	assert.Equal(t, tr1, tr2, "the same seed must give the same trace")
	_, tr3 := simLifecycle(t, 43)
	assert.NotEqual(t, tr1, tr3, "another seed should interleave differently")
}

// TestLoopTimersOnVirtualTime checks that a loop over the simulation fires
// timers on virtual time only: nothing fires however long the test takes in
// real time, and each timer fires exactly when the clock reaches it.
func TestLoopTimersOnVirtualTime(t *testing.T) {
	s, l := runSimLoop(t, 7)
	var fired []string
	at := func(name string) func() {
		return func() { fired = append(fired, fmt.Sprintf("%s@%v", name, l.Now())) }
	}
	l.AfterFunc(3*time.Second, at("3s"))
	l.AfterFunc(time.Second, at("1s"))
	stopped := l.AfterFunc(2*time.Second, at("2s"))
	l.AfterFunc(time.Second, at("1s-second"))
	s.k.RunUntilIdle()
	assert.Empty(t, fired, "no virtual time has passed")
	require.True(t, stopped.Stop())
	s.k.Advance(999 * time.Millisecond)
	assert.Empty(t, fired)
	s.k.Advance(time.Millisecond)
	assert.Equal(t, []string{"1s@1s", "1s-second@1s"}, fired)
	s.k.Advance(5 * time.Second)
	assert.Equal(t, []string{"1s@1s", "1s-second@1s", "3s@3s"}, fired)
}

// runSimLoop runs a standalone loop over a new simulation, stepped from
// the test goroutine; the loop is stopped when the test ends.
func runSimLoop(t *testing.T, seed int64) (*Sim, *EventLoop) {
	t.Helper()
	s := NewSim(seed)
	l, err := NewEventLoop(s.Dispatcher)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- l.Run() }()
	t.Cleanup(func() {
		l.Stop()
		require.True(t, s.k.RunUntil(func() bool {
			select {
			case <-l.Done():
				return true
			default:
				return false
			}
		}, nil))
		require.NoError(t, <-errc)
	})
	return s, l
}

// TestBalancers checks where each balancer puts new connections, over the
// simulation, where the order of events is exact.
func TestBalancers(t *testing.T) {
	start := func(t *testing.T, lb LoadBalancer) (*Sim, *Server, func()) {
		s := NewSim(3)
		srv, err := NewServer("127.0.0.1:80", HandlerFuncs{}, WithDispatcher(s.Dispatcher), WithLoops(4), WithLoadBalancer(lb))
		require.NoError(t, err)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve() }()
		return s, srv, func() {
			require.NoError(t, srv.Shutdown(context.Background()))
			require.ErrorIs(t, <-errc, ErrServerClosed)
		}
	}
	conns := func(srv *Server) []int64 {
		var n []int64
		for _, l := range srv.Stats().Loops[1:] { // [0] is the main loop
			n = append(n, l.Conns)
		}
		return n
	}
	t.Run("round-robin", func(t *testing.T) {
		s, srv, stop := start(t, RoundRobin)
		defer stop()
		for range 10 {
			_, err := s.k.Dial("127.0.0.1:80")
			require.NoError(t, err)
		}
		s.k.RunUntilIdle()
		assert.Equal(t, []int64{3, 3, 2, 2}, conns(srv))
	})
	t.Run("least-conns", func(t *testing.T) {
		s, srv, stop := start(t, LeastConns)
		defer stop()
		var cs []*sim.Conn
		for range 8 {
			c, err := s.k.Dial("127.0.0.1:80")
			require.NoError(t, err)
			cs = append(cs, c)
			s.k.RunUntilIdle()
		}
		assert.Equal(t, []int64{2, 2, 2, 2}, conns(srv))
		// Empty loop 0 (its connections were the 1st and 5th), then the
		// next two connections must both go there.
		require.NoError(t, cs[0].Close())
		require.NoError(t, cs[4].Close())
		s.k.RunUntilIdle()
		assert.Equal(t, []int64{0, 2, 2, 2}, conns(srv))
		for range 2 {
			_, err := s.k.Dial("127.0.0.1:80")
			require.NoError(t, err)
			s.k.RunUntilIdle()
		}
		assert.Equal(t, []int64{2, 2, 2, 2}, conns(srv))
	})
	t.Run("source-hash", func(t *testing.T) {
		s, srv, stop := start(t, SourceHash)
		defer stop()
		// Every connection from one address lands on one loop.
		for i := range 12 {
			_, err := s.k.DialFrom("198.51.100.7:0", "127.0.0.1:80")
			require.NoError(t, err, "dial %d", i)
		}
		s.k.RunUntilIdle()
		n := conns(srv)
		busy := 0
		for _, c := range n {
			if c > 0 {
				busy++
				assert.Equal(t, int64(12), c)
			}
		}
		assert.Equal(t, 1, busy, "one source address, one loop: %v", n)
		// Many addresses spread over the loops.
		for i := range 64 {
			_, err := s.k.DialFrom(fmt.Sprintf("198.51.100.%d:0", 10+i), "127.0.0.1:80")
			require.NoError(t, err)
		}
		s.k.RunUntilIdle()
		for i, c := range conns(srv) {
			assert.Positive(t, c, "loop %d got no connection from 64 addresses", i)
		}
	})
}

// TestPanicInFlushKeepsTheRestOfTheFlushList: a handler that panics in
// OnWriteComplete ends its own connection, and the connections queued for
// flushing after it in the same iteration are still flushed.
func TestPanicInFlushKeepsTheRestOfTheFlushList(t *testing.T) {
	s := NewSim(5)
	h := HandlerFuncs{
		Message: func(c *Conn, in *Buffer) { _, _ = c.Write(in.Next(in.Len())) },
		WriteComplete: func(c *Conn) {
			if c.Context() == "bomb" {
				panic("boom in OnWriteComplete")
			}
		},
		Open: func(c *Conn) {
			if c.RemoteAddr().(*net.TCPAddr).IP.String() == "198.51.100.1" {
				c.SetContext("bomb")
			}
		},
	}
	srv, err := NewServer("127.0.0.1:80", h, WithDispatcher(s.Dispatcher), WithLoops(0),
		WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	stop := s.Start(srv)
	bomb, err := s.DialFrom("198.51.100.1:1000", "127.0.0.1:80")
	require.NoError(t, err)
	var others []*SimConn
	for i := range 5 {
		c, err := s.DialFrom(fmt.Sprintf("198.51.100.%d:1000", 2+i), "127.0.0.1:80")
		require.NoError(t, err)
		others = append(others, c)
	}
	s.RunUntilIdle()
	// All six are readable in one iteration, so all six are on one flush
	// list; the seed decides where the bomb sits in it.
	_, _ = bomb.WriteString("x")
	for _, c := range others {
		_, _ = c.WriteString("hello")
	}
	s.RunUntilIdle()
	for i, c := range others {
		assert.Equal(t, "hello", string(c.ReadAll()), "connection %d", i)
	}
	assert.True(t, bomb.EOF() || bomb.WasReset(), "the panicking connection is closed")
	assert.Equal(t, int64(1), srv.Stats().Closed.Panic)
	require.NoError(t, stop())
}
