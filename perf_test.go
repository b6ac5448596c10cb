package reactor

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// rawEchoClient is a blocking loopback client driven with raw syscalls, so
// that it allocates nothing itself and an allocation count of a round trip
// measures the server alone.
type rawEchoClient struct {
	fd  int
	buf []byte
}

func dialRaw(tb testing.TB, addr net.Addr) *rawEchoClient {
	tb.Helper()
	ta := addr.(*net.TCPAddr)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(tb, err)
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	require.NoError(tb, unix.Connect(fd, sa))
	require.NoError(tb, unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1))
	tv := unix.NsecToTimeval(int64(30 * time.Second))
	require.NoError(tb, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	tb.Cleanup(func() { _ = unix.Close(fd) }) // test cleanup
	return &rawEchoClient{fd: fd, buf: make([]byte, 64<<10)}
}

// roundTrip writes msg and reads until len(msg) bytes came back.
func (c *rawEchoClient) roundTrip(tb testing.TB, msg []byte) {
	if _, err := unix.Write(c.fd, msg); err != nil {
		tb.Fatalf("write: %v", err)
	}
	for got := 0; got < len(msg); {
		n, err := unix.Read(c.fd, c.buf[:len(msg)-got])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			tb.Fatalf("read after %d bytes: n=%d err=%v", got, n, err)
		}
		got += n
	}
}

func startEcho(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	return startServing(tb, nil, opts...)
}

// startServing runs h (nil: an echo handler) on loopback with one loop
// and opts, and shuts it down gracefully when the test ends.
func startServing(tb testing.TB, h Handler, opts ...Option) *Server {
	tb.Helper()
	if h == nil {
		h = HandlerFuncs{Message: func(c *Conn, in *Buffer) { _, _ = c.Write(in.Next(in.Len())) }}
	}
	srv, err := NewServer("127.0.0.1:0", h, append([]Option{WithLoops(1)}, opts...)...)
	require.NoError(tb, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	tb.Cleanup(func() {
		require.NoError(tb, srv.Shutdown(context.Background()))
		require.ErrorIs(tb, <-errc, ErrServerClosed)
	})
	return srv
}

// TestEchoAllocatesNothing is the design's rule of no allocation per
// message as a test (the README's Performance section): in steady state
// the read → handler → write path allocates nothing, over both kernel
// backends, with and without connection timeouts.
func TestEchoAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers on purpose")
	}
	for _, fc := range kernelFactories {
		for _, timeouts := range []bool{false, true} {
			name := fc.name
			opts := []Option{WithDispatcher(fc.f)}
			if timeouts {
				name += "/timeouts"
				opts = append(opts, WithIdleTimeout(time.Hour), WithWriteTimeout(time.Hour))
			}
			t.Run(name, func(t *testing.T) {
				srv := startEcho(t, opts...)
				c := dialRaw(t, srv.Addr())
				msg := make([]byte, 64)
				for range 200 { // warm the pools and grow the loop's slices
					c.roundTrip(t, msg)
				}
				allocs := testing.AllocsPerRun(2000, func() { c.roundTrip(t, msg) })
				if allocs != 0 {
					t.Errorf("%.3f allocations per echoed message, want 0", allocs)
				}
			})
		}
	}
}

func BenchmarkEchoLoopback(b *testing.B) {
	for _, size := range []int{64, 4 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			srv := startEcho(b)
			c := dialRaw(b, srv.Addr())
			msg := make([]byte, size)
			c.roundTrip(b, msg)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c.roundTrip(b, msg)
			}
		})
	}
}

func BenchmarkSubmit(b *testing.B) {
	l, err := NewEventLoop(Epoll)
	require.NoError(b, err)
	errc := make(chan error, 1)
	go func() { errc <- l.Run() }()
	defer func() {
		l.Stop()
		require.NoError(b, <-errc)
	}()
	done := make(chan struct{}, 1)
	task := func() { done <- struct{}{} }
	b.ReportAllocs()
	for b.Loop() {
		l.Submit(task)
		<-done
	}
}

func BenchmarkTimerHeap(b *testing.B) {
	var h timerHeap
	l := &EventLoop{}
	timers := make([]*Timer, 1024)
	for i := range timers {
		timers[i] = &Timer{loop: l, when: time.Duration(i*7919%1024) * time.Millisecond, seq: uint64(i)}
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, t := range timers {
			h.push(t)
		}
		for len(h) > 0 {
			h.pop()
		}
	}
}
