package reactor_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// newSimClient starts a Client over s and closes it when the test ends.
func newSimClient(t *testing.T, s *reactor.Sim, h reactor.Handler, opts ...reactor.Option) *reactor.Client {
	t.Helper()
	all := append([]reactor.Option{reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(1),
		reactor.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	c, err := reactor.NewClient(h, all...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	return c
}

// recorder records a connection's callbacks as lines.
type recorder struct {
	lines []string
}

func (r *recorder) handler() reactor.HandlerFuncs {
	return reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) { r.lines = append(r.lines, "open "+c.RemoteAddr().String()) },
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			r.lines = append(r.lines, "message "+string(in.Next(in.Len())))
		},
		Close: func(c *reactor.Conn, err error) { r.lines = append(r.lines, fmt.Sprintf("close %v", err)) },
	}
}

func TestSimClientDial(t *testing.T) {
	run := func(seed int64) (lines []string, trace string) {
		s := reactor.NewSim(seed)
		up, err := s.Listen("127.0.0.1:6379")
		require.NoError(t, err)
		var r recorder
		cl := newSimClient(t, s, r.handler(), reactor.WithLoops(2))
		conns := make([]*reactor.Conn, 3)
		for i := range conns {
			conns[i], err = cl.Dial(context.Background(), "tcp", "127.0.0.1:6379")
			require.NoError(t, err)
			_, err = fmt.Fprintf(conns[i], "PING %d\r\n", i)
			require.NoError(t, err)
		}
		s.RunUntilIdle()
		for i := range conns {
			sc, err := up.Accept()
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("PING %d\r\n", i), string(sc.ReadAll()))
			_, err = sc.WriteString(fmt.Sprintf("PONG %d", i))
			require.NoError(t, err)
			require.NoError(t, sc.CloseWrite())
		}
		s.RunUntilIdle() // each upstream's FIN ends its connection, lingering for nothing
		for _, c := range conns {
			assert.ErrorIs(t, c.Close(), reactor.ErrConnClosed)
		}
		assert.Equal(t, int64(3), cl.Stats().Dialed)
		assert.Zero(t, cl.Stats().Open)
		return r.lines, s.Trace()
	}
	lines, trace := run(7)
	assert.Len(t, lines, 9)
	for i := range 3 {
		assert.Contains(t, lines, fmt.Sprintf("message PONG %d", i))
	}
	assert.Contains(t, trace, "connect fd=")
	assert.Contains(t, trace, "established l1")
	lines2, trace2 := run(7)
	assert.Equal(t, lines, lines2)
	assert.Equal(t, trace, trace2, "the same seed gives the same run")
}

func TestSimClientDialFailures(t *testing.T) {
	type outcome struct {
		err     error
		elapsed time.Duration // virtual
	}
	dial := func(t *testing.T, s *reactor.Sim, cl *reactor.Client, ctx context.Context, addr string) outcome {
		start := s.Now()
		c, err := cl.Dial(ctx, "tcp", addr)
		assert.Nil(t, c)
		return outcome{err, s.Now() - start}
	}
	for _, tt := range []struct {
		name  string
		setup func(s *reactor.Sim, ln *reactor.SimListener)
		check func(t *testing.T, o outcome)
	}{
		{"nothing listens", func(*reactor.Sim, *reactor.SimListener) {}, func(t *testing.T, o outcome) {
			assert.ErrorIs(t, o.err, syscall.ECONNREFUSED)
			assert.Zero(t, o.elapsed)
		}},
		{"injected EHOSTUNREACH", func(s *reactor.Sim, _ *reactor.SimListener) {
			s.Inject(reactor.Fault{Op: reactor.FaultConnect, Err: syscall.EHOSTUNREACH, Times: 1})
		}, func(t *testing.T, o outcome) { assert.ErrorIs(t, o.err, syscall.EHOSTUNREACH) }},
		{"lost SYN", func(s *reactor.Sim, _ *reactor.SimListener) {
			s.Inject(reactor.Fault{Op: reactor.FaultConnect, Err: syscall.ETIMEDOUT, Times: 1})
		}, func(t *testing.T, o outcome) {
			assert.ErrorIs(t, o.err, reactor.ErrDialTimeout)
			assert.Equal(t, 3*time.Second, o.elapsed, "the dial timeout, in virtual time")
		}},
		{"accept queue full, never accepting", func(_ *reactor.Sim, ln *reactor.SimListener) {
			ln.SetBacklog(0)
		}, func(t *testing.T, o outcome) {
			assert.ErrorIs(t, o.err, reactor.ErrDialTimeout)
			assert.Equal(t, 3*time.Second, o.elapsed)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := reactor.NewSim(1)
			ln, err := s.Listen("127.0.0.1:80")
			require.NoError(t, err)
			addr := "127.0.0.1:80"
			if tt.name == "nothing listens" {
				addr = "127.0.0.1:81"
			}
			tt.setup(s, ln)
			var r recorder
			cl := newSimClient(t, s, r.handler(), reactor.WithDialTimeout(3*time.Second))
			o := dial(t, s, cl, context.Background(), addr)
			var op *net.OpError
			require.ErrorAs(t, o.err, &op)
			assert.Equal(t, "dial", op.Op)
			tt.check(t, o)
			assert.Empty(t, r.lines, "a failed dial has no OnOpen and no OnClose")
			assert.Equal(t, int64(1), cl.Stats().DialErrors)
			established, inProgress := ln.Pending()
			assert.Zero(t, established+inProgress, "the abandoned connect left nothing queued")
		})
	}
	t.Run("context ends mid-connect", func(t *testing.T) {
		s := reactor.NewSim(1)
		ln, err := s.Listen("127.0.0.1:80")
		require.NoError(t, err)
		ln.SetBacklog(0)
		cl := newSimClient(t, s, reactor.HandlerFuncs{}, reactor.WithDialTimeout(0))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		c, err := cl.Dial(ctx, "tcp", "127.0.0.1:80")
		assert.Nil(t, c)
		assert.Equal(t, context.DeadlineExceeded, err)
		_, inProgress := ln.Pending()
		assert.Zero(t, inProgress, "the half-open socket was closed")
	})
	t.Run("names need DNS", func(t *testing.T) {
		s := reactor.NewSim(1)
		cl := newSimClient(t, s, reactor.HandlerFuncs{})
		_, err := cl.Dial(context.Background(), "tcp", "db.example:5432")
		var dnsErr *net.DNSError
		require.ErrorAs(t, err, &dnsErr)
		assert.True(t, dnsErr.IsNotFound)
		_, err = cl.Dial(context.Background(), "unix", "/run/x.sock")
		assert.ErrorIs(t, err, syscall.EAFNOSUPPORT)
	})
}

// simPair is a server handler whose OnOpen dials an upstream on its own
// loop and relays what the upstream sends to the downstream client.
type simPair struct {
	upstream string
	events   []string
	errs     []error // of OnDialError
	ups      []*reactor.Conn
}

type simUp struct {
	p    *simPair
	down *reactor.Conn
}

func (u *simUp) OnOpen(c *reactor.Conn) {
	u.p.events = append(u.p.events, fmt.Sprintf("up open same-loop=%v", c.Loop() == u.down.Loop()))
	u.p.ups = append(u.p.ups, c)
	u.down.ResumeRead()
}
func (u *simUp) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	_, _ = u.down.Write(in.Next(in.Len()))
}
func (u *simUp) OnWriteComplete(*reactor.Conn) {}
func (u *simUp) OnClose(c *reactor.Conn, err error) {
	u.p.events = append(u.p.events, fmt.Sprintf("up close %v", err))
	_ = u.down.Close()
}
func (u *simUp) OnDialError(err error) {
	u.p.events = append(u.p.events, "up dial error")
	u.p.errs = append(u.p.errs, err)
	_ = u.down.Close()
}

func (p *simPair) handler() reactor.HandlerFuncs {
	return reactor.HandlerFuncs{
		Open: func(down *reactor.Conn) {
			down.PauseRead() // nothing to relay to until the upstream is there
			u := &simUp{p: p, down: down}
			down.SetContext(u)
			if err := down.Loop().Dial("tcp", p.upstream, u, reactor.DialTimeout(time.Second)); err != nil {
				p.events = append(p.events, "dial "+err.Error())
			}
		},
		Message: func(down *reactor.Conn, in *reactor.Buffer) {
			for _, up := range down.Context().(*simUp).p.ups {
				_, _ = up.Write(in.Bytes())
			}
			in.Discard(in.Len())
		},
	}
}

func TestSimDialFromCallback(t *testing.T) {
	s := reactor.NewSim(3)
	up, err := s.Listen("10.0.0.2:6379")
	require.NoError(t, err)
	p := &simPair{upstream: "10.0.0.2:6379"}
	srv, err := reactor.NewServer("127.0.0.1:7000", p.handler(), reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(2))
	require.NoError(t, err)
	stop := s.Start(srv)
	defer stop()

	c, err := s.Dial("127.0.0.1:7000")
	require.NoError(t, err)
	_, _ = c.WriteString("GET k\r\n")
	s.RunUntilIdle()
	sc, err := up.Accept()
	require.NoError(t, err)
	assert.Equal(t, "198.51.100.1", sc.RemoteAddr().(*net.TCPAddr).IP.String(), "from the simulated host")
	assert.Equal(t, "GET k\r\n", string(sc.ReadAll()), "read only once the upstream was open")
	_, _ = sc.WriteString("$1\r\nv\r\n")
	s.RunUntilIdle()
	assert.Equal(t, "$1\r\nv\r\n", string(c.ReadAll()))
	require.NoError(t, sc.Close())
	s.RunUntilIdle()
	assert.True(t, c.EOF(), "the upstream's close closes the downstream")
	assert.Equal(t, []string{"up open same-loop=true", "up close <nil>"}, p.events)

	// A refused dial: its own report, no OnOpen, no OnClose.
	require.NoError(t, up.Close())
	p.events = nil
	c2, err := s.Dial("127.0.0.1:7000")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, []string{"up dial error"}, p.events)
	assert.ErrorIs(t, p.errs[0], syscall.ECONNREFUSED)
	assert.True(t, c2.EOF())

	// A dial that never completes ends by its timeout, in virtual time.
	s.Inject(reactor.Fault{Op: reactor.FaultConnect, Err: syscall.ETIMEDOUT, Times: 1})
	p.events = nil
	c3, err := s.Dial("127.0.0.1:7000")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Empty(t, p.events)
	s.Advance(999 * time.Millisecond)
	assert.Empty(t, p.events)
	s.Advance(time.Millisecond)
	assert.Equal(t, []string{"up dial error"}, p.events)
	assert.ErrorIs(t, p.errs[1], reactor.ErrDialTimeout)
	assert.True(t, c3.EOF())
	require.NoError(t, stop())
	assert.Empty(t, s.OpenFDs())
}

func TestSimClientShutdownFailsPendingDials(t *testing.T) {
	s := reactor.NewSim(1)
	ln, err := s.Listen("127.0.0.1:80")
	require.NoError(t, err)
	ln.SetBacklog(1) // the first connection fills the queue: the second waits
	failed := make(chan error, 1)
	cl, err := reactor.NewClient(reactor.HandlerFuncs{Open: func(c *reactor.Conn) {
		_ = c.Loop().Dial("tcp", "127.0.0.1:80", dialErrFunc(func(err error) { failed <- err }))
	}}, reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(1))
	require.NoError(t, err)
	c, err := cl.Dial(context.Background(), "tcp", "127.0.0.1:80")
	require.NoError(t, err)
	require.NotNil(t, c)
	s.RunUntilIdle()
	established, inProgress := ln.Pending()
	assert.Equal(t, []int{1, 1}, []int{established, inProgress})
	require.NoError(t, cl.Shutdown(context.Background()))
	assert.ErrorIs(t, <-failed, reactor.ErrClientClosed)
	_, inProgress = ln.Pending()
	assert.Zero(t, inProgress)
	assert.Empty(t, s.OpenFDs())
}

// dialErrFunc is a handler that only reports dial failures.
type dialErrFunc func(error)

func (f dialErrFunc) OnOpen(*reactor.Conn)                     {}
func (f dialErrFunc) OnMessage(*reactor.Conn, *reactor.Buffer) {}
func (f dialErrFunc) OnWriteComplete(*reactor.Conn)            {}
func (f dialErrFunc) OnClose(*reactor.Conn, error)             {}
func (f dialErrFunc) OnDialError(err error)                    { f(err) }
