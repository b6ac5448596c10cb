package reactor_test

// Hardening tests over real loopback sockets: timeouts, limits and resets
// at scale, with the memory the process holds measured from /proc.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// timedLifecycle records, on each connection's loop clock, when it opened
// and when and why it closed, and closes done when want connections have
// closed.
type timedLifecycle struct {
	reactor.HandlerFuncs
	want int

	mu      sync.Mutex
	openAt  map[*reactor.Conn]time.Duration
	closes  []timedClose
	opened  chan *reactor.Conn // every OnOpen, if not nil (buffered by the test)
	done    chan struct{}
	doneSet bool
}

type timedClose struct {
	c        *reactor.Conn
	err      error
	lifetime time.Duration // from OnOpen to OnClose on the loop's clock
}

func newTimedLifecycle(want int, inner reactor.HandlerFuncs) *timedLifecycle {
	return &timedLifecycle{HandlerFuncs: inner, want: want, openAt: map[*reactor.Conn]time.Duration{}, done: make(chan struct{})}
}

func (h *timedLifecycle) OnOpen(c *reactor.Conn) {
	h.mu.Lock()
	h.openAt[c] = c.Loop().Now()
	h.mu.Unlock()
	if h.opened != nil {
		h.opened <- c
	}
	h.HandlerFuncs.OnOpen(c)
}

func (h *timedLifecycle) OnClose(c *reactor.Conn, err error) {
	h.mu.Lock()
	h.closes = append(h.closes, timedClose{c: c, err: err, lifetime: c.Loop().Now() - h.openAt[c]})
	if len(h.closes) == h.want && !h.doneSet {
		h.doneSet = true
		close(h.done)
	}
	h.mu.Unlock()
	h.HandlerFuncs.OnClose(c, err)
}

// wait waits until want connections have closed.
func (h *timedLifecycle) wait(t *testing.T) []timedClose {
	t.Helper()
	select {
	case <-h.done:
	case <-time.After(testTimeout):
		h.mu.Lock()
		defer h.mu.Unlock()
		require.Failf(t, "timeout", "only %d of %d connections closed", len(h.closes), h.want)
	}
	h.mu.Lock()
	closes := append([]timedClose(nil), h.closes...)
	h.mu.Unlock()
	// OnClose runs before its loop closes the descriptor and leaves
	// Stats.Open; a task queued on each loop now runs after both. (A
	// stopped loop has finished its work already.)
	for _, l := range loopsOf(closes) {
		ran := make(chan struct{})
		if l.Submit(func() { close(ran) }) == nil {
			<-ran
		}
	}
	return closes
}

// loopsOf returns the loops the closed connections were on, once each.
func loopsOf(closes []timedClose) []*reactor.EventLoop {
	seen := map[*reactor.EventLoop]bool{}
	var loops []*reactor.EventLoop
	for _, cl := range closes {
		if l := cl.c.Loop(); !seen[l] {
			seen[l] = true
			loops = append(loops, l)
		}
	}
	return loops
}

// TestIdleTimeoutClosesManyIdleConns opens 2000 connections that never send
// a byte: the idle timeout must close every one of them, none before its
// time, and each client sees an orderly FIN.
func TestIdleTimeoutClosesManyIdleConns(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 200
	}
	const d = time.Second
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			h := newTimedLifecycle(n, echo())
			srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(2), reactor.WithIdleTimeout(d))
			clients := make([]*net.TCPConn, 0, n)
			defer func() {
				for _, c := range clients {
					c.Close()
				}
			}()
			for range n {
				clients = append(clients, dial(t, srv))
			}
			closes := h.wait(t)
			require.Len(t, closes, n)
			earliest, latest := closes[0].lifetime, closes[0].lifetime
			for _, cl := range closes {
				assert.ErrorIs(t, cl.err, reactor.ErrIdleTimeout)
				assert.GreaterOrEqual(t, cl.lifetime, d, "closed before the idle timeout")
				earliest, latest = min(earliest, cl.lifetime), max(latest, cl.lifetime)
			}
			t.Logf("%d connections closed %v to %v after OnOpen (timeout %v)", n, earliest, latest, d)
			for i, c := range clients {
				b, err := io.ReadAll(c)
				require.NoError(t, err, "client %d should read an orderly EOF", i)
				require.Empty(t, b)
			}
			st := srv.Stats()
			assert.Equal(t, int64(n), st.Closed.IdleTimeout)
			assert.Equal(t, int64(0), st.Open)
		})
	}
}

// rssKiB reads a field (VmRSS, VmHWM) of /proc/self/status, in KiB.
func rssKiB(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			require.NoError(t, err)
			return kb
		}
	}
	require.NoError(t, sc.Err())
	require.Failf(t, "no field", "%s not in /proc/self/status", field)
	return 0
}

// floodRSSBound is how much the process's resident memory may grow while a
// client floods a server that consumes nothing, with WithMaxInputSize at
// 1 MiB: the server holds at most 1 MiB of input and its 64 KiB read
// buffer, the client a 256 KiB chunk; the rest is headroom for the garbage
// collector's pacing and the race detector's shadow memory. Without the
// limit the flood would take a GiB.
const floodRSSBound = 32 << 20

// TestMaxInputSizeCutsOffFlood has a client send up to 1 GiB to a handler
// that never consumes its input: WithMaxInputSize must cut it off, and the
// process's peak resident memory (VmHWM, reset before the flood; or, where
// it cannot be reset, VmRSS sampled every MiB) must stay within
// floodRSSBound of where it started.
func TestMaxInputSizeCutsOffFlood(t *testing.T) {
	const limit, total, chunk = 1 << 20, 1 << 30, 256 << 10
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			h := newTimedLifecycle(1, reactor.HandlerFuncs{Message: func(*reactor.Conn, *reactor.Buffer) {}})
			srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(1), reactor.WithMaxInputSize(limit))
			c := dial(t, srv)
			defer c.Close()

			base := rssKiB(t, "VmRSS")
			// Writing 5 to clear_refs resets VmHWM to the current RSS
			// (Linux 4.0+); if that is refused, sampling has to do.
			hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
			peak := base
			buf := bytes.Repeat([]byte("flood"), chunk/5+1)[:chunk]
			sent := 0
			var werr error
			for sent < total {
				var n int
				n, werr = c.Write(buf)
				sent += n
				if werr != nil {
					break
				}
				if sent%(1<<20) == 0 {
					peak = max(peak, rssKiB(t, "VmRSS"))
				}
			}
			closes := h.wait(t)
			peak = max(peak, rssKiB(t, "VmRSS"))
			if hwmReset {
				peak = max(peak, rssKiB(t, "VmHWM"))
			}
			require.Error(t, werr, "the flood should have been cut off")
			assert.Less(t, sent, limit+(64<<20), "cut off once the server's input, plus the kernel's buffers, were full")
			require.Len(t, closes, 1)
			assert.ErrorIs(t, closes[0].err, reactor.ErrInputTooLarge)
			growth := (peak - base) << 10
			t.Logf("sent %d MiB before the cut (%v); RSS %d MiB at start, peak growth %.1f MiB (bound %d MiB; VmHWM reset: %v)",
				sent>>20, werr, base>>10, float64(growth)/(1<<20), floodRSSBound>>20, hwmReset)
			assert.Less(t, growth, int64(floodRSSBound), "resident memory grew too much during the flood")
			st := srv.Stats()
			assert.Equal(t, int64(1), st.Closed.InputTooLarge)
			assert.Greater(t, st.BytesRead, int64(limit), "the server read past the limit before closing")
		})
	}
}

// TestWriteTimeoutCutsOffNonReader has the server write 32 MiB to a client
// that never reads: once the kernel's buffers are full, the output makes no
// progress, and the write timeout must end the connection.
func TestWriteTimeoutCutsOffNonReader(t *testing.T) {
	const d = 300 * time.Millisecond
	const total = 32 << 20
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			h := newTimedLifecycle(1, reactor.HandlerFuncs{
				Open: func(c *reactor.Conn) { _, _ = c.Write(make([]byte, total)) },
			})
			srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(1), reactor.WithWriteTimeout(d))
			c := dialSmallWindow(t, srv, 4<<10)
			defer c.Close()
			closes := h.wait(t)
			require.Len(t, closes, 1)
			assert.ErrorIs(t, closes[0].err, reactor.ErrWriteTimeout)
			assert.GreaterOrEqual(t, closes[0].lifetime, d, "closed before the write timeout")
			assert.Contains(t, closes[0].err.Error(), "bytes pending")
			// The client gets what was in flight, then the end: never all
			// 32 MiB.
			got, _ := io.Copy(io.Discard, c)
			assert.Less(t, got, int64(total))
			st := srv.Stats()
			assert.Equal(t, int64(1), st.Closed.WriteTimeout)
			assert.Less(t, st.BytesWritten, int64(total))
		})
	}
}

// TestMaxConnsFloodLeavesExistingConns keeps WithMaxConns connections busy
// echoing while 500 more connect: each of those is accepted and closed at
// once, counted and logged rate-limited, and the busy ones never notice.
func TestMaxConnsFloodLeavesExistingConns(t *testing.T) {
	const limit, flood, rounds = 20, 500, 200
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			logs := newSignalHandler("connection limit reached")
			h := newTimedLifecycle(limit, echo())
			h.opened = make(chan *reactor.Conn, limit+flood)
			srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(2),
				reactor.WithMaxConns(limit), reactor.WithLogger(slog.New(logs)))
			busy := make([]*net.TCPConn, limit)
			for i := range busy {
				busy[i] = dial(t, srv)
				defer busy[i].Close()
				<-h.opened
			}

			// The busy connections echo throughout the flood.
			var wg sync.WaitGroup
			echoErrs := make(chan error, limit)
			for i, c := range busy {
				wg.Add(1)
				go func() {
					defer wg.Done()
					msg := []byte(fmt.Sprintf("busy %02d ping", i))
					back := make([]byte, len(msg))
					for r := range rounds {
						if _, err := c.Write(msg); err != nil {
							echoErrs <- fmt.Errorf("conn %d round %d: %w", i, r, err)
							return
						}
						if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, msg) {
							echoErrs <- fmt.Errorf("conn %d round %d: %q, %v", i, r, back, err)
							return
						}
					}
				}()
			}
			// The flood: each extra connection must be closed at once (EOF,
			// or a reset if the server closed it before the handshake's
			// last ACK was processed).
			floodErrs := make(chan error, flood)
			sem := make(chan struct{}, 50)
			for i := range flood {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					c, err := net.DialTimeout("tcp", srv.Addr().String(), testTimeout)
					if err != nil {
						floodErrs <- fmt.Errorf("flood %d: dial: %w", i, err)
						return
					}
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(testTimeout))
					n, err := c.Read(make([]byte, 1))
					if n != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
						floodErrs <- fmt.Errorf("flood %d: want EOF, got %d bytes, %v", i, n, err)
					}
				}()
			}
			wg.Wait()
			close(echoErrs)
			close(floodErrs)
			for err := range echoErrs {
				assert.NoError(t, err, "a connection within the limit was disturbed")
			}
			for err := range floodErrs {
				assert.NoError(t, err)
			}
			assert.Empty(t, h.opened, "a connection beyond the limit was opened")
			st := srv.Stats()
			assert.Equal(t, int64(limit+flood), st.Accepted)
			assert.Equal(t, int64(flood), st.Rejected)
			assert.Equal(t, int64(limit), st.Open)
			assert.Equal(t, bits.Len(flood), logs.seen("connection limit reached"), "logged at the 1st, 2nd, 4th, ... rejection")
		})
	}
}

// TestResetPeersDoNotKillProcess has 100 clients reset their connections
// while the server has output pending for each (so the server writes to
// reset peers), counting SIGPIPEs meanwhile: the server's writes use
// MSG_NOSIGNAL, so there must be none; a program that did not ignore
// SIGPIPE (a Go c-shared library, say) would otherwise die. Every
// connection must end with ECONNRESET or EPIPE, and the server must keep
// serving.
func TestResetPeersDoNotKillProcess(t *testing.T) {
	const n = 100
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			sigpipe := make(chan os.Signal, n)
			signal.Notify(sigpipe, syscall.SIGPIPE)
			defer signal.Stop(sigpipe)

			// Each connection gets 256 KiB at once, and more on every
			// flush that drains it: the server always has output pending.
			chunk := make([]byte, 256<<10)
			h := newTimedLifecycle(n, reactor.HandlerFuncs{
				Open:          func(c *reactor.Conn) { _, _ = c.Write(chunk) },
				WriteComplete: func(c *reactor.Conn) { _, _ = c.Write(chunk) },
			})
			srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(2))
			var wg sync.WaitGroup
			for i := range n {
				c := dial(t, srv)
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Half read a little first, half reset at once.
					if i%2 == 0 {
						_, err := io.ReadFull(c, make([]byte, 64<<10))
						assert.NoError(t, err)
					}
					assert.NoError(t, c.SetLinger(0))
					assert.NoError(t, c.Close())
				}()
			}
			wg.Wait()
			closes := h.wait(t)
			for _, cl := range closes {
				if !errors.Is(cl.err, syscall.ECONNRESET) && !errors.Is(cl.err, syscall.EPIPE) {
					assert.Fail(t, "unexpected close error", "%v", cl.err)
				}
			}
			st := srv.Stats()
			assert.Equal(t, int64(n), st.Closed.Reset+st.Closed.Error)
			assert.Empty(t, sigpipe, "a write raised SIGPIPE")

			// And the server still serves.
			srv2c := dial(t, srv)
			defer srv2c.Close()
			_, err := io.ReadFull(srv2c, make([]byte, 256<<10))
			assert.NoError(t, err)
		})
	}
}

// echoRoundTrip writes msg and reads its echo.
func echoRoundTrip(c net.Conn, msg, back []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	_, err := io.ReadFull(c, back)
	return err
}

// timeoutConfigs are the timeout settings the allocation test and the
// benchmark compare.
var timeoutConfigs = []struct {
	name string
	opts []reactor.Option
}{
	{"none", nil},
	{"idle", []reactor.Option{reactor.WithIdleTimeout(time.Hour)}},
	{"idle+write", []reactor.Option{reactor.WithIdleTimeout(time.Hour), reactor.WithWriteTimeout(time.Hour)}},
}

// TestEchoAllocsWithTimeouts measures the allocations of a whole echo round
// trip (client write, server read, OnMessage, Write, flush, client read;
// testing.AllocsPerRun counts every goroutine's) with idle and write
// timeouts on: restarting a timeout per message must allocate nothing.
func TestEchoAllocsWithTimeouts(t *testing.T) {
	for _, be := range backends {
		for _, tc := range timeoutConfigs {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				srv := serve(t, echo(), append([]reactor.Option{reactor.WithDispatcher(be.f), reactor.WithLoops(1)}, tc.opts...)...)
				c := dial(t, srv)
				defer c.Close()
				msg := bytes.Repeat([]byte("x"), 512)
				back := make([]byte, len(msg))
				for range 100 { // warm up: pools, buffers, the events slice
					require.NoError(t, echoRoundTrip(c, msg, back))
				}
				var err error
				allocs := testing.AllocsPerRun(2000, func() {
					if e := echoRoundTrip(c, msg, back); e != nil {
						err = e
					}
				})
				require.NoError(t, err)
				assert.Zero(t, allocs, "allocations per echo round trip")
			})
		}
	}
}

// BenchmarkEchoRoundTrip is one client's echo round trip of 512 bytes over
// loopback, with and without timeouts: the cost a timeout adds per message.
func BenchmarkEchoRoundTrip(b *testing.B) {
	for _, tc := range timeoutConfigs {
		b.Run(tc.name, func(b *testing.B) {
			srv, err := reactor.NewServer("127.0.0.1:0", echo(), append([]reactor.Option{reactor.WithLoops(1)}, tc.opts...)...)
			require.NoError(b, err)
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve() }()
			defer func() {
				require.NoError(b, srv.Close())
				require.ErrorIs(b, <-errc, reactor.ErrServerClosed)
			}()
			c, err := net.Dial("tcp", srv.Addr().String())
			require.NoError(b, err)
			defer c.Close()
			msg := bytes.Repeat([]byte("x"), 512)
			back := make([]byte, len(msg))
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if err := echoRoundTrip(c, msg, back); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
