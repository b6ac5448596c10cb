package graceful

import (
	"bytes"
	"context"
	"errors"
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
	"go.uber.org/goleak"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/examples/internal/extest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bound is how long any test waits for something that must happen.
const bound = 30 * time.Second

// fakeServer is a Server whose Serve and Shutdown do what the test says.
type fakeServer struct {
	serveErr   chan error    // Serve returns what is sent here
	shutdownIn chan struct{} // closed when Shutdown is called
	// shutdown is Shutdown's behaviour; closed is closed by Close.
	shutdown func(ctx context.Context, closed <-chan struct{}) error
	closeMu  sync.Mutex
	closed   chan struct{}
	nclose   int
}

func newFake(shutdown func(ctx context.Context, closed <-chan struct{}) error) *fakeServer {
	return &fakeServer{
		serveErr:   make(chan error, 1),
		shutdownIn: make(chan struct{}),
		shutdown:   shutdown,
		closed:     make(chan struct{}),
	}
}

func (f *fakeServer) Serve() error { return <-f.serveErr }

func (f *fakeServer) Shutdown(ctx context.Context) error {
	close(f.shutdownIn)
	err := f.shutdown(ctx, f.closed)
	f.serveErr <- reactor.ErrServerClosed // the loops are gone: Serve returns
	return err
}

func (f *fakeServer) Close() error {
	f.closeMu.Lock()
	defer f.closeMu.Unlock()
	if f.nclose++; f.nclose == 1 {
		close(f.closed)
	}
	return nil
}

// logBuffer is a logger whose output the test reads once Run has returned.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

// runAsync runs Run on a goroutine and returns its result channel.
func runAsync(srv Server, stop <-chan os.Signal, timeout time.Duration, log *slog.Logger) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Run(srv, stop, timeout, log) }()
	return done
}

func wait[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(bound):
		require.FailNow(t, "timed out waiting for "+what)
	}
	var zero T
	return zero
}

func TestRunFake(t *testing.T) {
	t.Run("graceful shutdown completes", func(t *testing.T) {
		f := newFake(func(context.Context, <-chan struct{}) error { return nil })
		stop := make(chan os.Signal, 2)
		log, out := logBuffer()
		done := runAsync(f, stop, time.Hour, log)
		stop <- syscall.SIGTERM
		assert.NoError(t, wait(t, done, "Run"))
		assert.Zero(t, f.nclose, "no hard close")
		assert.Contains(t, out.String(), `msg="shutting down" signal=terminated`)
	})
	t.Run("shutdown runs out of time", func(t *testing.T) {
		// Like reactor's: on expiry it closes hard and returns ctx.Err().
		f := newFake(func(ctx context.Context, _ <-chan struct{}) error {
			<-ctx.Done()
			return ctx.Err()
		})
		stop := make(chan os.Signal, 2)
		log, _ := logBuffer()
		done := runAsync(f, stop, time.Millisecond, log)
		stop <- os.Interrupt
		err := wait(t, done, "Run")
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorContains(t, err, "closed hard")
	})
	t.Run("second signal closes at once", func(t *testing.T) {
		// A shutdown that would take an hour, unless closed.
		f := newFake(func(ctx context.Context, closed <-chan struct{}) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-closed:
				return nil // reactor's Shutdown returns nil once Close has stopped the loops
			}
		})
		stop := make(chan os.Signal, 2)
		log, out := logBuffer()
		done := runAsync(f, stop, time.Hour, log)
		stop <- syscall.SIGTERM
		wait(t, f.shutdownIn, "Shutdown")
		stop <- os.Interrupt
		err := wait(t, done, "Run")
		assert.ErrorIs(t, err, ErrInterrupted)
		assert.Equal(t, 1, f.nclose)
		assert.Contains(t, out.String(), `msg="second signal: closing at once" signal=interrupt`)
	})
	t.Run("serve fails by itself", func(t *testing.T) {
		f := newFake(nil)
		boom := errors.New("boom")
		f.serveErr <- boom
		log, _ := logBuffer()
		err := Run(f, make(chan os.Signal, 2), time.Hour, log)
		assert.ErrorIs(t, err, boom)
	})
	t.Run("serve ends unasked", func(t *testing.T) {
		f := newFake(nil)
		f.serveErr <- reactor.ErrServerClosed // closed by someone else: not a clean stop
		log, _ := logBuffer()
		assert.ErrorIs(t, Run(f, make(chan os.Signal, 2), time.Hour, log), reactor.ErrServerClosed)
	})
}

// hog is a server whose every connection is sent size bytes at once, and
// which reports each OnOpen: with a client that does not read, its graceful
// shutdown cannot finish, because it must flush what it accepted first.
func hog(t *testing.T, size int) (srv *reactor.Server, opened <-chan struct{}) {
	t.Helper()
	open := make(chan struct{}, 16)
	data := make([]byte, size)
	srv, err := reactor.NewServer("127.0.0.1:0", reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			_, _ = c.Write(data) // buffered whole: Write never drops
			open <- struct{}{}
		},
	}, reactor.WithLoops(1), reactor.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	return srv, open
}

// dialStuck connects a client that reads nothing, with a small receive
// buffer, so the server's output to it stays pending.
func dialStuck(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), bound)
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).SetReadBuffer(4096))
	t.Cleanup(func() { c.Close() })
	return c
}

// Real servers: Run's result says whether reactor's Shutdown was graceful.
func TestRunReactor(t *testing.T) {
	stuck, err := extest.StuckOutputSize()
	require.NoError(t, err)
	t.Run("pending output, shutdown runs out of time", func(t *testing.T) {
		srv, opened := hog(t, stuck)
		stop := make(chan os.Signal, 2)
		log, _ := logBuffer()
		done := runAsync(srv, stop, 50*time.Millisecond, log)
		dialStuck(t, srv.Addr())
		wait(t, opened, "OnOpen")
		stop <- syscall.SIGTERM
		err := wait(t, done, "Run")
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("pending output, second signal", func(t *testing.T) {
		srv, opened := hog(t, stuck)
		w := &shutdownSeen{Server: srv, in: make(chan struct{})}
		stop := make(chan os.Signal, 2)
		log, _ := logBuffer()
		done := runAsync(w, stop, time.Hour, log)
		dialStuck(t, srv.Addr())
		wait(t, opened, "OnOpen")
		stop <- syscall.SIGTERM
		wait(t, w.in, "Shutdown")
		stop <- syscall.SIGTERM
		assert.ErrorIs(t, wait(t, done, "Run"), ErrInterrupted)
	})
	t.Run("client reads everything, shutdown is graceful", func(t *testing.T) {
		const size = 1 << 20
		srv, opened := hog(t, size)
		stop := make(chan os.Signal, 2)
		log, _ := logBuffer()
		done := runAsync(srv, stop, time.Hour, log)
		c, err := net.DialTimeout("tcp", srv.Addr().String(), bound)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(bound)))
		wait(t, opened, "OnOpen")
		stop <- syscall.SIGTERM
		got, err := io.ReadAll(c) // to the server's FIN
		require.NoError(t, err)
		assert.Len(t, got, size, "every byte written before the shutdown")
		require.NoError(t, c.Close())
		assert.NoError(t, wait(t, done, "Run"))
	})
}

// shutdownSeen reports, by closing in, that Shutdown was called.
type shutdownSeen struct {
	*reactor.Server
	in   chan struct{}
	once sync.Once
}

func (s *shutdownSeen) Shutdown(ctx context.Context) error {
	s.once.Do(func() { close(s.in) })
	return s.Server.Shutdown(ctx)
}
