package reactor_test

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// The tests in the sim_*_test.go files use only the public API: they are
// what a user of Sim can write.

const simAddr = "127.0.0.1:7000"

// simServe creates a server for h over s at simAddr (one loop that accepts
// and serves, and a silent logger, unless opts say otherwise), starts it,
// and stops it when the test ends, checking that the stop went well (a
// second stop after an explicit one returns the same result).
func simServe(t *testing.T, s *reactor.Sim, h reactor.Handler, opts ...reactor.Option) (*reactor.Server, func() error) {
	t.Helper()
	base := []reactor.Option{
		reactor.WithDispatcher(s.Dispatcher),
		reactor.WithLoops(0),
		reactor.WithLogger(slog.New(slog.DiscardHandler)),
	}
	srv, err := reactor.NewServer(simAddr, h, append(base, opts...)...)
	require.NoError(t, err)
	stop := s.Start(srv)
	t.Cleanup(func() { assert.NoError(t, stop()) })
	return srv, stop
}

func simDial(t *testing.T, s *reactor.Sim) *reactor.SimConn {
	t.Helper()
	c, err := s.Dial(simAddr)
	require.NoError(t, err)
	return c
}

// simEcho echoes every byte.
func simEcho() reactor.HandlerFuncs {
	return reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
		_, _ = c.Write(in.Next(in.Len()))
	}}
}

// traceLines returns the lines of s's trace that contain any of the
// substrings in match (all lines if none), without their sequence numbers,
// so that a test can compare a sequence of events with what it expects
// without counting the events in between.
func traceLines(s *reactor.Sim, match ...string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(s.Trace(), "\n"), "\n") {
		_, rest, _ := strings.Cut(line, " ")
		keep := len(match) == 0
		for _, m := range match {
			keep = keep || strings.Contains(rest, m)
		}
		if keep {
			out = append(out, rest)
		}
	}
	return out
}

// connTracker records each connection's callbacks, for tests to check from
// the test goroutine between driver calls. Callbacks run on loop
// goroutines, one at a time, but on several goroutines: mu makes that
// visible to the race detector as what it is.
type connTracker struct {
	mu     sync.Mutex
	conns  []*reactor.Conn // in OnOpen order
	closed map[*reactor.Conn]error
	bad    []string // violations of the Handler contract
}

func newConnTracker() *connTracker {
	return &connTracker{closed: map[*reactor.Conn]error{}}
}

func (tr *connTracker) open(c *reactor.Conn) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, x := range tr.conns {
		if x == c {
			tr.bad = append(tr.bad, "OnOpen twice for "+c.RemoteAddr().String())
		}
	}
	tr.conns = append(tr.conns, c)
}

func (tr *connTracker) check(c *reactor.Conn, what string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if _, ok := tr.closed[c]; ok {
		tr.bad = append(tr.bad, what+" after OnClose for "+c.RemoteAddr().String())
	}
	for _, x := range tr.conns {
		if x == c {
			return
		}
	}
	tr.bad = append(tr.bad, what+" before OnOpen for "+c.RemoteAddr().String())
}

func (tr *connTracker) close(c *reactor.Conn, err error) {
	tr.check(c, "OnClose")
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.closed[c] = err
}

// closeErr returns the error OnClose gave the connection from client
// address from, and whether OnClose ran.
func (tr *connTracker) closeErr(from net.Addr) (error, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, c := range tr.conns {
		if c.RemoteAddr().String() == from.String() {
			err, ok := tr.closed[c]
			return err, ok
		}
	}
	return nil, false
}

// handler wraps inner with the tracking.
func (tr *connTracker) handler(inner reactor.HandlerFuncs) reactor.HandlerFuncs {
	return reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			tr.open(c)
			inner.OnOpen(c)
		},
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			tr.check(c, "OnMessage")
			inner.OnMessage(c, in)
		},
		WriteComplete: func(c *reactor.Conn) {
			tr.check(c, "OnWriteComplete")
			inner.OnWriteComplete(c)
		},
		Close: func(c *reactor.Conn, err error) {
			tr.close(c, err)
			inner.OnClose(c, err)
		},
	}
}

// verifyPairs checks that every connection opened was closed exactly once
// and that no callback broke the contract.
func (tr *connTracker) verifyPairs(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	assert.Empty(t, tr.bad)
	assert.Len(t, tr.closed, len(tr.conns), "every OnOpen has its OnClose")
}

func TestSimClientReadWriteAndEnds(t *testing.T) {
	s := reactor.NewSim(1)
	simServe(t, s, simEcho())
	c := simDial(t, s)
	assert.Equal(t, "c1", c.String())
	assert.Equal(t, 1, c.ID())
	assert.Equal(t, -1, c.ServerFD(), "not accepted before the simulation runs")

	n, err := c.WriteString("ping")
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	buf := make([]byte, 8)
	_, err = c.Read(buf)
	assert.ErrorIs(t, err, syscall.EAGAIN, "nothing until the simulation runs")
	s.RunUntilIdle()
	assert.Positive(t, c.ServerFD())
	assert.Equal(t, 4, c.Buffered())
	n, err = c.Read(buf[:2])
	require.NoError(t, err)
	assert.Equal(t, "pi", string(buf[:n]))
	assert.Equal(t, "ng", string(c.ReadAll()))
	assert.Nil(t, c.ReadAll())

	require.NoError(t, c.CloseWrite())
	assert.NoError(t, c.CloseWrite(), "repeated")
	_, err = c.WriteString("x")
	assert.ErrorIs(t, err, syscall.EPIPE)
	assert.False(t, c.EOF())
	s.RunUntilIdle()
	assert.True(t, c.EOF(), "the server closed after the client's FIN")
	assert.False(t, c.WasReset())
	_, err = c.Read(buf)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, -1, c.ServerFD())
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.Close(), net.ErrClosed)
	_, err = c.Read(buf)
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestSimDialAddresses(t *testing.T) {
	s := reactor.NewSim(1)
	var remote net.Addr
	h := reactor.HandlerFuncs{Open: func(c *reactor.Conn) { remote = c.RemoteAddr() }}
	simServe(t, s, h)
	c, err := s.DialFrom("198.51.100.7:5555", simAddr)
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, "198.51.100.7:5555", c.LocalAddr().String())
	assert.Equal(t, simAddr, c.RemoteAddr().String())
	assert.Equal(t, "198.51.100.7:5555", remote.String(), "what the handler sees")

	c2 := simDial(t, s)
	assert.Equal(t, "192.0.2.1:40000", c2.LocalAddr().String(), "the default client address")

	_, err = s.Dial("127.0.0.1:1")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "nothing listens there")
	_, err = s.Dial("example.com:80")
	assert.Error(t, err, "no DNS")
}

func TestSimOptions(t *testing.T) {
	s := reactor.NewSim(42, reactor.SimReceiveWindow(100), reactor.SimSendBuffer(50), reactor.SimTrace(false), nil)
	assert.Equal(t, int64(42), s.Seed())
	h := reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
		in.Discard(in.Len())
		_, _ = c.Write(make([]byte, 250))
	}}
	simServe(t, s, h)
	c := simDial(t, s)
	_, err := c.Write(make([]byte, 150))
	require.NoError(t, err)
	assert.Equal(t, 50, c.Pending(), "the server's window holds 100 bytes")
	s.RunUntilIdle()
	assert.Zero(t, c.Pending(), "the server read, making room for the rest")
	assert.Equal(t, 100, c.Buffered(), "the client's window holds 100 bytes")
	assert.Equal(t, 50, c.InFlight(), "the server's send buffer 50 more")
	assert.Empty(t, s.Trace(), "trace off")

	s.SetTrace(true)
	s.Tracef("phase %d", 2)
	assert.Len(t, c.ReadAll(), 100)
	s.RunUntilIdle()
	assert.Equal(t, []string{
		"0s note phase 2",
		"0s read c1 n=100",
		"0s turn p1 [5:W]",
		"0s write fd=5 n=100",
	}, traceLines(s))
	c.SetReceiveWindow(1000) // take the rest, so the shutdown can flush
	s.RunUntilIdle()
	assert.Equal(t, 400, len(c.ReadAll()), "two messages (100 and 50 bytes) got 250 bytes each; 100 were read")
}

func TestSimAdvanceMovesOnlyTheVirtualClock(t *testing.T) {
	s := reactor.NewSim(1)
	fired := make(chan time.Duration, 1)
	h := reactor.HandlerFuncs{Open: func(c *reactor.Conn) {
		l := c.Loop()
		l.AfterFunc(1500*time.Millisecond, func() { fired <- l.Now() })
	}}
	simServe(t, s, h)
	simDial(t, s)
	s.RunUntilIdle()
	start := time.Now()
	s.Advance(time.Second)
	assert.Equal(t, time.Second, s.Now())
	assert.Empty(t, fired)
	s.Advance(time.Hour)
	assert.Equal(t, time.Second+time.Hour, s.Now())
	assert.Equal(t, 1500*time.Millisecond, <-fired, "at exactly its virtual deadline")
	assert.Less(t, time.Since(start), time.Minute, "an hour of virtual time is not waited for")
	assert.Contains(t, s.Trace(), "1.5s clock")
}

func TestSimFaults(t *testing.T) {
	assert.Equal(t, "read", reactor.FaultRead.String())
	assert.Equal(t, "write", reactor.FaultWrite.String())
	assert.Equal(t, "accept", reactor.FaultAccept.String())
	assert.Equal(t, "shutdown", reactor.FaultShutdown.String())
	assert.Equal(t, "close", reactor.FaultClose.String())
	assert.Equal(t, "FaultOp(9)", reactor.FaultOp(9).String())

	s := reactor.NewSim(1)
	tr := newConnTracker()
	simServe(t, s, tr.handler(simEcho()))
	c1, c2 := simDial(t, s), simDial(t, s)

	again := s.Inject(reactor.Fault{Op: reactor.FaultRead, Err: syscall.EAGAIN, Times: 2})
	reset := s.Inject(reactor.Fault{Op: reactor.FaultRead, Conn: c2, Err: syscall.ECONNRESET})
	_, err := c1.WriteString("one")
	require.NoError(t, err)
	_, err = c2.WriteString("two")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, 2, s.FaultHits(again), "spent after two")
	assert.Equal(t, "one", string(c1.ReadAll()), "EAGAIN is transient: the server read again")
	assert.Equal(t, 1, s.FaultHits(reset))
	assert.True(t, c2.WasReset())
	err, closed := tr.closeErr(c2.LocalAddr())
	require.True(t, closed)
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	assert.Contains(t, s.Trace(), "fault fd=6 #2 ECONNRESET read")

	short := s.Inject(reactor.Fault{Op: reactor.FaultWrite, Short: true})
	_, err = c1.WriteString("0123456789")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, "0123456789", string(c1.ReadAll()), "short writes: all delivered, in order")
	assert.GreaterOrEqual(t, s.FaultHits(short), 1)
	s.RemoveFault(short)
	hits := s.FaultHits(short)
	_, err = c1.WriteString("abc")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, "abc", string(c1.ReadAll()))
	assert.Equal(t, hits, s.FaultHits(short), "removed: fires no more")

	s.Inject(reactor.Fault{Op: reactor.FaultRead, Err: syscall.EINTR})
	s.ClearFaults()
	_, err = c1.WriteString("z")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, "z", string(c1.ReadAll()))

	other := reactor.NewSim(1)
	simServe(t, other, simEcho())
	foreign := simDial(t, other)
	for _, f := range []reactor.Fault{
		{Err: syscall.EAGAIN},
		{Op: reactor.FaultRead},
		{Op: reactor.FaultRead, Err: syscall.EAGAIN, Short: true},
		{Op: reactor.FaultAccept, Short: true},
		{Op: reactor.FaultRead, Err: syscall.EAGAIN, Times: -1},
		{Op: reactor.FaultRead, Err: syscall.EAGAIN, Probability: 2},
		{Op: reactor.FaultRead, Err: syscall.EAGAIN, Conn: foreign},
	} {
		assert.Panics(t, func() { s.Inject(f) }, "%+v", f)
	}
	assert.Panics(t, func() { s.Inject(reactor.Fault{Op: 0, Err: syscall.EAGAIN}) })
}

func TestSimStart(t *testing.T) {
	t.Run("foreign server", func(t *testing.T) {
		srv, err := reactor.NewServer("127.0.0.1:0", simEcho(), reactor.WithLoops(0))
		require.NoError(t, err)
		defer srv.Close()
		assert.PanicsWithValue(t,
			"reactor: Sim.Start: the server does not run over this Sim; create it with WithDispatcher(s.Dispatcher)",
			func() { reactor.NewSim(1).Start(srv) })
		other := reactor.NewSim(2)
		srv2, err := reactor.NewServer(simAddr, simEcho(), reactor.WithDispatcher(other.Dispatcher), reactor.WithLoops(0))
		require.NoError(t, err)
		defer srv2.Close()
		assert.Panics(t, func() { reactor.NewSim(1).Start(srv2) })
	})
	t.Run("stop at once", func(t *testing.T) {
		// Start leaves the loops parked, so even a stop before anything
		// else gives the same trace on every run.
		var traces []string
		for range 3 {
			s := reactor.NewSim(7)
			srv, err := reactor.NewServer(simAddr, simEcho(), reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(3))
			require.NoError(t, err)
			stop := s.Start(srv)
			require.NoError(t, stop())
			assert.NoError(t, stop(), "repeated: the same result")
			assert.Empty(t, s.OpenFDs())
			traces = append(traces, s.Trace())
		}
		assert.Equal(t, traces[0], traces[1])
		assert.Equal(t, traces[0], traces[2])
		assert.Contains(t, traces[0], "turn p1 [] wake", "the loops ran their shutdown")
	})
	t.Run("already closed", func(t *testing.T) {
		s := reactor.NewSim(1)
		srv, err := reactor.NewServer(simAddr, simEcho(), reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(1))
		require.NoError(t, err)
		require.NoError(t, srv.Close())
		stop := s.Start(srv)
		assert.NoError(t, stop())
	})
	t.Run("shutdown flushes", func(t *testing.T) {
		s := reactor.NewSim(1, reactor.SimSendBuffer(-1)) // so that "ye" waits in the server, not in flight
		tr := newConnTracker()
		h := reactor.HandlerFuncs{Open: func(c *reactor.Conn) { _, _ = c.Write([]byte("bye")) }}
		_, stop := simServe(t, s, tr.handler(h), reactor.WithLoops(2))
		c := simDial(t, s)
		c.SetReceiveWindow(1)
		s.RunUntilIdle()
		assert.Equal(t, "b", string(c.ReadAll()))
		c.SetReceiveWindow(100)
		require.NoError(t, stop())
		assert.Equal(t, "ye", string(c.ReadAll()), "flushed before the close")
		assert.True(t, c.EOF())
		err, closed := tr.closeErr(c.LocalAddr())
		assert.True(t, closed)
		assert.NoError(t, err)
		assert.Empty(t, s.OpenFDs(), "everything the server opened is closed")
	})
	t.Run("stalled shutdown", func(t *testing.T) {
		s := reactor.NewSim(1)
		tr := newConnTracker()
		// More than the server's send buffer takes (16 KiB).
		h := reactor.HandlerFuncs{Open: func(c *reactor.Conn) { _, _ = c.Write(make([]byte, 64<<10)) }}
		srv, err := reactor.NewServer(simAddr, tr.handler(h), reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(2),
			reactor.WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		stop := s.Start(srv)
		c := simDial(t, s)
		c.SetReceiveWindow(0) // never reads: the output cannot be flushed
		s.RunUntilIdle()
		err = stop()
		assert.EqualError(t, err, "reactor: Sim: graceful shutdown stalled with 1 connections open "+
			"(output waiting for a client that does not read?); closed them")
		assert.Equal(t, err, stop(), "repeated: the same result")
		err, closed := tr.closeErr(c.LocalAddr())
		assert.True(t, closed)
		assert.ErrorIs(t, err, reactor.ErrServerClosed, "closed with its output unflushed")
		assert.Empty(t, s.OpenFDs())
		tr.verifyPairs(t)
	})
}

func TestSimFDLimit(t *testing.T) {
	s := reactor.NewSim(1)
	tr := newConnTracker()
	simServe(t, s, tr.handler(simEcho()))
	require.Equal(t, []int{3, 4}, s.OpenFDs(), "the loop's dispatcher and the listener")
	s.SetFDLimit(len(s.OpenFDs()) + 1)
	c1, c2 := simDial(t, s), simDial(t, s)
	s.RunUntilIdle()
	assert.Positive(t, c1.ServerFD())
	assert.Equal(t, -1, c2.ServerFD(), "EMFILE: still in the accept queue")
	assert.Contains(t, s.Trace(), "accept fd=4 EMFILE")
	s.SetFDLimit(0)
	s.Advance(time.Second) // the acceptor's back-off
	assert.Positive(t, c2.ServerFD())
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())
	s.RunUntilIdle()
	assert.Equal(t, []int{3, 4}, s.OpenFDs())
	tr.verifyPairs(t)
}

// TestSimReadmeKV is the test the README shows, kept here so that it stays
// true.
func TestSimReadmeKV(t *testing.T) {
	s := reactor.NewSim(1) // the seed
	srv, err := reactor.NewServer("127.0.0.1:6379", kvHandler(),
		reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(0))
	require.NoError(t, err)
	stop := s.Start(srv) // srv.Serve on a goroutine; loops wait for their turn
	defer stop()

	c, _ := s.Dial("127.0.0.1:6379")
	// The server's first read on c comes up short: a line arrives in pieces.
	s.Inject(reactor.Fault{Op: reactor.FaultRead, Conn: c, Short: true, Times: 1})
	c.WriteString("SET lang go\r\nGET lang\r\n")
	s.RunUntilIdle() // the server accepts, reads, handles, replies
	assert.Equal(t, "OK\r\ngo\r\n", string(c.ReadAll()))
	require.NoError(t, stop()) // graceful shutdown; Serve's result
	assert.Contains(t, s.Trace(), "fault fd=5 #1 read short")
}

// countingDispatcher wraps a Dispatcher, counting Waits, as a user
// collecting metrics would.
type countingDispatcher struct {
	reactor.Dispatcher
	waits int
}

func (d *countingDispatcher) Wait(events []reactor.Event, timeout time.Duration) (int, error) {
	d.waits++
	return d.Dispatcher.Wait(events, timeout)
}

// unwrappingDispatcher is countingDispatcher done right: it says what it
// wraps.
type unwrappingDispatcher struct{ countingDispatcher }

func (d *unwrappingDispatcher) Unwrap() reactor.Dispatcher { return d.Dispatcher }

// A wrapper of a Sim's Dispatcher must not silently send the loop to the
// real kernel: without Unwrap it is a clear error, with it the server runs
// over the simulation.
func TestSimWrappedDispatcher(t *testing.T) {
	t.Run("without Unwrap: an error", func(t *testing.T) {
		s := reactor.NewSim(1)
		wrap := func() (reactor.Dispatcher, error) {
			d, err := s.Dispatcher()
			return &countingDispatcher{Dispatcher: d}, err
		}
		// (Port 0: the loop makes real system calls, so this one binds a
		// real socket before the error.)
		_, err := reactor.NewServer("127.0.0.1:0", echo(), reactor.WithDispatcher(wrap), reactor.WithLoops(0))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Unwrap() Dispatcher")
	})
	t.Run("with Unwrap: over the simulation", func(t *testing.T) {
		s := reactor.NewSim(1)
		var wrapped *unwrappingDispatcher
		wrap := func() (reactor.Dispatcher, error) {
			d, err := s.Dispatcher()
			wrapped = &unwrappingDispatcher{countingDispatcher{Dispatcher: d}}
			return wrapped, err
		}
		srv, err := reactor.NewServer("127.0.0.1:7", echo(), reactor.WithDispatcher(wrap), reactor.WithLoops(0))
		require.NoError(t, err)
		stop := s.Start(srv)
		c, err := s.Dial("127.0.0.1:7")
		require.NoError(t, err)
		_, _ = c.Write([]byte("hello"))
		s.RunUntilIdle()
		assert.Equal(t, "hello", string(c.ReadAll()))
		require.NoError(t, c.Close())
		require.NoError(t, stop())
		assert.Positive(t, wrapped.waits)
	})
}
