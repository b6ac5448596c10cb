// Command soak runs a reactor echo server in-process and hammers it over
// loopback: N client connections for a duration D, each doing rounds of
// echo traffic of random sizes written in random chunks, then ending with a
// half-close, a reset (with bytes in flight) or a plain close, and
// reconnecting. Every byte that comes back is checked against what was
// sent.
//
//	go run ./cmd/soak -conns 2000 -duration 20s
//
// At the end it prints the counts (connections, bytes verified, bytes lost,
// which must be 0), the peak resident memory, and the goroutines and open
// descriptors before and after; it exits with status 1 on any lost or
// corrupted byte, any client or unexpected server error, a connection whose
// OnOpen and OnClose do not pair, or a goroutine or descriptor left behind.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor"
)

func main() {
	cfg := config{}
	flag.IntVar(&cfg.conns, "conns", 100, "concurrent client connections")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long the clients keep starting rounds")
	flag.IntVar(&cfg.loops, "loops", runtime.GOMAXPROCS(0), "the server's event loops (0: one loop accepts and serves)")
	flag.StringVar(&cfg.backend, "backend", "epoll", "readiness backend: epoll or poll")
	flag.IntVar(&cfg.maxSize, "maxsize", 256<<10, "largest payload of one round, in bytes")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the clients' random choices")
	flag.Parse()

	rep, err := run(cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !rep.ok() {
		os.Exit(1)
	}
}

type config struct {
	conns    int
	duration time.Duration
	loops    int
	backend  string
	maxSize  int
	seed     uint64
}

// ioTimeout bounds every client read and write: a stalled connection is a
// failure, reported, not a hang.
const ioTimeout = 30 * time.Second

// counters are the clients' and the server's tallies; atomics, since every
// client goroutine and every event loop adds to them.
type counters struct {
	connections atomic.Int64 // sessions started (each a new connection)
	dialErrors  atomic.Int64
	halfCloses  atomic.Int64
	resets      atomic.Int64
	closes      atomic.Int64
	rounds      atomic.Int64 // echo rounds completed and verified
	sent        atomic.Int64 // bytes written by clients
	verified    atomic.Int64 // bytes echoed back and equal to what was sent
	lost        atomic.Int64 // bytes sent on a connection that was not deliberately reset, never echoed
	abandoned   atomic.Int64 // bytes sent just before a deliberate reset: neither verified nor lost
	mismatched  atomic.Int64 // bytes echoed back different from what was sent, or never sent
	clientErrs  atomic.Int64

	opened, closed atomic.Int64 // server OnOpen and OnClose
	serverErrs     atomic.Int64 // OnClose errors other than a reset by the client

	mu       sync.Mutex
	failures []string // the first few failures, for the report
}

func (c *counters) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failures) < 20 {
		c.failures = append(c.failures, fmt.Sprintf(format, args...))
	}
}

// report is what run found.
type report struct {
	counters                          *counters
	stats                             reactor.Stats
	peakRSS                           int64 // KiB
	goroutinesBefore, goroutinesAfter int
	fdsBefore, fdsAfter               int
	problems                          []string
}

func (r *report) ok() bool { return len(r.problems) == 0 }

func run(cfg config, out io.Writer) (*report, error) {
	var backend reactor.DispatcherFactory
	switch cfg.backend {
	case "epoll":
		backend = reactor.Epoll
	case "poll":
		backend = reactor.Poll
	default:
		return nil, fmt.Errorf("unknown -backend %q (want epoll or poll)", cfg.backend)
	}
	if cfg.conns <= 0 || cfg.duration <= 0 || cfg.maxSize <= 0 {
		return nil, errors.New("-conns, -duration and -maxsize must be positive")
	}

	// The Go runtime opens its own poller's descriptors on the first network
	// operation; do one first, so that the "before" count includes them.
	warm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	_ = warm.Close() // it only existed to start the runtime's poller
	rep := &report{counters: &counters{}}
	rep.goroutinesBefore = runtime.NumGoroutine()
	if rep.fdsBefore, err = openFDs(); err != nil {
		return nil, err
	}

	cnt := rep.counters
	h := reactor.HandlerFuncs{
		Open: func(*reactor.Conn) { cnt.opened.Add(1) },
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			_, _ = c.Write(in.Next(in.Len())) // fails only once the connection is closing
		},
		Close: func(c *reactor.Conn, err error) {
			cnt.closed.Add(1)
			// Clients reset on purpose: the server sees ECONNRESET, or EPIPE
			// if the reset met a write. Anything else is a failure.
			if err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				cnt.serverErrs.Add(1)
				cnt.fail("server: connection from %v ended with %v", c.RemoteAddr(), err)
			}
		},
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := reactor.NewServer("127.0.0.1:0", h,
		reactor.WithLoops(cfg.loops), reactor.WithDispatcher(backend), reactor.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()

	fmt.Fprintf(out, "soak: %d connections for %v against an in-process server (%s, %d loops, GOMAXPROCS %d, seed %d)\n",
		cfg.conns, cfg.duration, cfg.backend, cfg.loops, runtime.GOMAXPROCS(0), cfg.seed)
	start := time.Now()
	deadline := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for i := range cfg.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client(srv.Addr().String(), cfg, rand.New(rand.NewPCG(cfg.seed, uint64(i))), deadline, cnt)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		rep.problems = append(rep.problems, fmt.Sprintf("shutdown: %v", err))
	}
	if err := <-serveErr; !errors.Is(err, reactor.ErrServerClosed) {
		rep.problems = append(rep.problems, fmt.Sprintf("serve: %v", err))
	}
	rep.stats = srv.Stats()

	// Goroutines that have finished their work may take a moment to exit.
	rep.goroutinesAfter = runtime.NumGoroutine()
	for end := time.Now().Add(5 * time.Second); rep.goroutinesAfter > rep.goroutinesBefore && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		rep.goroutinesAfter = runtime.NumGoroutine()
	}
	if rep.fdsAfter, err = openFDs(); err != nil {
		return nil, err
	}
	if rep.peakRSS, err = statusKiB("VmHWM"); err != nil {
		return nil, err
	}
	rep.check()
	rep.print(out, elapsed)
	return rep, nil
}

// check fills in rep.problems.
func (r *report) check() {
	c := r.counters
	add := func(cond bool, format string, args ...any) {
		if cond {
			r.problems = append(r.problems, fmt.Sprintf(format, args...))
		}
	}
	add(c.lost.Load() != 0, "%d bytes lost", c.lost.Load())
	add(c.mismatched.Load() != 0, "%d bytes corrupted", c.mismatched.Load())
	add(c.clientErrs.Load() != 0, "%d client errors", c.clientErrs.Load())
	add(c.dialErrors.Load() != 0, "%d dial errors", c.dialErrors.Load())
	add(c.serverErrs.Load() != 0, "%d unexpected server-side close errors", c.serverErrs.Load())
	add(c.opened.Load() != c.closed.Load(), "OnOpen ran %d times, OnClose %d", c.opened.Load(), c.closed.Load())
	add(c.opened.Load() != c.connections.Load()-c.dialErrors.Load(), "the server opened %d connections, the clients made %d",
		c.opened.Load(), c.connections.Load()-c.dialErrors.Load())
	add(r.stats.Open != 0, "Stats.Open is %d after shutdown", r.stats.Open)
	add(c.verified.Load() == 0, "nothing was verified")
	add(r.goroutinesAfter > r.goroutinesBefore, "goroutines: %d before, %d after", r.goroutinesBefore, r.goroutinesAfter)
	add(r.fdsAfter != r.fdsBefore, "open descriptors: %d before, %d after", r.fdsBefore, r.fdsAfter)
}

func (r *report) print(out io.Writer, elapsed time.Duration) {
	c := r.counters
	st := r.stats
	mib := func(b int64) string { return fmt.Sprintf("%d (%.1f MiB)", b, float64(b)/(1<<20)) }
	fmt.Fprintf(out, "elapsed          %v\n", elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "connections      %d (ended by half-close %d, reset %d, close %d)\n",
		c.connections.Load(), c.halfCloses.Load(), c.resets.Load(), c.closes.Load())
	fmt.Fprintf(out, "echo rounds      %d\n", c.rounds.Load())
	fmt.Fprintf(out, "bytes sent       %s\n", mib(c.sent.Load()))
	fmt.Fprintf(out, "bytes verified   %s\n", mib(c.verified.Load()))
	fmt.Fprintf(out, "bytes lost       %d\n", c.lost.Load())
	fmt.Fprintf(out, "bytes corrupted  %d\n", c.mismatched.Load())
	fmt.Fprintf(out, "bytes abandoned  %d (in flight at a deliberate reset)\n", c.abandoned.Load())
	fmt.Fprintf(out, "errors           client %d, dial %d, server %d\n", c.clientErrs.Load(), c.dialErrors.Load(), c.serverErrs.Load())
	fmt.Fprintf(out, "server           accepted %d, OnOpen %d, OnClose %d, read %s, written %s\n",
		st.Accepted, c.opened.Load(), c.closed.Load(), mib(st.BytesRead), mib(st.BytesWritten))
	fmt.Fprintf(out, "server closes    %+v\n", st.Closed)
	fmt.Fprintf(out, "peak RSS         %.1f MiB\n", float64(r.peakRSS)/1024)
	fmt.Fprintf(out, "goroutines       %d before, %d after\n", r.goroutinesBefore, r.goroutinesAfter)
	fmt.Fprintf(out, "descriptors      %d before, %d after\n", r.fdsBefore, r.fdsAfter)
	c.mu.Lock()
	for _, f := range c.failures {
		fmt.Fprintf(out, "failure: %s\n", f)
	}
	c.mu.Unlock()
	if r.ok() {
		fmt.Fprintln(out, "OK")
	} else {
		fmt.Fprintf(out, "FAIL: %s\n", strings.Join(r.problems, "; "))
	}
}

// client runs sessions, one connection each, until the deadline; at least
// one, so that every client has connected whatever the machine's load (a
// goroutine may first run after a short deadline has passed).
func client(addr string, cfg config, rng *rand.Rand, deadline time.Time, cnt *counters) {
	s := &session{cfg: cfg, rng: rng, cnt: cnt, rbuf: make([]byte, 8<<10), ebuf: make([]byte, 16<<10), wbuf: make([]byte, 16<<10)}
	for first := true; first || time.Now().Before(deadline); first = false {
		s.run(addr, deadline)
	}
}

// session is one client connection's life: rounds of echo, then an ending.
// Its buffers are reused from session to session.
type session struct {
	cfg        config
	rng        *rand.Rand
	cnt        *counters
	rbuf, ebuf []byte // what was read, what was expected
	wbuf       []byte // what the round's writer goroutine writes
	c          *net.TCPConn
}

func (s *session) run(addr string, deadline time.Time) {
	cnt := s.cnt
	cnt.connections.Add(1)
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		cnt.dialErrors.Add(1)
		cnt.fail("dial: %v", err)
		return
	}
	s.c = conn.(*net.TCPConn)
	defer s.c.Close()

	rounds := 1 + s.rng.IntN(8)
	for i := range rounds {
		if i > 0 && !time.Now().Before(deadline) {
			break
		}
		if !s.round(false) {
			return
		}
	}
	switch s.rng.IntN(4) {
	case 0, 1:
		// Half-close: the last round's bytes, then FIN; everything must
		// come back, then EOF.
		cnt.halfCloses.Add(1)
		s.round(true)
	case 2:
		// Reset with up to 16 KiB in flight (little enough to fit in the
		// socket buffers, so the write cannot block on a server that is
		// pausing reading).
		cnt.resets.Add(1)
		n := s.rng.IntN(16 << 10)
		p := s.ebuf[:n]
		fillPattern(p, s.rng.Uint64(), 0)
		s.deadline()
		if _, err := s.c.Write(p); err != nil {
			s.clientError("write before reset", err)
			return
		}
		cnt.sent.Add(int64(n))
		cnt.abandoned.Add(int64(n))
		if err := s.c.SetLinger(0); err != nil {
			s.clientError("SO_LINGER", err)
		}
	default:
		cnt.closes.Add(1)
	}
}

// deadline sets the connection's I/O deadline for the next step.
func (s *session) deadline() { _ = s.c.SetDeadline(time.Now().Add(ioTimeout)) }

func (s *session) clientError(what string, err error) {
	s.cnt.clientErrs.Add(1)
	s.cnt.fail("client %v: %s: %v", s.c.LocalAddr(), what, err)
}

// payloadSize draws a round's size: mostly small, sometimes large.
func (s *session) payloadSize() int {
	switch p := s.rng.IntN(100); {
	case p < 70:
		return 1 + s.rng.IntN(min(4<<10, s.cfg.maxSize))
	case p < 95:
		return 1 + s.rng.IntN(min(64<<10, s.cfg.maxSize))
	default:
		return 1 + s.rng.IntN(s.cfg.maxSize)
	}
}

// round writes a payload of random size in random chunks from one
// goroutine while reading the echo on this one, comparing every byte. With
// halfClose it shuts down the write side after the payload and expects EOF
// right after the echo. It reports whether the connection is still usable.
func (s *session) round(halfClose bool) bool {
	cnt := s.cnt
	size := s.payloadSize()
	seed := s.rng.Uint64()
	wrng := rand.New(rand.NewPCG(s.rng.Uint64(), 0))
	s.deadline()

	wrote := make(chan error, 1)
	var sent atomic.Int64
	go func() {
		chunk := s.wbuf
		for off := 0; off < size; {
			n := min(size-off, 1+wrng.IntN(len(chunk)))
			fillPattern(chunk[:n], seed, off)
			if _, err := s.c.Write(chunk[:n]); err != nil {
				wrote <- err
				return
			}
			off += n
			sent.Store(int64(off))
		}
		if halfClose {
			wrote <- s.c.CloseWrite()
			return
		}
		wrote <- nil
	}()

	got := 0
	var rerr error
	for got < size {
		n, err := s.c.Read(s.rbuf[:min(len(s.rbuf), size-got)])
		n = max(n, 0)
		if n > 0 {
			exp := s.ebuf[:n]
			fillPattern(exp, seed, got)
			bad := mismatches(s.rbuf[:n], exp)
			if bad > 0 {
				cnt.mismatched.Add(int64(bad))
				cnt.fail("client %v: %d of %d bytes at offset %d differ from what was sent", s.c.LocalAddr(), bad, n, got)
			}
			cnt.verified.Add(int64(n - bad))
			got += n
		}
		if err != nil {
			rerr = err
			break
		}
	}
	if rerr == nil && halfClose {
		// Nothing may follow the echo but EOF.
		n, err := s.c.Read(s.rbuf[:1])
		switch {
		case n > 0:
			cnt.mismatched.Add(int64(n))
			cnt.fail("client %v: bytes after the echo of a half-closed connection", s.c.LocalAddr())
		case err != io.EOF:
			rerr = fmt.Errorf("want EOF after the echo: %w", err)
		}
	}
	werr := <-wrote
	cnt.sent.Add(sent.Load())
	if lost := sent.Load() - int64(got); lost > 0 {
		cnt.lost.Add(lost)
	}
	switch {
	case werr != nil:
		s.clientError("write", werr)
		return false
	case rerr != nil:
		s.clientError(fmt.Sprintf("read after %d of %d bytes", got, size), rerr)
		return false
	}
	cnt.rounds.Add(1)
	return true
}

// fillPattern fills p with bytes [off, off+len(p)) of the stream named by
// seed: byte i is byte i%8 of mix(seed+i/8). Any chunking of the stream
// gives the same bytes, so the writer and the reader generate it
// independently and no payload is ever stored.
func fillPattern(p []byte, seed uint64, off int) {
	var w [8]byte
	for len(p) > 0 {
		binary.LittleEndian.PutUint64(w[:], mix(seed+uint64(off/8)))
		n := copy(p, w[off%8:])
		p = p[n:]
		off += n
	}
}

// mix is SplitMix64's finaliser: a cheap, well-spread hash of x.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func mismatches(got, want []byte) int {
	bad := 0
	for i := range got {
		if got[i] != want[i] {
			bad++
		}
	}
	return bad
}

// openFDs counts the process's open descriptors (the directory listing's
// own included, in every count alike).
func openFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// statusKiB reads a memory field of /proc/self/status (VmHWM: peak RSS).
func statusKiB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
			return kb, err
		}
	}
	return 0, fmt.Errorf("%s not in /proc/self/status", field)
}
