package reactor_test

// How a server stops when something goes wrong, or when it is asked to from
// the wrong place: a failing loop, a Stop on a server's loop, a Shutdown
// from a handler. None of these may hang or swallow a connection.

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// failingDispatcher wraps a real backend; fail makes its next Wait (and
// every later one) return an error, as a broken epoll instance would, and
// failModify does the same to Modify.
type failingDispatcher struct {
	reactor.Dispatcher
	fail       atomic.Bool
	failModify atomic.Bool
}

var errBroken = errors.New("dispatcher broken on purpose")

func (d *failingDispatcher) Wait(events []reactor.Event, timeout time.Duration) (int, error) {
	if d.fail.Load() {
		return 0, errBroken
	}
	n, err := d.Dispatcher.Wait(events, timeout)
	if d.fail.Load() {
		return 0, errBroken
	}
	return n, err
}

func (d *failingDispatcher) Modify(fd int, ev reactor.Events) error {
	if d.failModify.Load() {
		return os.NewSyscallError("epoll_ctl", errBroken)
	}
	return d.Dispatcher.Modify(fd, ev)
}

// breakWait makes the dispatcher fail and wakes its loop so it notices.
func (d *failingDispatcher) breakWait() {
	d.fail.Store(true)
	_ = d.Dispatcher.Wake()
}

// failingFactory hands out failingDispatchers over epoll and remembers
// them in creation order (a server creates its main loop's first).
type failingFactory struct {
	mu  sync.Mutex
	all []*failingDispatcher
}

func (f *failingFactory) new() (reactor.Dispatcher, error) {
	d, err := reactor.Epoll()
	if err != nil {
		return nil, err
	}
	fd := &failingDispatcher{Dispatcher: d}
	f.mu.Lock()
	f.all = append(f.all, fd)
	f.mu.Unlock()
	return fd, nil
}

func (f *failingFactory) get(i int) *failingDispatcher {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.all[i]
}

func TestLoopFailureStopsTheServer(t *testing.T) {
	for _, tt := range []struct {
		name  string
		which int // which dispatcher fails: 0 is the main (accepting) loop's
	}{
		{"the accepting loop", 0},
		{"a sub-loop", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var f failingFactory
			lc := newLifecycleCounter()
			srv, err := reactor.NewServer("127.0.0.1:0", lc, reactor.WithDispatcher(f.new), reactor.WithLoops(2))
			require.NoError(t, err)
			served := make(chan error, 1)
			go func() { served <- srv.Serve() }()
			conns := make([]net.Conn, 0, 8)
			for range 8 {
				c, err := net.Dial("tcp", srv.Addr().String())
				require.NoError(t, err)
				conns = append(conns, c)
			}
			lc.waitOpened(t, 8)
			f.get(tt.which).breakWait()
			select {
			case err := <-served:
				assert.ErrorIs(t, err, errBroken)
			case <-time.After(testTimeout):
				t.Fatal("Serve did not return after a loop failed")
			}
			closed := make(chan error, 1)
			go func() { closed <- srv.Close() }()
			select {
			case <-closed:
			case <-time.After(testTimeout):
				t.Fatal("Close hung after a loop failed")
			}
			// Every connection that opened was closed; none was lost in
			// a queue.
			assert.Equal(t, lc.opened.Load(), lc.closed.Load())
			for _, c := range conns {
				_ = c.Close()
			}
		})
	}
}

// lifecycleCounter counts OnOpen and OnClose.
type lifecycleCounter struct {
	reactor.HandlerFuncs
	opened, closed atomic.Int64
	openc          chan struct{}
}

func newLifecycleCounter() *lifecycleCounter {
	return &lifecycleCounter{openc: make(chan struct{}, 1024)}
}

func (h *lifecycleCounter) OnOpen(*reactor.Conn) {
	h.opened.Add(1)
	h.openc <- struct{}{}
}

func (h *lifecycleCounter) OnClose(*reactor.Conn, error) { h.closed.Add(1) }

func (h *lifecycleCounter) waitOpened(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-h.openc:
		case <-time.After(testTimeout):
			t.Fatal("connections did not open")
		}
	}
}

func TestServerLoopRefusesStop(t *testing.T) {
	loopc := make(chan *reactor.EventLoop, 1)
	srv := serve(t, reactor.HandlerFuncs{Open: func(c *reactor.Conn) { loopc <- c.Loop() }}, reactor.WithLoops(1))
	c := dial(t, srv)
	defer c.Close()
	l := <-loopc
	assert.ErrorIs(t, l.Stop(), reactor.ErrServerLoop)
	// The server still serves on that loop.
	c2 := dial(t, srv)
	defer c2.Close()
	<-loopc
}

func TestShutdownFromAHandler(t *testing.T) {
	for _, hard := range []bool{false, true} {
		name := "Shutdown"
		if hard {
			name = "Close"
		}
		t.Run(name, func(t *testing.T) {
			var srv *reactor.Server
			got := make(chan error, 1)
			h := reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
				in.Discard(in.Len())
				if hard {
					got <- srv.Close()
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				defer cancel()
				got <- srv.Shutdown(ctx)
			}}
			var err error
			srv, err = reactor.NewServer("127.0.0.1:0", h, reactor.WithLoops(1))
			require.NoError(t, err)
			served := make(chan error, 1)
			go func() { served <- srv.Serve() }()
			c := dial(t, srv)
			defer c.Close()
			_, err = c.Write([]byte("quit"))
			require.NoError(t, err)
			select {
			case err := <-got:
				assert.ErrorIs(t, err, reactor.ErrInLoop)
			case <-time.After(testTimeout):
				t.Fatal("Shutdown called from a handler did not return")
			}
			_, _ = io.ReadAll(c) // to the server's FIN (or reset, for Close)
			_ = c.Close()
			select {
			case err := <-served:
				assert.ErrorIs(t, err, reactor.ErrServerClosed)
			case <-time.After(testTimeout):
				t.Fatal("the server did not stop")
			}
		})
	}
}

func TestSubmitToAStoppedLoop(t *testing.T) {
	l, err := reactor.NewEventLoop(nil)
	require.NoError(t, err)
	ran := make(chan struct{})
	require.NoError(t, l.Submit(func() { close(ran) }))
	go func() { _ = l.Run() }()
	<-ran
	require.NoError(t, l.Stop())
	<-l.Done()
	assert.ErrorIs(t, l.Submit(func() { t.Error("a task ran on a stopped loop") }), reactor.ErrLoopStopped)
	tm := l.AfterFunc(0, func() { t.Error("a timer fired on a stopped loop") })
	assert.False(t, tm.Stop(), "the timer was never pending")
}

func TestServerAddrAndServeTwice(t *testing.T) {
	opened := make(chan struct{}, 1)
	srv, err := reactor.NewServer("127.0.0.1:0", reactor.HandlerFuncs{Open: func(*reactor.Conn) { opened <- struct{}{} }},
		reactor.WithLoops(0))
	require.NoError(t, err)
	a := srv.Addr().(*net.TCPAddr)
	want := a.String()
	a.Port = 1
	a.IP[0] = 10
	assert.Equal(t, want, srv.Addr().String(), "Addr returns a copy")

	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	// The first Serve is running once a connection has opened.
	c, err := net.Dial("tcp", want)
	require.NoError(t, err)
	<-opened
	_ = c.Close()
	assert.ErrorIs(t, srv.Serve(), reactor.ErrServerRunning)
	require.NoError(t, srv.Close())
	assert.ErrorIs(t, <-served, reactor.ErrServerClosed)
	assert.ErrorIs(t, srv.Serve(), reactor.ErrServerClosed)
}

// A socket error that surfaces in Modify ends the connection with a
// *net.OpError whose Source is the connection's own address.
func TestModifyErrorIsAnOpError(t *testing.T) {
	var f failingFactory
	errc := make(chan error, 1)
	local := make(chan net.Addr, 1)
	h := reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			local <- c.LocalAddr()
			f.get(0).failModify.Store(true)
			_, _ = c.Write(make([]byte, 32<<20)) // more than the kernel takes: EventWrite must be registered
		},
		Close: func(_ *reactor.Conn, err error) { errc <- err },
	}
	srv := serve(t, h, reactor.WithDispatcher(f.new), reactor.WithLoops(0))
	c := dialSmallWindow(t, srv, slowRcvBuf)
	defer c.Close()
	err := <-errc
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	assert.ErrorIs(t, err, errBroken)
	assert.Equal(t, (<-local).String(), oe.Source.String())
	assert.Equal(t, c.LocalAddr().String(), oe.Addr.String())
}
