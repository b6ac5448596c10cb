package reactor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// backends are the kernel dispatchers every real-socket test runs over.
var backends = []struct {
	name string
	f    reactor.DispatcherFactory
}{
	{"epoll", reactor.Epoll},
	{"poll", reactor.Poll},
}

// testTimeout bounds every wait in these tests, so a bug fails a test
// instead of hanging the suite. It is a safety net, never a synchronisation.
const testTimeout = 60 * time.Second

// serve starts a server on 127.0.0.1:0 and shuts it down when the test ends,
// checking that Serve returned ErrServerClosed.
func serve(t *testing.T, h reactor.Handler, opts ...reactor.Option) *reactor.Server {
	t.Helper()
	return serveAt(t, "127.0.0.1:0", h, opts...)
}

// serveAt is serve on the address addr (see NewServer).
func serveAt(t *testing.T, addr string, h reactor.Handler, opts ...reactor.Option) *reactor.Server {
	t.Helper()
	srv, err := reactor.NewServer(addr, h, opts...)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.ErrorIs(t, <-errc, reactor.ErrServerClosed)
	})
	return srv
}

func dial(t *testing.T, srv *reactor.Server) *net.TCPConn {
	t.Helper()
	return dialWith(t, srv, net.Dialer{Timeout: testTimeout})
}

// dialSmallWindow dials with a small receive buffer: a slow reader. The size
// is set before connect, so the window the client advertises is small from
// the start (shrinking it later makes the kernel drop data already in flight
// and stalls the connection in retransmission back-off).
func dialSmallWindow(t *testing.T, srv *reactor.Server, size int) *net.TCPConn {
	t.Helper()
	return dialWith(t, srv, net.Dialer{Timeout: testTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		}); err != nil {
			return err
		}
		return serr
	}})
}

func dialWith(t *testing.T, srv *reactor.Server, d net.Dialer) *net.TCPConn {
	t.Helper()
	c, err := d.Dial("tcp", srv.Addr().String())
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	return c.(*net.TCPConn)
}

// echo is the echo handler: everything read is written back.
func echo() reactor.HandlerFuncs {
	return reactor.HandlerFuncs{
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			_, _ = c.Write(in.Next(in.Len()))
		},
	}
}

// lifecycle counts callbacks and checks their order per connection.
type lifecycle struct {
	reactor.HandlerFuncs
	mu      sync.Mutex
	opened  int
	closed  int
	errs    []error
	state   map[*reactor.Conn]string
	badSeq  []string
	allDone chan struct{}
	want    int // close allDone when this many connections have closed
}

func newLifecycle(want int, inner reactor.HandlerFuncs) *lifecycle {
	return &lifecycle{HandlerFuncs: inner, state: map[*reactor.Conn]string{}, allDone: make(chan struct{}), want: want}
}

func (h *lifecycle) OnOpen(c *reactor.Conn) {
	h.mu.Lock()
	if _, seen := h.state[c]; seen {
		h.badSeq = append(h.badSeq, "OnOpen twice")
	}
	h.state[c] = "open"
	h.opened++
	h.mu.Unlock()
	h.HandlerFuncs.OnOpen(c)
}

func (h *lifecycle) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	h.mu.Lock()
	if h.state[c] != "open" {
		h.badSeq = append(h.badSeq, "OnMessage in state "+h.state[c])
	}
	h.mu.Unlock()
	h.HandlerFuncs.OnMessage(c, in)
}

func (h *lifecycle) OnClose(c *reactor.Conn, err error) {
	h.mu.Lock()
	if h.state[c] != "open" {
		h.badSeq = append(h.badSeq, "OnClose in state "+h.state[c])
	}
	h.state[c] = "closed"
	h.closed++
	h.errs = append(h.errs, err)
	if h.closed == h.want {
		close(h.allDone)
	}
	h.mu.Unlock()
	h.HandlerFuncs.OnClose(c, err)
}

func (h *lifecycle) wait(t *testing.T) {
	t.Helper()
	select {
	case <-h.allDone:
	case <-time.After(testTimeout):
		h.mu.Lock()
		defer h.mu.Unlock()
		t.Fatalf("only %d of %d connections closed (%d opened)", h.closed, h.want, h.opened)
	}
}

func TestEchoIntegrity(t *testing.T) {
	type mode struct {
		loops     int
		reusePort bool
	}
	modes := []mode{{0, false}, {4, false}, {0, true}, {4, true}}
	for _, be := range backends {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/loops=%d/reuseport=%v", be.name, m.loops, m.reusePort), func(t *testing.T) {
				srv := serve(t, echo(), reactor.WithDispatcher(be.f), reactor.WithLoops(m.loops), reactor.WithReusePort(m.reusePort))
				echoMany(t, srv.Addr())
			})
		}
	}
}

// echoMany runs echoOnce from 200 concurrent clients (20 with -short) with
// payloads of up to 1 MiB (64 KiB), each from its own seed.
func echoMany(t *testing.T, addr net.Addr) {
	t.Helper()
	if testing.Short() {
		echoClients(t, addr, 20, 64<<10)
		return
	}
	echoClients(t, addr, 200, 1<<20)
}

// echoClients runs echoOnce from the given number of concurrent clients,
// with payloads of up to maxSize bytes.
func echoClients(t *testing.T, addr net.Addr, clients, maxSize int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoOnce(addr.Network(), addr.String(), rand.New(rand.NewPCG(uint64(i), 7)), maxSize)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

// echoOnce connects to addr over network ("tcp" or "unix"), sends a random
// payload in random chunks while reading the echo concurrently, then
// half-closes and compares digests of what was sent and what came back.
func echoOnce(network, addr string, rng *rand.Rand, maxSize int) error {
	c, err := net.DialTimeout(network, addr, testTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	payload := make([]byte, 1+rng.IntN(maxSize))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	got := make(chan []byte, 1)
	readErr := make(chan error, 1)
	go func() {
		b, err := io.ReadAll(c)
		got <- b
		readErr <- err
	}()
	for rest := payload; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(64<<10))
		if _, err := c.Write(rest[:n]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		rest = rest[n:]
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return err
	}
	back := <-got
	if err := <-readErr; err != nil {
		return fmt.Errorf("read after %d of %d bytes: %w", len(back), len(payload), err)
	}
	if sha256.Sum256(back) != sha256.Sum256(payload) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(payload), len(back))
	}
	return nil
}

func TestHalfCloseGetsEverythingBack(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			h := newLifecycle(1, echo())
			srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(1))
			c := dial(t, srv)
			defer c.Close()
			payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
			go func() {
				_, _ = c.Write(payload) // failure shows up as a short read below
				_ = c.CloseWrite()
			}()
			back, err := io.ReadAll(c)
			require.NoError(t, err)
			assert.Equal(t, len(payload), len(back))
			assert.True(t, bytes.Equal(payload, back), "echo differs")
			h.wait(t)
			assert.Equal(t, []error{nil}, h.errs, "a peer half-close is an orderly close")
		})
	}
}

// producer writes total bytes to each connection from the loop, in chunks,
// respecting backpressure: it stops on OnHighWater and continues on
// OnLowWater (or when a flush completes), and records the most output it
// ever saw buffered.
type producer struct {
	reactor.HandlerFuncs
	total, chunk int
	hwm          int
	mu           sync.Mutex
	maxBuffered  int
	highWaters   int
	sent         map[*reactor.Conn]int
	paused       map[*reactor.Conn]bool
	throttled    int // times pump stopped because output was above the mark
}

func (p *producer) pump(c *reactor.Conn) {
	chunk := make([]byte, p.chunk)
	for {
		p.mu.Lock()
		sent, paused := p.sent[c], p.paused[c]
		p.mu.Unlock()
		if paused || sent >= p.total {
			return
		}
		if p.hwm > 0 && c.Buffered() > p.hwm {
			p.mu.Lock()
			p.throttled++
			p.mu.Unlock()
			return
		}
		n := min(p.chunk, p.total-sent)
		for i := range n {
			chunk[i] = byte(sent + i)
		}
		if _, err := c.Write(chunk[:n]); err != nil {
			return
		}
		p.mu.Lock()
		p.sent[c] = sent + n
		p.maxBuffered = max(p.maxBuffered, c.Buffered())
		p.mu.Unlock()
		if sent+n == p.total {
			_ = c.Close()
			return
		}
	}
}

func (p *producer) OnOpen(c *reactor.Conn)          { p.pump(c) }
func (p *producer) OnWriteComplete(c *reactor.Conn) { p.pump(c) }
func (p *producer) OnHighWater(c *reactor.Conn, buffered int) {
	p.mu.Lock()
	p.paused[c] = true
	p.highWaters++
	p.maxBuffered = max(p.maxBuffered, buffered)
	p.mu.Unlock()
}
func (p *producer) OnLowWater(c *reactor.Conn, buffered int) {
	p.mu.Lock()
	p.paused[c] = false
	p.mu.Unlock()
	p.pump(c)
}

func TestSlowReaderGetsEverythingWithinHighWaterMark(t *testing.T) {
	total := 64 << 20
	if testing.Short() {
		total = 8 << 20
	}
	const hwm, chunk = 256 << 10, 16 << 10
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			p := &producer{total: total, chunk: chunk, hwm: hwm, sent: map[*reactor.Conn]int{}, paused: map[*reactor.Conn]bool{}}
			srv := serve(t, p, reactor.WithDispatcher(be.f), reactor.WithLoops(1), reactor.WithHighWaterMark(hwm))
			c := dialSmallWindow(t, srv, 4<<10) // a slow, small-windowed reader
			defer c.Close()
			buf := make([]byte, 4<<10)
			got := 0
			for {
				n, err := c.Read(buf)
				for i := range n {
					if buf[i] != byte(got+i) {
						require.Failf(t, "corrupt stream", "byte %d is %d, want %d", got+i, buf[i], byte(got+i))
					}
				}
				got += n
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
			}
			assert.Equal(t, total, got)
			p.mu.Lock()
			defer p.mu.Unlock()
			assert.LessOrEqual(t, p.maxBuffered, hwm+chunk, "buffered output exceeded the high-water mark by more than one write")
			assert.Positive(t, p.throttled, "a slow reader should have made the producer wait")
		})
	}
}

// TestEchoBackpressurePausesReading has a client write far more than it
// reads to an echo server: the server must stop reading from it once its
// output passes the high-water mark (telling the handler), so the output it
// holds stays within one read of the mark, and once the client reads,
// everything arrives.
func TestEchoBackpressurePausesReading(t *testing.T) {
	total := 64 << 20
	if testing.Short() {
		total = 16 << 20
	}
	const hwm, readBuf = 256 << 10, 64 << 10
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			var mu sync.Mutex
			maxBuffered, highs, lows := 0, 0, 0
			h := &watermarks{
				HandlerFuncs: reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
					_, _ = c.Write(in.Next(in.Len()))
					mu.Lock()
					maxBuffered = max(maxBuffered, c.Buffered())
					mu.Unlock()
				}},
				high:   func() { mu.Lock(); highs++; mu.Unlock() },
				low:    func() { mu.Lock(); lows++; mu.Unlock() },
				paused: make(chan struct{}),
			}
			srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(1),
				reactor.WithHighWaterMark(hwm), reactor.WithReadBufferSize(readBuf))
			c := dialSmallWindow(t, srv, 16<<10)
			defer c.Close()
			payload := make([]byte, total)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			writeErr := make(chan error, 1)
			go func() {
				_, err := c.Write(payload)
				if err == nil {
					err = c.CloseWrite()
				}
				writeErr <- err
			}()
			// Wait until the server has paused reading, before reading anything.
			<-h.paused
			got, err := io.ReadAll(c)
			require.NoError(t, err)
			require.NoError(t, <-writeErr)
			assert.Equal(t, len(payload), len(got))
			assert.True(t, bytes.Equal(payload, got), "echo differs")
			mu.Lock()
			defer mu.Unlock()
			assert.LessOrEqual(t, maxBuffered, hwm+readBuf, "output above the mark by more than one read's echo")
			assert.Positive(t, highs)
			assert.Positive(t, lows, "reading must resume as the output drains")
		})
	}
}

// watermarks adds WatermarkHandler callbacks to a HandlerFuncs, and closes
// paused the first time the high-water mark is reached.
type watermarks struct {
	reactor.HandlerFuncs
	high, low func()
	once      sync.Once
	paused    chan struct{}
}

func (w *watermarks) OnHighWater(c *reactor.Conn, buffered int) {
	w.high()
	w.once.Do(func() { close(w.paused) })
}
func (w *watermarks) OnLowWater(c *reactor.Conn, buffered int) { w.low() }

func TestConcurrentWritersKeepPerGoroutineOrder(t *testing.T) {
	const writers, perWriter = 50, 200
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			opened := make(chan *reactor.Conn, 1)
			srv := serve(t, reactor.HandlerFuncs{Open: func(c *reactor.Conn) { opened <- c }}, reactor.WithDispatcher(be.f), reactor.WithLoops(2))
			cl := dial(t, srv)
			defer cl.Close()
			conn := <-opened
			var wg sync.WaitGroup
			// Records are fixed-size so the reader can split them.
			startWriters(t, &wg, conn, writers, perWriter, "%03d:%05d;")
			wg.Wait()
			require.NoError(t, conn.Close())
			all, err := io.ReadAll(cl)
			require.NoError(t, err)
			const rec = len("000:00000;")
			require.Equal(t, writers*perWriter*rec, len(all))
			next := make([]int, writers)
			for off := 0; off < len(all); off += rec {
				var w, i int
				_, err := fmt.Sscanf(string(all[off:off+rec]), "%03d:%05d;", &w, &i)
				require.NoError(t, err)
				require.Equal(t, next[w], i, "writer %d out of order", w)
				next[w]++
			}
		})
	}
}

// TestWritesFromGoroutinesDuringOnMessage has goroutines write to
// connections while their loop echoes on them: their Writes land while
// OnMessage runs and the connection is marked for the inline flush, so they
// skip the flush list and may take the loop's spare output buffer
// (Conn.outBuffer). Every byte must arrive once, in each writer's order,
// the echo in the client's. The connections share one loop, so that -race
// sees a Write to one connection take the spare while the loop echoes on
// another, if the spare were not kept to the marked connection.
func TestWritesFromGoroutinesDuringOnMessage(t *testing.T) {
	const conns, writers, perWriter, echoes = 3, 4, 300, 2000
	const rec = len("E:00000;") // every record, echoed or written, is this long
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			opened := make(chan *reactor.Conn, conns)
			srv := serve(t, reactor.HandlerFuncs{
				Open: func(c *reactor.Conn) { opened <- c },
				Message: func(c *reactor.Conn, in *reactor.Buffer) {
					// Whole records only, so that a writer's record never
					// falls inside an echoed one.
					_, _ = c.Write(in.Next(in.Len() / rec * rec))
				},
			}, reactor.WithDispatcher(be.f), reactor.WithLoops(1))
			var all sync.WaitGroup
			for range conns {
				cl := dial(t, srv)
				defer cl.Close()
				conn := <-opened
				all.Add(1)
				go func() {
					defer all.Done()
					checkEchoAndWriters(t, cl, conn, writers, perWriter, echoes, rec)
				}()
			}
			all.Wait()
		})
	}
}

// startWriters starts writers goroutines, added to wg, each writing
// perWriter records to conn, formatted with format from the writer's number
// and the record's.
func startWriters(t *testing.T, wg *sync.WaitGroup, conn *reactor.Conn, writers, perWriter int, format string) {
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				_, err := fmt.Fprintf(conn, format, w, i)
				assert.NoError(t, err)
			}
		}()
	}
}

// checkEchoAndWriters runs writers goroutines writing perWriter records each
// to conn and a sender of echoes records to cl, reads everything from cl and
// checks every record arrived once and in order.
func checkEchoAndWriters(t *testing.T, cl net.Conn, conn *reactor.Conn, writers, perWriter, echoes, rec int) {
	var wg sync.WaitGroup
	defer wg.Wait()
	startWriters(t, &wg, conn, writers, perWriter, "%d:%05d;")
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range echoes {
			if _, err := fmt.Fprintf(cl, "E:%05d;", i); !assert.NoError(t, err) {
				return
			}
		}
	}()
	got := make([]byte, (writers*perWriter+echoes)*rec)
	if !assert.NoError(t, cl.SetReadDeadline(time.Now().Add(testTimeout))) {
		return
	}
	if _, err := io.ReadFull(cl, got); !assert.NoError(t, err) {
		return
	}
	next := make([]int, writers+1) // the last counts the echo
	for off := 0; off < len(got); off += rec {
		r := string(got[off : off+rec])
		w := writers
		if r[0] != 'E' {
			w = int(r[0] - '0')
		}
		var i int
		_, err := fmt.Sscanf(r[2:], "%05d;", &i)
		if !assert.NoError(t, err, "record %q", r) || !assert.Equal(t, next[w], i, "record %q out of order", r) {
			return
		}
		next[w]++
	}
}

func TestLifecycleStorm(t *testing.T) {
	const perKind = 60
	kinds := []string{"client-close", "close-in-open", "close-in-message", "close-from-goroutine", "peer-reset", "idle-then-shutdown"}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			var afterClose atomic.Int32
			var writeAfterClose atomic.Int32
			inner := reactor.HandlerFuncs{
				Open: func(c *reactor.Conn) {},
				Message: func(c *reactor.Conn, in *reactor.Buffer) {
					cmd := string(in.Next(in.Len()))
					switch cmd {
					case "close-in-open":
					case "close-in-message":
						_, _ = c.Write([]byte("bye"))
						_ = c.Close()
					case "close-from-goroutine":
						go func() {
							_, _ = c.Write([]byte("bye"))
							_ = c.Close()
						}()
					default:
						_, _ = c.Write([]byte(cmd))
					}
				},
				Close: func(c *reactor.Conn, err error) {
					if _, werr := c.Write([]byte("x")); errors.Is(werr, reactor.ErrConnClosed) {
						writeAfterClose.Add(1)
					}
					afterClose.Add(1)
				},
			}
			var closeInOpen atomic.Bool
			closeInOpen.Store(false)
			inner.Open = func(c *reactor.Conn) {
				if closeInOpen.Load() {
					_, _ = c.Write([]byte("bye"))
					_ = c.Close()
				}
			}
			n := perKind * len(kinds)
			h := newLifecycle(n, inner)
			srv := serve(t, h, reactor.WithDispatcher(be.f), reactor.WithLoops(3))
			var resetsSeen atomic.Int32
			var wg sync.WaitGroup
			// close-in-open needs the flag for its connections only: run
			// those first, on their own.
			closeInOpen.Store(true)
			for range perKind {
				c := dial(t, srv)
				b, err := io.ReadAll(c)
				assert.NoError(t, err)
				assert.Equal(t, "bye", string(b))
				c.Close()
			}
			closeInOpen.Store(false)
			var idle []*net.TCPConn
			for _, kind := range []string{"close-in-message", "close-from-goroutine", "peer-reset", "idle-then-shutdown"} {
				for range perKind {
					c := dial(t, srv)
					switch kind {
					case "idle-then-shutdown":
						idle = append(idle, c)
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer c.Close()
						_, err := c.Write([]byte(kind))
						assert.NoError(t, err)
						switch kind {
						case "close-in-message", "close-from-goroutine":
							b, err := io.ReadAll(c)
							assert.NoError(t, err)
							assert.Equal(t, "bye", string(b))
						case "peer-reset":
							b := make([]byte, len(kind))
							_, err := io.ReadFull(c, b)
							assert.NoError(t, err)
							assert.NoError(t, c.SetLinger(0))
							resetsSeen.Add(1)
						}
					}()
				}
			}
			wg.Wait()
			// Client-side closes: the server sees EOF.
			for range perKind {
				c := dial(t, srv)
				_, err := c.Write([]byte("client-close"))
				require.NoError(t, err)
				b := make([]byte, len("client-close"))
				_, err = io.ReadFull(c, b)
				require.NoError(t, err)
				c.Close()
			}
			// The idle ones are closed by the server's shutdown.
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			require.NoError(t, srv.Shutdown(ctx))
			for _, c := range idle {
				_, err := io.ReadAll(c)
				assert.NoError(t, err, "an idle connection should see an orderly close at shutdown")
				c.Close()
			}
			h.wait(t)
			h.mu.Lock()
			defer h.mu.Unlock()
			assert.Empty(t, h.badSeq)
			assert.Equal(t, n, h.opened)
			assert.Equal(t, n, h.closed)
			assert.Equal(t, int32(n), afterClose.Load())
			assert.Equal(t, int32(n), writeAfterClose.Load(), "Write in OnClose must fail with ErrConnClosed")
			resets := 0
			for _, err := range h.errs {
				if errors.Is(err, syscall.ECONNRESET) {
					resets++
				} else {
					assert.NoError(t, err)
				}
			}
			assert.Equal(t, perKind, resets, "each peer reset should end in ECONNRESET")
		})
	}
}
