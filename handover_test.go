package reactor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/internal/kernel"
	"github.com/tcpreactor/reactor/internal/nstest"
)

// handOverCase is a server whose listeners are handed to a successor.
type handOverCase struct {
	name  string
	addr  func(t *testing.T) string
	opts  []reactor.Option
	files int // listeners ListenerFiles returns
}

var handOverCases = []handOverCase{
	{"tcp", func(*testing.T) string { return "127.0.0.1:0" }, []reactor.Option{reactor.WithLoops(2)}, 1},
	{"unix", func(t *testing.T) string { return "unix:" + socketPath(t) }, []reactor.Option{reactor.WithLoops(2)}, 1},
	{"reuseport", func(*testing.T) string { return "127.0.0.1:0" }, []reactor.Option{reactor.WithReusePort(true), reactor.WithLoops(2)}, 2},
}

// successorOf serves the files a server handed over, as the process taking
// over from it would, after closing them (it has descriptors of its own).
func successorOf(t *testing.T, files []*os.File, opts ...reactor.Option) (*reactor.Server, <-chan error) {
	t.Helper()
	lns := make([]net.Listener, len(files))
	for i, f := range files {
		ln, err := net.FileListener(f)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		lns[i] = ln
	}
	if len(lns) > 1 {
		opts = append(opts, reactor.WithReusePort(true))
	}
	opts = append(opts, reactor.WithListeners(lns...), reactor.WithLogger(slog.New(slog.DiscardHandler)))
	srv, err := reactor.NewServer("", echo(), opts...)
	for _, ln := range lns {
		require.NoError(t, ln.Close())
	}
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	return srv, errc
}

// TestListenerFilesHandOver is the hand-over of a restart, in one process:
// a serving server hands its listening sockets to a successor, both serve
// for a while, then the first shuts down gracefully and the successor takes
// every connection. None is refused. The files stay non-blocking after Fd
// (which exec.Cmd calls on ExtraFiles): were the shared sockets switched to
// blocking mode, the first server's accept would block its loop, and its
// Shutdown would not return.
func TestListenerFilesHandOver(t *testing.T) {
	for _, tc := range handOverCases {
		for _, be := range backends {
			t.Run(tc.name+"/"+be.name, func(t *testing.T) {
				old, err := reactor.NewServer(tc.addr(t), echo(), append(tc.opts, reactor.WithDispatcher(be.f))...)
				require.NoError(t, err)
				addr := old.Addr()
				oldDone := make(chan error, 1)
				go func() { oldDone <- old.Serve() }()

				files, err := old.ListenerFiles()
				require.NoError(t, err)
				require.Len(t, files, tc.files)
				for _, f := range files {
					fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
					require.NoError(t, err)
					assert.NotZero(t, fl&unix.O_NONBLOCK, "Fd switched the socket to blocking mode")
				}
				echoOne(t, addr)

				srv, errc := successorOf(t, files, reactor.WithDispatcher(be.f))
				assert.Equal(t, addr, srv.Addr())
				echoClients(t, addr, 10, 64<<10) // either server answers

				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				require.NoError(t, old.Shutdown(ctx))
				assert.ErrorIs(t, <-oldDone, reactor.ErrServerClosed)
				echoClients(t, addr, 10, 64<<10) // the successor answers alone
				if tc.name == "unix" {
					assert.FileExists(t, addr.String(), "handed over: the first server leaves the path to the successor")
				}

				require.NoError(t, srv.Shutdown(ctx))
				assert.ErrorIs(t, <-errc, reactor.ErrServerClosed)
				_, err = net.DialTimeout(addr.Network(), addr.String(), testTimeout)
				assert.ErrorIs(t, err, syscall.ECONNREFUSED, "every descriptor of the socket is closed")
			})
		}
	}
}

// TestListenerFilesQueuedConnections: connections that wait in the
// listening sockets' queues when the first server closes its descriptors
// are not reset: the successor, which holds the same sockets, accepts them.
// The first server never accepts at all here, so every connection is still
// queued when it closes; with WithReusePort they are spread over its two
// sockets, which must both be handed over.
func TestListenerFilesQueuedConnections(t *testing.T) {
	const clients = 32
	for _, tc := range handOverCases {
		t.Run(tc.name, func(t *testing.T) {
			old, err := reactor.NewServer(tc.addr(t), echo(), tc.opts...)
			require.NoError(t, err)
			addr := old.Addr()
			files, err := old.ListenerFiles()
			require.NoError(t, err)

			conns := make([]net.Conn, clients)
			for i := range conns {
				c, err := net.DialTimeout(addr.Network(), addr.String(), testTimeout)
				require.NoError(t, err)
				defer c.Close()
				require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
				_, err = fmt.Fprintf(c, "client %02d", i)
				require.NoError(t, err)
				conns[i] = c
			}
			require.NoError(t, old.Close()) // its descriptors close; the sockets live on in files

			srv, errc := successorOf(t, files)
			for i, c := range conns {
				b := make([]byte, len("client 00"))
				_, err := io.ReadFull(c, b)
				require.NoError(t, err, "client %d", i)
				assert.Equal(t, fmt.Sprintf("client %02d", i), string(b))
				require.NoError(t, c.Close()) // so that the server's lingering close ends at once
			}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			require.NoError(t, srv.Shutdown(ctx))
			assert.ErrorIs(t, <-errc, reactor.ErrServerClosed)
		})
	}
}

func TestListenerFilesErrors(t *testing.T) {
	t.Run("over the simulation", func(t *testing.T) {
		sim := reactor.NewSim(1)
		srv, err := reactor.NewServer("127.0.0.1:80", echo(), reactor.WithDispatcher(sim.Dispatcher), reactor.WithLoops(1))
		require.NoError(t, err)
		defer srv.Close()
		files, err := srv.ListenerFiles()
		assert.ErrorIs(t, err, errors.ErrUnsupported)
		assert.Nil(t, files)
	})
	t.Run("after Close", func(t *testing.T) {
		srv, err := reactor.NewServer("127.0.0.1:0", echo())
		require.NoError(t, err)
		require.NoError(t, srv.Close())
		_, err = srv.ListenerFiles()
		assert.ErrorIs(t, err, reactor.ErrServerClosed)
	})
	t.Run("after Shutdown", func(t *testing.T) {
		srv := serve(t, echo(), reactor.WithLoops(1))
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		_, err := srv.ListenerFiles()
		assert.ErrorIs(t, err, reactor.ErrServerClosed)
	})
}

// reusePortWarning is the start of the warning a graceful Shutdown of a
// WithReusePort server logs when its drain cannot be lossless.
const reusePortWarning = "reactor: closing SO_REUSEPORT listeners resets"

// TestReusePortDrain checks what the kernel does to connections queued in
// a SO_REUSEPORT listener when it closes while another listener of the same
// port lives on (a new process started beside the old one), under both
// values of net.ipv4.tcp_migrate_req, and that the server's graceful
// Shutdown warns exactly when connections are lost. It changes the sysctl
// in a network namespace of its own (see package nstest); where none can be
// made it runs once, on the host's value, changing nothing.
func TestReusePortDrain(t *testing.T) {
	if _, err := kernel.ReusePortMigrates(); errors.Is(err, os.ErrNotExist) {
		t.Skip("Linux before 5.14: no net.ipv4.tcp_migrate_req")
	}
	if !nstest.Inside() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
		defer cancel()
		out, err := nstest.Run(ctx, "^TestReusePortDrain$")
		if errors.Is(err, nstest.ErrUnavailable) {
			t.Logf("%v; running with the host's net.ipv4.tcp_migrate_req only", err)
			on, err := kernel.ReusePortMigrates()
			require.NoError(t, err)
			reusePortDrain(t, on)
			return
		}
		require.NoError(t, err, out)
		t.Log(out)
		assert.Contains(t, out, "--- PASS: TestReusePortDrain/tcp_migrate_req=0")
		assert.Contains(t, out, "--- PASS: TestReusePortDrain/tcp_migrate_req=1")
		return
	}
	if err := nstest.Setup(nil); err != nil {
		t.Skip(err)
	}
	for _, on := range []bool{false, true} {
		v := map[bool]string{false: "0", true: "1"}[on]
		t.Run("tcp_migrate_req="+v, func(t *testing.T) {
			require.NoError(t, nstest.SetSysctl("net/ipv4/tcp_migrate_req", v))
			reusePortDrain(t, on)
		})
	}
}

// reusePortDrain runs an old and a new server on one port with
// WithReusePort, one loop each, and makes the old one shut down while
// connections wait in its socket's queue: the old server's loop is held in
// a handler until they have connected, and that handler begins the
// shutdown, so the loop closes its listener (a task, run right after the
// handler) without having looked at its queue again. The kernel hashes
// each connection to one of the two sockets; with 32 clients, some land in
// the old one's queue but for a chance of 2^-32. migrates says whether the
// kernel moves them to the new socket (all are echoed) or resets them.
func reusePortDrain(t *testing.T, migrates bool) {
	const clients = 32
	logs := newSignalHandler(reusePortWarning)
	held := make(chan struct{})
	release := make(chan struct{})
	var old *reactor.Server
	var once sync.Once
	holding := reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
		_, _ = c.Write(in.Next(in.Len()))
		once.Do(func() {
			close(held)
			<-release
			_ = old.Shutdown(context.Background()) // ErrInLoop: begun, not waited for
		})
	}}
	old, err := reactor.NewServer("127.0.0.1:0", holding, reactor.WithReusePort(true), reactor.WithLoops(1), reactor.WithLogger(slog.New(logs)))
	require.NoError(t, err)
	addr := old.Addr().String()
	oldDone := make(chan error, 1)
	go func() { oldDone <- old.Serve() }()

	first, err := net.DialTimeout("tcp", addr, testTimeout)
	require.NoError(t, err)
	defer first.Close()
	require.NoError(t, first.SetDeadline(time.Now().Add(testTimeout)))
	_, err = io.WriteString(first, "first")
	require.NoError(t, err)
	select {
	case <-held:
	case <-time.After(testTimeout):
		require.FailNow(t, "the old server never read")
	}

	srv, err := reactor.NewServer(addr, echo(), reactor.WithReusePort(true), reactor.WithLoops(1), reactor.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()

	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, testTimeout)
		require.NoError(t, err, "no connection is refused: both sockets listen")
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
		_, err = fmt.Fprintf(c, "client %02d", i)
		require.NoError(t, err)
		conns[i] = c
	}
	close(release)
	got, err := io.ReadAll(first)
	require.NoError(t, err)
	assert.Equal(t, "first", string(got), "the old server's own connection is drained")
	require.NoError(t, first.Close()) // ends the old server's lingering close
	assert.ErrorIs(t, <-oldDone, reactor.ErrServerClosed)

	echoed, reset := 0, 0
	for i, c := range conns {
		b := make([]byte, len("client 00"))
		_, err := io.ReadFull(c, b)
		switch {
		case err == nil:
			assert.Equal(t, fmt.Sprintf("client %02d", i), string(b))
			echoed++
		case errors.Is(err, syscall.ECONNRESET):
			reset++
		default:
			t.Errorf("client %d: %v", i, err)
		}
		require.NoError(t, c.Close())
	}
	t.Logf("tcp_migrate_req=%v: %d of %d connections echoed, %d reset", migrates, echoed, clients, reset)
	if migrates {
		assert.Equal(t, clients, echoed, "the old socket's queue moved to the new one")
		assert.Zero(t, logs.seen(reusePortWarning), "no warning: nothing was lost")
	} else {
		assert.NotZero(t, reset, "the connections queued in the old socket were reset")
		assert.Equal(t, 1, logs.seen(reusePortWarning), "Shutdown warned")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	assert.ErrorIs(t, <-errc, reactor.ErrServerClosed)
}
