package reactor_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor"
)

// TestShutdownFlushesPendingOutput opens many connections, has the server
// write more to each than the kernel will take while the clients are not
// reading, shuts down, and checks that every client still receives every
// byte followed by an orderly EOF.
func TestShutdownFlushesPendingOutput(t *testing.T) {
	conns, perConn := 1000, 128<<10
	if testing.Short() {
		conns = 100
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			opened := make(chan struct{}, conns)
			h := newLifecycle(conns, reactor.HandlerFuncs{
				Open: func(c *reactor.Conn) {
					buf := make([]byte, perConn)
					for i := range buf {
						buf[i] = byte(i % 251)
					}
					_, _ = c.Write(buf)
					opened <- struct{}{}
				},
			})
			srv, err := reactor.NewServer("127.0.0.1:0", h, reactor.WithDispatcher(be.f), reactor.WithLoops(2), reactor.WithHighWaterMark(0))
			require.NoError(t, err)
			serveErr := make(chan error, 1)
			go func() { serveErr <- srv.Serve() }()

			clients := make([]*net.TCPConn, conns)
			for i := range clients {
				clients[i] = dialSmallWindow(t, srv, 2<<10)
			}
			for range conns {
				<-opened
			}
			pendingAtShutdown := 0
			for _, l := range srv.Stats().Loops {
				pendingAtShutdown += int(l.Conns)
			}
			shutdownDone := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				shutdownDone <- srv.Shutdown(ctx)
			}()

			var wg sync.WaitGroup
			for _, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					b, err := io.ReadAll(c)
					assert.NoError(t, err)
					if assert.Len(t, b, perConn) {
						for i, v := range b {
							if v != byte(i%251) {
								assert.Failf(t, "corrupt", "byte %d", i)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			require.NoError(t, <-shutdownDone)
			require.ErrorIs(t, <-serveErr, reactor.ErrServerClosed)
			h.wait(t)
			for _, err := range h.errs {
				assert.NoError(t, err)
			}
			assert.Equal(t, conns, pendingAtShutdown)
			st := srv.Stats()
			assert.Equal(t, int64(conns), st.Closed.Shutdown)
			assert.Equal(t, int64(0), st.Open)
		})
	}
}

func TestShutdownContextExpiryClosesHard(t *testing.T) {
	h := newLifecycle(1, reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) { _, _ = c.Write(make([]byte, 64<<20)) },
	})
	srv, err := reactor.NewServer("127.0.0.1:0", h, reactor.WithLoops(1))
	require.NoError(t, err)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()
	c := dialSmallWindow(t, srv, 2<<10)
	defer c.Close()
	// Read a little so we know OnOpen ran; then never read again.
	_, err = io.ReadFull(c, make([]byte, 1))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // already expired: Shutdown must close hard and say so
	assert.ErrorIs(t, srv.Shutdown(ctx), context.Canceled)
	assert.ErrorIs(t, <-serveErr, reactor.ErrServerClosed)
	h.wait(t)
	assert.ErrorIs(t, h.errs[0], reactor.ErrServerClosed, "unflushed output must be reported")
}

func TestServeAfterShutdownAndCloseBeforeServe(t *testing.T) {
	srv, err := reactor.NewServer("127.0.0.1:0", echo())
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	assert.ErrorIs(t, srv.Serve(), reactor.ErrServerClosed)
	assert.NoError(t, srv.Shutdown(context.Background()))
	// The port is free again.
	l, err := net.Listen("tcp", srv.Addr().String())
	require.NoError(t, err)
	l.Close()
}

func TestTwoServersWithDifferentBackends(t *testing.T) {
	a := serve(t, echo(), reactor.WithDispatcher(reactor.Epoll), reactor.WithLoops(1))
	b := serve(t, echo(), reactor.WithDispatcher(reactor.Poll), reactor.WithLoops(0))
	for _, srv := range []*reactor.Server{a, b, a, b} {
		c := dial(t, srv)
		msg := []byte("hello " + srv.Addr().String())
		_, err := c.Write(msg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(c, got)
		require.NoError(t, err)
		assert.Equal(t, msg, got)
		c.Close()
	}
}

func TestNewServerRejectsNonsense(t *testing.T) {
	cases := map[string][]reactor.Option{
		"negative loops":     {reactor.WithLoops(-1)},
		"nil dispatcher":     {reactor.WithDispatcher(nil)},
		"tiny read buffer":   {reactor.WithReadBufferSize(10)},
		"negative hwm":       {reactor.WithHighWaterMark(-1)},
		"negative max input": {reactor.WithMaxInputSize(-5)},
		"negative max conns": {reactor.WithMaxConns(-1)},
		"negative idle":      {reactor.WithIdleTimeout(-1)},
		"sub-second keep":    {reactor.WithKeepAlive(1)},
		"bad balancer":       {reactor.WithLoadBalancer(reactor.LoadBalancer(99))},
		"nil logger":         {reactor.WithLogger(nil)},
		"nil option":         {nil},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			srv, err := reactor.NewServer("127.0.0.1:0", echo(), opts...)
			assert.Error(t, err)
			assert.Nil(t, srv)
		})
	}
	_, err := reactor.NewServer("127.0.0.1:0", nil)
	assert.Error(t, err, "nil handler")
	_, err = reactor.NewServer("not an address", echo())
	assert.Error(t, err)

	// A taken port fails at NewServer, with the address in the error.
	srv := serve(t, echo(), reactor.WithLoops(0))
	_, err = reactor.NewServer(srv.Addr().String(), echo())
	assert.ErrorIs(t, err, unix.EADDRINUSE)
	assert.Contains(t, err.Error(), srv.Addr().String())
}

func TestListenIPv6(t *testing.T) {
	srv, err := reactor.NewServer("[::1]:0", echo(), reactor.WithLoops(1))
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	defer func() {
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-errc, reactor.ErrServerClosed)
	}()
	c, err := net.Dial("tcp6", srv.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("v6"))
	require.NoError(t, err)
	got := make([]byte, 2)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, "v6", string(got))
}

// signalHandler is a slog.Handler that reports records whose message
// contains a substring on a channel, so a test can wait for the server to
// log an event instead of sleeping.
type signalHandler struct {
	mu    sync.Mutex
	subs  map[string]chan struct{}
	count map[string]int
}

func newSignalHandler(msgs ...string) *signalHandler {
	h := &signalHandler{subs: map[string]chan struct{}{}, count: map[string]int{}}
	for _, m := range msgs {
		h.subs[m] = make(chan struct{}, 1024)
	}
	return h
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *signalHandler) WithGroup(string) slog.Handler            { return h }
func (h *signalHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for m, ch := range h.subs {
		if strings.Contains(r.Message, m) {
			h.count[m]++
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

func (h *signalHandler) seen(m string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count[m]
}

// TestAcceptSurvivesDescriptorExhaustion lowers RLIMIT_NOFILE so the server
// runs out of descriptors in the middle of a flood of connects, checks that
// it pauses accepting (logged once), keeps serving the connections it has,
// and accepts the rest once descriptors are free again.
func TestAcceptSurvivesDescriptorExhaustion(t *testing.T) {
	const flood = 40
	logs := newSignalHandler("out of file descriptors", "accepting again")
	srv := serve(t, echo(), reactor.WithLoops(0), reactor.WithLogger(slog.New(logs)))
	addr := srv.Addr().(*net.TCPAddr)
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())

	// Client sockets are created before the limit drops: connect(2) needs no
	// new descriptor, accept(2) in the server does.
	fds := make([]int, flood)
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		fds[i] = fd
	}
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd) // test cleanup
		}
	}()
	probe, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Close(probe))

	var orig unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &orig))
	lowered := orig
	lowered.Cur = uint64(probe + 10) // room for about ten accepted connections
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lowered))
	restored := false
	restore := func() {
		if !restored {
			restored = true
			require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &orig))
		}
	}
	defer restore()

	for _, fd := range fds {
		require.NoError(t, unix.Connect(fd, sa)) // completes into the listen queue
	}
	<-logs.subs["out of file descriptors"]

	// The connections accepted before the limit (the first ones: the listen
	// queue is FIFO) are served normally; the rest wait in the queue.
	served := int(srv.Stats().Open)
	assert.Positive(t, served, "some connections should have been accepted before the limit")
	assert.Less(t, served, flood, "the limit should have stopped some")
	for _, fd := range fds[:served] {
		echoRaw(t, fd, "ping")
	}

	restore()
	<-logs.subs["accepting again"]
	for _, fd := range fds {
		echoRaw(t, fd, "pong")
	}
	assert.Equal(t, 1, logs.seen("out of file descriptors"), "one warning per episode")
	assert.Positive(t, srv.Stats().FDExhausted)
}

// echoRaw writes msg on a blocking raw socket and reads the echo back.
func echoRaw(t *testing.T, fd int, msg string) {
	t.Helper()
	_, err := unix.Write(fd, []byte(msg))
	require.NoError(t, err)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, int(testTimeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		require.NoError(t, err)
		require.Equal(t, 1, n, "no echo within the test timeout")
		break
	}
	got := make([]byte, len(msg))
	_, err = io.ReadFull(fdReader(fd), got)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

type fdReader int

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n == 0 && err == nil {
			return 0, io.EOF
		}
		return max(n, 0), err
	}
}
