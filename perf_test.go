package reactor

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
	h := HandlerFuncs{Message: func(c *Conn, in *Buffer) { _, _ = c.Write(in.Next(in.Len())) }}
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

// TestInlineFlushLeavesTheFlushList: the flush that follows OnMessage takes
// the connection off its loop's flush list when the callback's Write put it
// there last, so that flushAll does not visit it a second time (with
// thousands of connections, a visit out of the cache for nothing). A Write
// after that (here in OnWriteComplete) puts it back and is flushed. A
// connection the callback did not write to last stays on the list, and
// every byte still arrives.
func TestInlineFlushLeavesTheFlushList(t *testing.T) {
	s := NewSim(1)
	var (
		mu     sync.Mutex
		conns  []*Conn // in OnOpen order
		listed []bool  // at each OnWriteComplete: was the connection still on the flush list?
		acked  = map[*Conn]bool{}
	)
	h := HandlerFuncs{
		Open: func(c *Conn) {
			mu.Lock()
			defer mu.Unlock()
			conns = append(conns, c)
		},
		Message: func(c *Conn, in *Buffer) {
			msg := string(in.Next(in.Len()))
			mu.Lock()
			other := conns[0]
			mu.Unlock()
			_, _ = c.Write([]byte(msg))
			if msg == "both" {
				_, _ = other.Write([]byte("B")) // written last: other is the list's newest entry
			}
		},
		WriteComplete: func(c *Conn) {
			mu.Lock()
			defer mu.Unlock()
			listed = append(listed, c.has(sharedFlushQueued))
			if !acked[c] {
				acked[c] = true
				_, _ = c.Write([]byte("!"))
			}
		},
	}
	srv, err := NewServer("127.0.0.1:80", h, WithDispatcher(s.Dispatcher), WithLoops(0),
		WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	stop := s.Start(srv)
	defer func() { assert.NoError(t, stop()) }()

	b, err := s.Dial("127.0.0.1:80")
	require.NoError(t, err)
	_, _ = b.WriteString("ping")
	s.RunUntilIdle()
	assert.Equal(t, "ping!", string(b.ReadAll()), "the Write in OnWriteComplete is flushed too")
	mu.Lock()
	assert.Equal(t, []bool{false, false}, listed,
		"off the list at the inline flush, and again at flushAll's flush of the acknowledgement")
	listed = nil
	mu.Unlock()

	a, err := s.Dial("127.0.0.1:80")
	require.NoError(t, err)
	_, _ = a.WriteString("both")
	s.RunUntilIdle()
	assert.Equal(t, "both!", string(a.ReadAll()))
	assert.Equal(t, "B", string(b.ReadAll()))
	mu.Lock()
	assert.Equal(t, []bool{true, false, false}, listed,
		"a at the inline flush: still listed, behind b; then flushAll: a's acknowledgement, b's copy")
	mu.Unlock()
}
