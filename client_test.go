package reactor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor"
)

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// checkNoFDLeak fails the test if, once every cleanup registered after it
// has run, more descriptors are open than when it was called.
func checkNoFDLeak(t *testing.T) {
	t.Helper()
	before := openFDs(t)
	t.Cleanup(func() {
		if !assert.Equal(t, before, openFDs(t), "descriptors leaked") {
			dumpFDs(t)
		}
	})
}

// dumpFDs logs the process's open descriptors, to say what leaked.
func dumpFDs(t *testing.T) {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		t.Log(e.Name(), l)
	}
}

// netServer is a goroutine-per-connection server from package net, for
// the client tests to dial: what serve does with each connection is its
// own; the connection is closed when serve returns.
type netServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startNetServer(t *testing.T, network, addr string, serve func(net.Conn)) *netServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	require.NoError(t, err)
	s := &netServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(testTimeout))
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *netServer) addr() string { return s.ln.Addr().String() }

// echoNet echoes until EOF, then half-closes. It copies through its own
// buffer: io.Copy between two TCP connections would splice through a pipe
// that package net caches (and closes only when the cache is collected),
// which the descriptor counts would take for a leak.
func echoNet(c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			break
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, c)
}

// newClient starts a client and closes it when the test ends, checking the
// close went well.
func newClient(t *testing.T, h reactor.Handler, opts ...reactor.Option) *reactor.Client {
	t.Helper()
	c, err := reactor.NewClient(h, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		assert.NoError(t, c.Shutdown(ctx))
	})
	return c
}

// digestSink hashes what a connection receives and reports it on close.
type digestSink struct {
	n    int
	sum  [sha256.Size]byte
	err  error
	h    interface{ Write([]byte) (int, error) }
	fin  func() [sha256.Size]byte
	done chan struct{}
}

func newDigestSink() *digestSink {
	h := sha256.New()
	s := &digestSink{h: h, done: make(chan struct{})}
	s.fin = func() (sum [sha256.Size]byte) { copy(sum[:], h.Sum(nil)); return sum }
	return s
}

// sinkHandler keeps a digestSink per connection, set in OnOpen (so a
// Client.Dial caller finds it as soon as Dial returns).
func sinkHandler(opened, closed *atomic.Int64) reactor.HandlerFuncs {
	return reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			opened.Add(1)
			c.SetContext(newDigestSink())
		},
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			s := c.Context().(*digestSink)
			s.n += in.Len()
			_, _ = s.h.Write(in.Next(in.Len()))
		},
		Close: func(c *reactor.Conn, err error) {
			closed.Add(1)
			s := c.Context().(*digestSink)
			s.sum, s.err = s.fin(), err
			close(s.done)
		},
	}
}

func TestClientDialEchoIntegrity(t *testing.T) {
	clients, maxSize := 200, 1<<20
	if testing.Short() {
		clients, maxSize = 20, 64<<10
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			checkNoFDLeak(t)
			srv := startNetServer(t, "tcp", "127.0.0.1:0", echoNet)
			var opened, closed atomic.Int64
			cl := newClient(t, sinkHandler(&opened, &closed), reactor.WithDispatcher(be.f), reactor.WithLoops(2))
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- dialEchoOnce(cl, srv.addr(), rand.New(rand.NewPCG(uint64(i), 10)), maxSize)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				assert.NoError(t, err)
			}
			assert.Equal(t, int64(clients), opened.Load())
			assert.Equal(t, int64(clients), closed.Load())
			st := cl.Stats()
			assert.Equal(t, int64(clients), st.Dialed)
			assert.Zero(t, st.DialErrors)
			assert.Zero(t, st.Open)
		})
	}
}

// dialEchoOnce dials the echo server through the client, writes a random
// payload (at most maxSize bytes; the first two clients send exactly
// maxSize) from this goroutine, half-closes, and compares the digest of
// what came back.
func dialEchoOnce(cl *reactor.Client, addr string, rng *rand.Rand, maxSize int) error {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := cl.Dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	s := c.Context().(*digestSink)
	payload := make([]byte, rng.IntN(maxSize+1))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	// Several Writes from one goroutine arrive in order.
	for rest := payload; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(256<<10))
		if _, err := c.Write(rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("no close after %d of %d bytes", s.n, len(payload))
	}
	// OnClose runs before the descriptor is closed and leaves Stats.Open;
	// a task queued now runs on the loop after both.
	gone := make(chan struct{})
	if err := c.Loop().Submit(func() { close(gone) }); err != nil {
		return err
	}
	<-gone
	if s.err != nil {
		return s.err
	}
	if s.sum != sha256.Sum256(payload) {
		return fmt.Errorf("digest mismatch: %d bytes sent, %d received", len(payload), s.n)
	}
	if !c.RemoteAddr().(*net.TCPAddr).IP.IsLoopback() {
		return fmt.Errorf("RemoteAddr %v", c.RemoteAddr())
	}
	return nil
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// fullListener returns the address of a listening socket with backlog 0
// that never accepts, its queue filled: a connect to it stays in progress
// (Linux drops the SYN while the accept queue is full). It fills the queue
// with connects until one does not complete.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(fd, 0))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // this connect did not complete: the queue is full
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Fatalf("the accept queue of a backlog-0 listener never filled")
	return ""
}

// countingHandler counts OnOpen and OnClose.
func countingHandler(opened, closed *atomic.Int64) reactor.HandlerFuncs {
	return reactor.HandlerFuncs{
		Open:  func(*reactor.Conn) { opened.Add(1) },
		Close: func(*reactor.Conn, error) { closed.Add(1) },
	}
}

func TestClientDialFailures(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			checkNoFDLeak(t)
			full := fullListener(t)
			var opened, closed atomic.Int64
			cl := newClient(t, countingHandler(&opened, &closed), reactor.WithDispatcher(be.f),
				reactor.WithLoops(1), reactor.WithDialTimeout(300*time.Millisecond))
			ctx := context.Background()

			t.Run("refused", func(t *testing.T) {
				c, err := cl.Dial(ctx, "tcp", closedPort(t))
				assert.Nil(t, c)
				require.ErrorIs(t, err, syscall.ECONNREFUSED)
				var op *net.OpError
				require.ErrorAs(t, err, &op)
				assert.Equal(t, "dial", op.Op)
				assert.Equal(t, "tcp", op.Net)
				assert.NotNil(t, op.Addr)
			})
			t.Run("timeout against a full accept queue", func(t *testing.T) {
				c, err := cl.Dial(ctx, "tcp", full)
				assert.Nil(t, c)
				require.ErrorIs(t, err, reactor.ErrDialTimeout)
				var ne net.Error
				require.ErrorAs(t, err, &ne)
				assert.True(t, ne.Timeout())
			})
			t.Run("context deadline mid-connect", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
				c, err := cl.Dial(ctx, "tcp", full)
				assert.Nil(t, c)
				assert.Equal(t, context.DeadlineExceeded, err, "ctx.Err() itself")
			})
			t.Run("context cancelled before", func(t *testing.T) {
				ctx, cancel := context.WithCancel(ctx)
				cancel()
				_, err := cl.Dial(ctx, "tcp", full)
				assert.Equal(t, context.Canceled, err)
			})
			t.Run("bad addresses", func(t *testing.T) {
				for _, tt := range []struct{ network, addr string }{
					{"udp", "127.0.0.1:1"},
					{"tcp", "127.0.0.1"},
					{"tcp", "127.0.0.1:http"},
					{"tcp4", "[::1]:80"},
					{"tcp6", "127.0.0.1:80"},
				} {
					_, err := cl.Dial(ctx, tt.network, tt.addr)
					var op *net.OpError
					if assert.ErrorAs(t, err, &op, "%s %s", tt.network, tt.addr) {
						assert.Equal(t, "dial", op.Op)
					}
				}
			})
			assert.Zero(t, opened.Load(), "a failed dial never opens")
			assert.Zero(t, closed.Load(), "a failed dial never closes")
			assert.Equal(t, int64(8), cl.Stats().DialErrors)
			assert.Zero(t, cl.Stats().Open)
		})
	}
}

// sinkNet reads everything, digests it, and closes at EOF.
type sinkNet struct {
	mu   sync.Mutex
	sums map[string][sha256.Size]byte // by the client's address
	lens map[string]int
}

func (s *sinkNet) serve(c net.Conn) {
	h := sha256.New()
	n, _ := io.Copy(h, c)
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	s.mu.Lock()
	s.sums[c.RemoteAddr().String()] = sum
	s.lens[c.RemoteAddr().String()] = int(n)
	s.mu.Unlock()
}

func TestClientShutdownLosesNothing(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			checkNoFDLeak(t)
			sink := &sinkNet{sums: map[string][sha256.Size]byte{}, lens: map[string]int{}}
			srv := startNetServer(t, "tcp", "127.0.0.1:0", sink.serve)
			var opened, closed atomic.Int64
			errs := make(chan error, 64)
			h := countingHandler(&opened, &closed)
			h.Close = func(_ *reactor.Conn, err error) { closed.Add(1); errs <- err }
			cl, err := reactor.NewClient(h, reactor.WithDispatcher(be.f), reactor.WithLoops(2))
			require.NoError(t, err)
			const conns, size = 16, 2 << 20
			want := map[string][sha256.Size]byte{}
			for i := range conns {
				c, err := cl.Dial(context.Background(), "tcp", srv.addr())
				require.NoError(t, err)
				payload := bytes.Repeat([]byte{byte(i), byte(i >> 8), 0xA5}, size/3)
				_, err = c.Write(payload)
				require.NoError(t, err)
				want[c.LocalAddr().String()] = sha256.Sum256(payload)
			}
			// Everything is still buffered or on its way: Shutdown must
			// deliver it all before it closes.
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			require.NoError(t, cl.Shutdown(ctx))
			assert.Equal(t, int64(conns), opened.Load())
			assert.Equal(t, int64(conns), closed.Load())
			for range conns {
				assert.NoError(t, <-errs)
			}
			srv.ln.Close()
			srv.wg.Wait()
			sink.mu.Lock()
			defer sink.mu.Unlock()
			assert.Equal(t, want, sink.sums)
			_, err = cl.Dial(context.Background(), "tcp", srv.addr())
			assert.ErrorIs(t, err, reactor.ErrClientClosed)
			assert.Equal(t, int64(conns), cl.Stats().Closed.Shutdown)
		})
	}
}

func TestClientCloseDropsOutput(t *testing.T) {
	checkNoFDLeak(t)
	// A server that never reads: the client's output stays buffered.
	block := make(chan struct{})
	srv := startNetServer(t, "tcp", "127.0.0.1:0", func(net.Conn) { <-block })
	defer close(block)
	errc := make(chan error, 1)
	cl, err := reactor.NewClient(reactor.HandlerFuncs{Close: func(_ *reactor.Conn, err error) { errc <- err }},
		reactor.WithLoops(1))
	require.NoError(t, err)
	c, err := cl.Dial(context.Background(), "tcp", srv.addr())
	require.NoError(t, err)
	_, err = c.Write(make([]byte, 16<<20)) // more than the socket buffers hold
	require.NoError(t, err)
	require.NoError(t, cl.Close())
	err = <-errc
	assert.ErrorIs(t, err, reactor.ErrClientClosed)
	_, err = c.Write([]byte("x"))
	assert.ErrorIs(t, err, reactor.ErrConnClosed)
	assert.NoError(t, cl.Close(), "repeated")
}

func TestClientDialUnix(t *testing.T) {
	checkNoFDLeak(t)
	path := filepath.Join(t.TempDir(), "echo.sock")
	startNetServer(t, "unix", path, echoNet)
	var opened, closed atomic.Int64
	cl := newClient(t, sinkHandler(&opened, &closed), reactor.WithLoops(1))
	c, err := cl.Dial(context.Background(), "unix", path)
	require.NoError(t, err)
	assert.Equal(t, &net.UnixAddr{Name: path, Net: "unix"}, c.RemoteAddr())
	local, ok := c.LocalAddr().(*net.UnixAddr)
	if assert.True(t, ok, "LocalAddr is a %T", c.LocalAddr()) {
		assert.Equal(t, "unix", local.Net) // its name, unnamed, is what package net reports for it too
	}
	s := c.Context().(*digestSink)
	_, err = c.Write([]byte("over a unix socket"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	<-s.done
	assert.NoError(t, s.err)
	assert.Equal(t, sha256.Sum256([]byte("over a unix socket")), s.sum)

	_, err = cl.Dial(context.Background(), "unix", path+".missing")
	assert.ErrorIs(t, err, syscall.ENOENT)
	var op *net.OpError
	require.ErrorAs(t, err, &op)
	assert.Equal(t, "unix", op.Net)
}

func TestNewClientRejectsServerOptions(t *testing.T) {
	h := reactor.HandlerFuncs{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	for _, tt := range []struct {
		name string
		opt  reactor.Option
	}{
		{"listener", reactor.WithListener(ln)},
		{"reuseport", reactor.WithReusePort(true)},
		{"backlog", reactor.WithBacklog(16)},
		{"maxconns", reactor.WithMaxConns(10)},
		{"sourcehash", reactor.WithLoadBalancer(reactor.SourceHash)},
		{"negative dial timeout", reactor.WithDialTimeout(-1)},
		{"nil option", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := reactor.NewClient(h, tt.opt)
			assert.Nil(t, c)
			assert.Error(t, err)
		})
	}
	c, err := reactor.NewClient(nil)
	assert.Nil(t, c)
	assert.Error(t, err)
	// What a client can use is accepted.
	c, err = reactor.NewClient(h, reactor.WithReusePort(false), reactor.WithLoops(0),
		reactor.WithLoadBalancer(reactor.LeastConns), reactor.WithIdleTimeout(time.Minute))
	require.NoError(t, err)
	require.NoError(t, c.Close())
}

// upstream is the handler of a connection a server dials from a callback:
// it records how the dial ended on the downstream connection's loop.
type upstream struct {
	reactor.HandlerFuncs
	down    *reactor.Conn
	sameOne chan bool          // OnOpen: whether it runs on down's loop
	failed  chan error         // OnDialError
	closed  chan *reactor.Conn // OnClose: the connection (nil: not asked)
}

func (u *upstream) OnOpen(c *reactor.Conn) {
	u.sameOne <- c.Loop() == u.down.Loop()
	_, _ = c.Write([]byte("hello upstream"))
	_ = c.CloseWrite()
}

func (u *upstream) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	_, _ = u.down.Write(in.Next(in.Len()))
}

func (u *upstream) OnClose(c *reactor.Conn, _ error) {
	if u.closed != nil {
		u.closed <- c
	}
	_ = u.down.Close()
}

func (u *upstream) OnDialError(err error) {
	u.failed <- err
	_ = u.down.Close()
}

func TestLoopDialFromCallback(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			checkNoFDLeak(t)
			echoSrv := startNetServer(t, "tcp", "127.0.0.1:0", echoNet)
			full := fullListener(t)
			refused := closedPort(t)
			ups := make(chan *upstream, 3)
			target := make(chan string, 3)
			var opts []reactor.DialOption
			h := reactor.HandlerFuncs{Open: func(down *reactor.Conn) {
				u := &upstream{down: down, sameOne: make(chan bool, 1), failed: make(chan error, 1), closed: make(chan *reactor.Conn, 1)}
				ups <- u
				if err := down.Loop().Dial("tcp", <-target, u, opts...); err != nil {
					u.failed <- err
				}
			}}
			srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(2))

			t.Run("relays", func(t *testing.T) {
				target <- echoSrv.addr()
				c := dial(t, srv)
				defer c.Close()
				u := <-ups
				assert.True(t, <-u.sameOne, "the dialled connection lives on the dialling loop")
				got, err := io.ReadAll(c)
				require.NoError(t, err)
				assert.Equal(t, "hello upstream", string(got))
				// Its descriptor is closed before the downstream's FIN
				// goes (OnClose closes the downstream): with no socket
				// to ask, a dialled connection's LocalAddr is not the
				// server's address.
				assert.Equal(t, ":0", (<-u.closed).LocalAddr().String())
			})
			t.Run("refused", func(t *testing.T) {
				target <- refused
				c := dial(t, srv)
				defer c.Close()
				u := <-ups
				err := <-u.failed
				assert.ErrorIs(t, err, syscall.ECONNREFUSED)
				var op *net.OpError
				require.ErrorAs(t, err, &op)
				assert.Equal(t, "dial", op.Op)
				assert.Empty(t, u.sameOne, "no OnOpen")
				_, err = io.ReadAll(c)
				assert.NoError(t, err, "the handler closed the downstream")
			})
			t.Run("timeout", func(t *testing.T) {
				opts = []reactor.DialOption{reactor.DialTimeout(100 * time.Millisecond)}
				target <- full
				c := dial(t, srv)
				defer c.Close()
				u := <-ups
				assert.ErrorIs(t, <-u.failed, reactor.ErrDialTimeout)
			})
			assert.Equal(t, int64(1), srv.Stats().Dialed)
			assert.Equal(t, int64(2), srv.Stats().DialErrors)
		})
	}
}

func TestLoopDialArguments(t *testing.T) {
	l, err := reactor.NewEventLoop(nil)
	require.NoError(t, err)
	assert.Error(t, l.Dial("tcp", "127.0.0.1:1", reactor.HandlerFuncs{}), "a standalone loop")
	go func() { _ = l.Run() }()
	require.NoError(t, l.Stop())
	<-l.Done()

	got := make(chan error, 4)
	srv := serve(t, reactor.HandlerFuncs{Open: func(c *reactor.Conn) {
		got <- c.Loop().Dial("tcp", "127.0.0.1:1", nil)
		got <- c.Loop().Dial("tcp", "127.0.0.1:1", reactor.HandlerFuncs{}, nil)
		got <- c.Loop().Dial("tcp", "127.0.0.1:1", reactor.HandlerFuncs{}, reactor.DialTimeout(-time.Second))
		_ = c.Close()
	}}, reactor.WithLoops(0))
	c := dial(t, srv)
	defer c.Close()
	for range 3 {
		assert.Error(t, <-got)
	}
}

func TestShutdownFailsDialsInProgress(t *testing.T) {
	checkNoFDLeak(t)
	full := fullListener(t)
	failed := make(chan error, 1)
	opened := make(chan error, 1)
	h := reactor.HandlerFuncs{Open: func(down *reactor.Conn) {
		u := &upstream{down: down, sameOne: make(chan bool, 1), failed: failed}
		opened <- down.Loop().Dial("tcp", full, u)
	}}
	srv, err := reactor.NewServer("127.0.0.1:0", h, reactor.WithLoops(1))
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	c, err := net.DialTimeout("tcp", srv.Addr().String(), testTimeout)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, <-opened)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
	require.NoError(t, srv.Shutdown(ctx))
	assert.ErrorIs(t, <-failed, reactor.ErrServerClosed)
	assert.ErrorIs(t, <-served, reactor.ErrServerClosed)
}

func TestClientDialInLoop(t *testing.T) {
	errc := make(chan error, 1)
	var cl *reactor.Client
	srv := startNetServer(t, "tcp", "127.0.0.1:0", echoNet)
	cl = newClient(t, reactor.HandlerFuncs{Open: func(c *reactor.Conn) {
		_, err := cl.Dial(context.Background(), "tcp", srv.addr())
		errc <- err
		_ = c.Close()
	}}, reactor.WithLoops(1))
	_, err := cl.Dial(context.Background(), "tcp", srv.addr())
	require.NoError(t, err)
	assert.ErrorIs(t, <-errc, reactor.ErrInLoop)
}

func TestClientOnOpenPanicStillReturns(t *testing.T) {
	srv := startNetServer(t, "tcp", "127.0.0.1:0", echoNet)
	closed := make(chan error, 1)
	cl := newClient(t, reactor.HandlerFuncs{
		Open:  func(*reactor.Conn) { panic("boom") },
		Close: func(_ *reactor.Conn, err error) { closed <- err },
	}, reactor.WithLoops(1), reactor.WithLogger(slog.New(slog.DiscardHandler)))
	c, err := cl.Dial(context.Background(), "tcp", srv.addr())
	require.NoError(t, err)
	require.NotNil(t, c)
	assert.ErrorIs(t, <-closed, reactor.ErrHandlerPanic)
}
