package reactor_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

var simSeed = flag.Int64("sim.seed", -1,
	"run TestSimEchoProperty with this seed only, and log its whole trace")

// TestSimEchoProperty runs a random script against an echo server for each
// of 200 seeds: clients that connect at random moments, send random bytes
// in random chunks, read at random moments (some with a small receive
// window), and end by half-closing, by closing once they have their echo,
// by resetting midway or by closing midway; faults injected at random
// (short reads and writes, EAGAIN and EINTR, accept failures including
// EMFILE, resets in mid-stream, failing closes, a descriptor limit); and
// one to four loops. Whatever happens, no byte is lost or reordered except
// where a reset or the client's own early close makes loss legitimate,
// OnOpen and OnClose pair, OnClose's error is nil exactly for an orderly
// end, nothing panics and the server logs no error. Everything in a run, script included, derives from its seed: a
// failure names the seed, and -sim.seed=N replays that run exactly.
func TestSimEchoProperty(t *testing.T) {
	seeds := make([]int64, 200)
	for i := range seeds {
		seeds[i] = int64(i)
	}
	if *simSeed >= 0 {
		seeds = []int64{*simSeed}
	}
	for _, seed := range seeds {
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			trace := simEchoScript(t, seed)
			if *simSeed >= 0 {
				t.Log(trace)
			}
			if seed%50 == 0 && !t.Failed() {
				again := simEchoScript(t, seed)
				assert.True(t, trace == again, "the replay differs at %s", simDiff(trace, again))
			}
		})
		if !ok {
			t.Logf("seed %d failed; replay it with: go test -run TestSimEchoProperty -sim.seed=%d", seed, seed)
		}
	}
}

// simClient is one client of the script and what it has sent and got.
type simClient struct {
	c      *reactor.SimConn
	data   []byte // what it will send
	sent   int    // how much of data Write accepted
	got    []byte // what it read
	ending int    // 0: half-close when all is sent; 1: close once all is echoed; 2: reset at cutAt; 3: close at cutAt
	cutAt  int
	ended  bool // CloseWrite, Close or Reset done (or Write failed)
}

// terminal reports whether the client's connection is over: the server has
// closed it (in order or by reset), or the client has.
func (cl *simClient) terminal() bool {
	return cl.c != nil && (cl.c.EOF() || cl.c.WasReset() || (cl.ended && cl.ending != 0))
}

// simErrLog is a slog.Handler that keeps the records at Error level: the
// server logs a recovered panic, a failed loop or a failed registration
// there, and none of them should happen.
type simErrLog struct {
	mu   sync.Mutex
	msgs []string
}

func (h *simErrLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *simErrLog) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *simErrLog) WithGroup(string) slog.Handler                { return h }
func (h *simErrLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "stack" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, b.String())
	return nil
}

func (h *simErrLog) get() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// simEchoScript runs the script of one seed and returns the trace.
func simEchoScript(t *testing.T, seed int64) string {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	s := reactor.NewSim(seed, reactor.SimReceiveWindow(pick(rng, 64, 700, 4096, 64<<10)),
		reactor.SimSendBuffer(pick(rng, -1, 100, 0))) // none, small, the default
	t.Cleanup(func() {
		if t.Failed() && *simSeed < 0 {
			lines := strings.Split(s.Trace(), "\n")
			t.Logf("seed %d, last trace lines:\n%s", seed, strings.Join(lines[max(len(lines)-40, 0):], "\n"))
		}
	})
	errs := &simErrLog{}
	tr := newConnTracker()
	srv, err := reactor.NewServer(simAddr, tr.handler(simEcho()),
		reactor.WithDispatcher(s.Dispatcher),
		reactor.WithLoops(rng.IntN(4)),
		reactor.WithHighWaterMark(pick(rng, 0, 300, 5000, reactor.DefaultHighWaterMark)),
		reactor.WithReadBufferSize(pick(rng, 512, 1000, 64<<10)),
		reactor.WithLogger(slog.New(errs)))
	require.NoError(t, err)
	stop := s.Start(srv)
	defer func() { _ = stop() }() // after a failed require: no goroutine left behind

	if rng.IntN(2) == 0 {
		s.Inject(reactor.Fault{Op: reactor.FaultRead, Short: true, Probability: 0.3})
	}
	if rng.IntN(2) == 0 {
		s.Inject(reactor.Fault{Op: reactor.FaultWrite, Short: true, Probability: 0.3})
	}
	if rng.IntN(3) == 0 {
		s.Inject(reactor.Fault{Op: pick(rng, reactor.FaultRead, reactor.FaultWrite), Err: pick(rng, syscall.EAGAIN, syscall.EINTR), Probability: 0.1})
	}
	if rng.IntN(3) == 0 {
		errno := pick(rng, syscall.EAGAIN, syscall.EINTR, syscall.ECONNABORTED, syscall.EMFILE, syscall.ENFILE)
		s.Inject(reactor.Fault{Op: reactor.FaultAccept, Err: errno, Probability: 0.3})
	}
	if rng.IntN(4) == 0 {
		op := pick(rng, reactor.FaultRead, reactor.FaultWrite)
		s.Inject(reactor.Fault{Op: op, Err: pick(rng, syscall.ECONNRESET, syscall.EPIPE), Probability: 0.05})
	}
	if rng.IntN(4) == 0 {
		s.Inject(reactor.Fault{Op: reactor.FaultClose, Err: pick(rng, syscall.EINTR, syscall.EIO), Probability: 0.5})
	}
	if rng.IntN(5) == 0 {
		s.SetFDLimit(len(s.OpenFDs()) + 1 + rng.IntN(3))
	}

	clients := make([]*simClient, 2+rng.IntN(7))
	for i := range clients {
		cl := &simClient{data: make([]byte, rng.IntN(3000)), ending: pick(rng, 0, 0, 0, 1, 1, 2, 3)}
		for j := range cl.data {
			cl.data[j] = byte(rng.Uint32())
		}
		cl.cutAt = rng.IntN(len(cl.data) + 1)
		clients[i] = cl
	}

	// write sends the next chunk, or ends the client when it has sent all.
	write := func(cl *simClient) {
		if cl.c.WasReset() { // by the server's side: nothing more to do
			cl.ended = true
			return
		}
		if cl.ending >= 2 && cl.sent >= cl.cutAt {
			if cl.ending == 2 {
				assert.NoError(t, cl.c.Reset())
			} else {
				assert.NoError(t, cl.c.Close()) // with echo unread: RST, as Linux does
			}
			cl.ended = true
			return
		}
		if cl.sent == len(cl.data) {
			switch {
			case cl.ending == 0:
				assert.NoError(t, cl.c.CloseWrite())
				cl.ended = true
			case cl.ending == 1 && len(cl.got) == cl.sent:
				assert.NoError(t, cl.c.Close())
				cl.ended = true
			}
			return
		}
		end := min(cl.sent+1+rng.IntN(600), len(cl.data))
		if cl.ending >= 2 {
			end = min(end, cl.cutAt)
		}
		n, err := cl.c.Write(cl.data[cl.sent:end])
		if err != nil { // the server's side reset the connection
			assert.True(t, cl.c.WasReset(), "write failed without a reset: %v", err)
			cl.ended = true
			return
		}
		cl.sent += n
	}
	read := func(cl *simClient) {
		if cl.c != nil && !(cl.ended && cl.ending != 0) {
			cl.got = append(cl.got, cl.c.ReadAll()...)
		}
	}

	for step := 0; step < 400; step++ {
		cl := clients[rng.IntN(len(clients))]
		switch r := rng.IntN(20); {
		case r < 9:
			switch {
			case cl.c == nil:
				cl.c, err = s.Dial(simAddr)
				require.NoError(t, err)
				if rng.IntN(4) == 0 {
					cl.c.SetReceiveWindow(1 + rng.IntN(64)) // a slow reader
				}
			case !cl.ended:
				write(cl)
			}
		case r < 13:
			read(cl)
		case r < 16:
			s.Step()
		case r < 19:
			s.RunUntilIdle()
		default:
			s.Advance(time.Duration(rng.IntN(50)) * time.Millisecond)
		}
	}

	// Let every client finish: send the rest, read everything, end. Slow
	// readers speed up, or this would take a round per few bytes.
	for round := 0; ; round++ {
		require.Less(t, round, 100, "the clients never finished")
		done := true
		for _, cl := range clients {
			if cl.c == nil {
				cl.c, err = s.Dial(simAddr)
				require.NoError(t, err)
			}
			cl.c.SetReceiveWindow(64 << 10)
			read(cl)
			if !cl.ended {
				write(cl)
			}
			done = done && cl.terminal()
		}
		if done {
			break
		}
		s.RunUntilIdle()
		s.Advance(time.Second) // the longest accept back-off
	}
	for _, cl := range clients {
		read(cl)
	}
	s.RunUntilIdle()

	for i, cl := range clients {
		name := fmt.Sprintf("client %d (%v, ending %d)", i, cl.c, cl.ending)
		// A client that closes early gives up the rest of its echo: the
		// server's writes to it are dropped, and answered with RST.
		lossy := cl.c.WasReset() || cl.ending == 3
		if lossy {
			assert.True(t, bytes.HasPrefix(cl.data[:cl.sent], cl.got), "%s: what arrived is a prefix of what was sent", name)
		} else {
			assert.True(t, bytes.Equal(cl.data[:cl.sent], cl.got), "%s: %d bytes sent, %d received", name, cl.sent, len(cl.got))
			assert.Equal(t, len(cl.data), cl.sent, "%s: all sent", name)
		}
		closeErr, closed := tr.closeErr(cl.c.LocalAddr())
		switch {
		case !closed:
			assert.True(t, cl.c.WasReset(), "%s: never closed by the server, yet not reset", name)
		case cl.c.WasReset():
			assert.True(t, closeErr == nil || errors.Is(closeErr, syscall.ECONNRESET) || errors.Is(closeErr, syscall.EPIPE),
				"%s: reset, but OnClose got %v", name, closeErr)
			// Only a client that closed early can see a reset after the
			// server ended in order: the server wrote it the rest of its
			// echo, which a closed socket answers with RST.
			assert.True(t, closeErr != nil || cl.ending == 3, "%s: reset, but OnClose got nil", name)
		default:
			assert.NoError(t, closeErr, "%s: an orderly end", name)
		}
	}
	require.NoError(t, stop())
	tr.verifyPairs(t)
	assert.Empty(t, errs.get(), "the server logged errors")
	assert.Empty(t, s.OpenFDs())
	return s.Trace()
}

// TestSimShutdownMidStream shuts the server down, gracefully or at once, at
// a random moment of a random script, over 100 seeds and a variety of
// options (loops, SO_REUSEPORT listeners, balancers, backpressure, short
// writes). Once the clients read again, a graceful shutdown always
// finishes, with OnClose(nil) for every connection; a hard one too, with
// ErrServerClosed where output was lost. Either way no client receives a
// byte it did not send, every connection ends, OnOpen and OnClose pair, and
// every descriptor is closed. (It found the lost flush that
// TestSimFlushListSurvivesAWriteAfterEventWrite pins down.)
func TestSimShutdownMidStream(t *testing.T) {
	for seed := int64(0); seed < 100; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		s := reactor.NewSim(seed, reactor.SimReceiveWindow(pick(rng, 64, 1000, 64<<10)),
			reactor.SimSendBuffer(pick(rng, -1, 100, 0))) // none, small, the default
		errs := &simErrLog{}
		tr := newConnTracker()
		srv, err := reactor.NewServer(simAddr, tr.handler(simEcho()),
			reactor.WithDispatcher(s.Dispatcher),
			reactor.WithLoops(rng.IntN(4)),
			reactor.WithReusePort(rng.IntN(3) == 0),
			reactor.WithLoadBalancer(pick(rng, reactor.RoundRobin, reactor.LeastConns, reactor.SourceHash)),
			reactor.WithHighWaterMark(pick(rng, 0, 300)),
			reactor.WithLogger(slog.New(errs)))
		require.NoError(t, err)
		stop := s.Start(srv)
		if rng.IntN(2) == 0 {
			s.Inject(reactor.Fault{Op: reactor.FaultWrite, Short: true, Probability: 0.5})
		}
		clients := make([]*simClient, 1+rng.IntN(8))
		for i := range clients {
			c, err := s.Dial(simAddr)
			require.NoError(t, err)
			if rng.IntN(3) == 0 {
				c.SetReceiveWindow(1 + rng.IntN(50))
			}
			clients[i] = &simClient{c: c}
		}
		for range 100 {
			cl := clients[rng.IntN(len(clients))]
			switch rng.IntN(6) {
			case 0, 1:
				b := make([]byte, rng.IntN(500))
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				_, err := cl.c.Write(b)
				require.NoError(t, err)
				cl.data = append(cl.data, b...)
			case 2:
				cl.got = append(cl.got, cl.c.ReadAll()...)
			case 3:
				s.Step()
			case 4:
				s.RunUntilIdle()
			case 5:
				s.Advance(time.Duration(rng.IntN(100)) * time.Millisecond)
			}
		}
		for _, cl := range clients {
			cl.c.SetReceiveWindow(1 << 20) // reading again: output can drain
		}
		hard := rng.IntN(4) == 0
		if hard {
			require.NoError(t, srv.Close(), "seed %d", seed) // Close drives the simulation itself
		}
		require.NoError(t, stop(), "seed %d", seed)
		for _, cl := range clients {
			cl.got = append(cl.got, cl.c.ReadAll()...)
			assert.True(t, cl.c.EOF() || cl.c.WasReset(), "seed %d, %v: the connection ended", seed, cl.c)
			assert.True(t, bytes.HasPrefix(cl.data, cl.got), "seed %d, %v: only bytes it sent, in order", seed, cl.c)
			if err, closed := tr.closeErr(cl.c.LocalAddr()); closed && (!hard || err != nil) {
				if hard {
					assert.ErrorIs(t, err, reactor.ErrServerClosed, "seed %d, %v", seed, cl.c)
				} else {
					assert.NoError(t, err, "seed %d, %v: a graceful close", seed, cl.c)
				}
			}
		}
		tr.verifyPairs(t)
		assert.Empty(t, errs.get(), "seed %d", seed)
		assert.Empty(t, s.OpenFDs(), "seed %d", seed)
	}
}

// simBroadcast is a chat handler: every line a member sends is written to
// every member, the sender included, from the sender's loop (so a Write
// often targets a connection of another loop), and every third line (by
// length) is also acknowledged to the sender from a task.
func simBroadcast() reactor.Handler {
	var mu sync.Mutex
	var members []*reactor.Conn // a slice, not a map: the order must not depend on the runtime
	return reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			mu.Lock()
			defer mu.Unlock()
			members = append(members, c)
		},
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			for i := bytes.IndexByte(in.Bytes(), '\n'); i >= 0; i = bytes.IndexByte(in.Bytes(), '\n') {
				line := in.Next(i + 1)
				mu.Lock()
				all := append([]*reactor.Conn(nil), members...)
				mu.Unlock()
				for _, m := range all {
					_, _ = m.Write(line)
				}
				if len(line)%3 == 0 {
					c.Loop().Submit(func() { _, _ = c.Write([]byte("ack\n")) })
				}
			}
		},
		Close: func(c *reactor.Conn, err error) {
			mu.Lock()
			defer mu.Unlock()
			for i, m := range members {
				if m == c {
					members = append(members[:i], members[i+1:]...)
					break
				}
			}
		},
	}
}

// TestSimBroadcastProperty runs a chat server over 100 seeds: members on
// up to three loops send lines at random moments, read at random moments
// (some with a small window), with short reads and writes injected. Every
// member receives every line of every member, each sender's lines in the
// order sent.
func TestSimBroadcastProperty(t *testing.T) {
	for seed := int64(0); seed < 100; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 3))
		s := reactor.NewSim(seed, reactor.SimReceiveWindow(pick(rng, 64, 1000, 64<<10)),
			reactor.SimSendBuffer(pick(rng, -1, 100, 0))) // none, small, the default
		errs := &simErrLog{}
		srv, err := reactor.NewServer(simAddr, simBroadcast(),
			reactor.WithDispatcher(s.Dispatcher),
			reactor.WithLoops(rng.IntN(4)),
			reactor.WithHighWaterMark(pick(rng, 0, 500)),
			reactor.WithLogger(slog.New(errs)))
		require.NoError(t, err)
		stop := s.Start(srv)
		if rng.IntN(2) == 0 {
			s.Inject(reactor.Fault{Op: reactor.FaultWrite, Short: true, Probability: 0.4})
		}
		if rng.IntN(2) == 0 {
			s.Inject(reactor.Fault{Op: reactor.FaultRead, Short: true, Probability: 0.4})
		}
		n := 2 + rng.IntN(5)
		members := make([]*reactor.SimConn, n)
		for i := range members {
			members[i] = simDial(t, s)
			if rng.IntN(3) == 0 {
				members[i].SetReceiveWindow(1 + rng.IntN(40))
			}
		}
		s.RunUntilIdle() // everyone has joined before the first line
		sent := make([][]string, n)
		got := make([]string, n)
		for range 150 {
			i := rng.IntN(n)
			switch rng.IntN(5) {
			case 0, 1:
				line := fmt.Sprintf("%d:%d:%s\n", i, len(sent[i]), strings.Repeat("x", rng.IntN(40)))
				_, err := members[i].WriteString(line)
				require.NoError(t, err)
				sent[i] = append(sent[i], line)
			case 2:
				got[i] += string(members[i].ReadAll())
			case 3:
				s.Step()
			case 4:
				s.RunUntilIdle()
			}
		}
		for i := range members {
			members[i].SetReceiveWindow(1 << 20)
		}
		for progress := true; progress; { // reading frees room, which lets paused members read on
			s.RunUntilIdle()
			progress = false
			for i := range members {
				b := members[i].ReadAll()
				got[i] += string(b)
				progress = progress || len(b) > 0
			}
		}
		for i := range members {
			from := make([][]string, n)
			for _, line := range strings.SplitAfter(got[i], "\n") {
				var j int
				if _, err := fmt.Sscanf(line, "%d:", &j); err == nil {
					from[j] = append(from[j], line)
				}
			}
			assert.Equal(t, sent, from, "seed %d: what member %d received, by sender", seed, i)
		}
		require.NoError(t, stop(), "seed %d", seed)
		assert.Empty(t, errs.get(), "seed %d", seed)
		assert.Empty(t, s.OpenFDs(), "seed %d", seed)
	}
}
