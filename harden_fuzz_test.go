package reactor

// FuzzServer drives a server over the simulation with scripts the fuzzer
// writes: clients that connect, send arbitrary bytes (which the handler
// also reads as commands), half-close, reset and stop reading; injected
// faults on every kind of system call; virtual time that jumps. Whatever the
// script, the server must not panic (only the handler's own panics are
// allowed, and each must be isolated), OnOpen and OnClose must pair, every
// descriptor must be closed and no goroutine left behind.

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/sim"
)

// Script operations, one byte each (modulo fuzzNumOps), with arguments in
// the bytes that follow.
const (
	fuzzDial          = iota // dial a new client
	fuzzWrite                // client writes (n, then n bytes of payload)
	fuzzCloseWrite           // client half-closes
	fuzzClose                // client closes
	fuzzReset                // client resets
	fuzzRead                 // client reads what has arrived
	fuzzWindow               // client sets its receive window (arg × 16)
	fuzzFault                // inject a fault (op, error, times, target)
	fuzzRunUntilIdle         // run the simulation until idle
	fuzzAdvance              // advance virtual time (arg × 10ms)
	fuzzStep                 // one step
	fuzzServerWrite          // the server writes to a connection from the test goroutine
	fuzzServerClose          // the server closes a connection from the test goroutine
	fuzzFDLimit              // set the descriptor limit (0 removes it)
	fuzzPanicNextOpen        // the next OnOpen panics
	fuzzNumOps
)

// fuzzErrnos are the errors faults inject; one past the end means a short
// read or write.
var fuzzErrnos = []unix.Errno{
	unix.EAGAIN, unix.EINTR, unix.ECONNRESET, unix.EPIPE, unix.EIO,
	unix.EMFILE, unix.ENOBUFS, unix.ECONNABORTED, unix.ENOTCONN,
}

const (
	fuzzMaxOps      = 400
	fuzzMaxClients  = 16
	fuzzScriptLimit = 10 * time.Second // real time; see runFuzzScript
)

// fuzzScript reads a script's bytes; past the end it yields zeros.
type fuzzScript struct {
	b []byte
	i int
}

func (s *fuzzScript) more() bool { return s.i < len(s.b) }

func (s *fuzzScript) next() byte {
	if s.i >= len(s.b) {
		return 0
	}
	s.i++
	return s.b[s.i-1]
}

func (s *fuzzScript) take(n int) []byte {
	n = min(n, len(s.b)-s.i)
	p := s.b[s.i : s.i+n]
	s.i += n
	return p
}

// fuzzHandler obeys the first byte of a connection's unconsumed input:
// 'P' panics, 'C' closes, 'W' half-closes, 'H' holds the input (consumes
// nothing), 'I' and 'T' set 500ms idle and write timeouts, 'B' writes
// 64 KiB, 'Q' makes the next OnWriteComplete panic; anything else is
// echoed. Commands are consumed with the rest of the input.
func fuzzHandler(rec *recorder, panics *atomic.Int64, panicNextOpen *atomic.Bool) {
	rec.open = func(c *Conn) {
		if panicNextOpen.CompareAndSwap(true, false) {
			panics.Add(1)
			panic(panicValue)
		}
	}
	rec.msg = func(c *Conn, in *Buffer) {
		switch in.Bytes()[0] {
		case 'P':
			in.Discard(in.Len())
			panics.Add(1)
			panic(panicValue)
		case 'C':
			in.Discard(in.Len())
			_ = c.Close()
		case 'W':
			_, _ = c.Write(in.Next(in.Len()))
			_ = c.CloseWrite()
		case 'H':
		case 'I':
			in.Discard(in.Len())
			c.SetIdleTimeout(500 * time.Millisecond)
		case 'T':
			in.Discard(in.Len())
			c.SetWriteTimeout(500 * time.Millisecond)
		case 'B':
			in.Discard(in.Len())
			_, _ = c.Write(make([]byte, 64<<10))
		case 'Q':
			c.SetContext("panic on write complete")
			_, _ = c.Write(in.Next(in.Len()))
		default:
			_, _ = c.Write(in.Next(in.Len()))
		}
	}
	rec.writeComplete = func(c *Conn) {
		if c.Context() != nil {
			c.SetContext(nil)
			panics.Add(1)
			panic(panicValue)
		}
	}
}

func FuzzServer(f *testing.F) {
	f.Add(int64(1), uint8(0), []byte{fuzzDial, fuzzWrite, 5, 'h', 'e', 'l', 'l', 'o', fuzzRunUntilIdle, fuzzRead, 0})
	f.Add(int64(2), uint8(0b0001_1110), []byte{
		fuzzDial, fuzzDial, fuzzRunUntilIdle, fuzzWrite, 0, 3, 'P', 'x', 'y', fuzzWrite, 1, 2, 'o', 'k',
		fuzzRunUntilIdle, fuzzRead, 1, fuzzAdvance, 200, fuzzRead, 1,
	})
	f.Add(int64(3), uint8(0b1010_0101), []byte{
		fuzzDial, fuzzWindow, 0, 0, fuzzRunUntilIdle, fuzzWrite, 0, 1, 'B', fuzzRunUntilIdle,
		fuzzAdvance, 150, fuzzDial, fuzzFault, 0, 2, 1, 0, fuzzWrite, 1, 4, 'e', 'c', 'h', 'o', fuzzRunUntilIdle,
	})
	f.Add(int64(4), uint8(0b0010_0110), []byte{
		fuzzDial, fuzzDial, fuzzDial, fuzzDial, fuzzDial, fuzzDial, fuzzRunUntilIdle,
		fuzzFault, 2, 5, 1, 0, fuzzDial, fuzzRunUntilIdle, fuzzAdvance, 2,
		fuzzWrite, 2, 200, 'H', fuzzReset, 3, fuzzCloseWrite, 4, fuzzRunUntilIdle,
	})
	f.Add(int64(5), uint8(0b0100_0010), []byte{
		fuzzPanicNextOpen, fuzzDial, fuzzDial, fuzzRunUntilIdle, fuzzWrite, 1, 2, 'Q', 'q', fuzzStep, fuzzStep,
		fuzzServerWrite, 1, 30, fuzzServerClose, 1, fuzzFDLimit, 4, fuzzDial, fuzzRunUntilIdle, fuzzAdvance, 100,
		fuzzFault, 1, 1, 2, 0, fuzzFault, 0, 9, 3, 0, fuzzWrite, 0, 40, 'x', fuzzRunUntilIdle,
	})
	f.Add(int64(6), uint8(0b1000_0000), []byte{
		fuzzDial, fuzzRunUntilIdle, fuzzWrite, 0, 1, 'W', fuzzRunUntilIdle, fuzzRead, 0, fuzzClose, 0,
		fuzzDial, fuzzWrite, 1, 1, 'C', fuzzFault, 3, 3, 1, 1, fuzzRunUntilIdle, fuzzWrite, 1, 1, 'I', fuzzAdvance, 255,
	})
	f.Fuzz(func(t *testing.T, seed int64, config uint8, script []byte) {
		runFuzzScript(t, seed, config, script)
	})
}

// runFuzzScript runs one script; config chooses the server's options (see
// the switch below).
func runFuzzScript(t *testing.T, seed int64, config uint8, script []byte) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// A script takes milliseconds. One that hangs would otherwise stall a
	// fuzzing worker silently; crashing it makes the fuzzer save the input.
	watchdog := time.AfterFunc(fuzzScriptLimit, func() {
		panic(fmt.Sprintf("FuzzServer: a script ran for more than %v (seed %d, config %#b, %d bytes): a hang",
			fuzzScriptLimit, seed, config, len(script)))
	})
	defer watchdog.Stop()
	var panics atomic.Int64
	var panicNextOpen atomic.Bool
	rec := newRecorder()
	fuzzHandler(rec, &panics, &panicNextOpen)
	logs := &logCapture{}

	loops := int(config & 3)
	opts := []Option{WithLoops(min(loops, 2)), WithLogger(slog.New(logs))}
	if config&(1<<2) != 0 {
		opts = append(opts, WithIdleTimeout(time.Second))
	}
	if config&(1<<3) != 0 {
		opts = append(opts, WithWriteTimeout(time.Second))
	}
	if config&(1<<4) != 0 {
		opts = append(opts, WithMaxInputSize(256))
	}
	if config&(1<<5) != 0 {
		opts = append(opts, WithMaxConns(4))
	}
	if config&(1<<6) != 0 {
		opts = append(opts, WithReusePort(true))
	}
	hardClose := config&(1<<7) != 0

	s := NewSim(seed)
	s.k.SetTrace(false) // a script's trace is never read; keep iterations fast
	srv, err := NewServer(simAddr, rec, append([]Option{WithDispatcher(s.Dispatcher)}, opts...)...)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()

	var clients []*sim.Conn
	client := func(b byte) *sim.Conn {
		if len(clients) == 0 {
			return nil
		}
		return clients[int(b)%len(clients)]
	}
	sc := &fuzzScript{b: script}
	for ops := 0; sc.more() && ops < fuzzMaxOps; ops++ {
		switch sc.next() % fuzzNumOps {
		case fuzzDial:
			if len(clients) < fuzzMaxClients {
				if cl, err := s.k.Dial(simAddr); err == nil {
					clients = append(clients, cl)
				}
			}
		case fuzzWrite:
			cl, n := client(sc.next()), int(sc.next())
			if p := sc.take(n); cl != nil {
				_, _ = cl.Write(p)
			}
		case fuzzCloseWrite:
			if cl := client(sc.next()); cl != nil {
				_ = cl.CloseWrite()
			}
		case fuzzClose:
			if cl := client(sc.next()); cl != nil {
				_ = cl.Close()
			}
		case fuzzReset:
			if cl := client(sc.next()); cl != nil {
				_ = cl.Reset()
			}
		case fuzzRead:
			if cl := client(sc.next()); cl != nil {
				_ = cl.ReadAll()
			}
		case fuzzWindow:
			cl, w := client(sc.next()), int(sc.next())*16
			if cl != nil {
				cl.SetReceiveWindow(w)
			}
		case fuzzFault:
			injectFuzzFault(s.k, sc, client)
		case fuzzRunUntilIdle:
			s.k.RunUntilIdle()
		case fuzzAdvance:
			s.k.Advance(time.Duration(sc.next()) * 10 * time.Millisecond)
		case fuzzStep:
			s.k.Step()
		case fuzzServerWrite:
			cl, n := client(sc.next()), int(sc.next())
			if cl != nil {
				if c := rec.conn(cl); c != nil {
					_, _ = c.Write(make([]byte, n))
				}
			}
		case fuzzServerClose:
			if cl := client(sc.next()); cl != nil {
				if c := rec.conn(cl); c != nil {
					_ = c.Close()
				}
			}
		case fuzzFDLimit:
			if lim := int(sc.next() % 32); lim < 4 {
				s.k.SetFDLimit(0)
			} else {
				s.k.SetFDLimit(lim)
			}
		case fuzzPanicNextOpen:
			panicNextOpen.Store(true)
		}
	}
	s.k.RunUntilIdle()

	// Stop the server. For a graceful shutdown, let every client take
	// what it is sent, or the output of a client that reads nothing could
	// never drain.
	if hardClose {
		require.NoError(t, srv.Close())
	} else {
		for _, cl := range clients {
			cl.SetReceiveWindow(1 << 30)
		}
		ctx, cancel := context.WithTimeout(context.Background(), simShutdownTimeout)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx), "graceful shutdown did not finish")
	}
	require.ErrorIs(t, <-errc, ErrServerClosed)

	opened, closed := rec.counts()
	assert.Equal(t, opened, closed, "OnOpen and OnClose must pair")
	rec.mu.Lock()
	assert.Empty(t, rec.bad, "callbacks out of order")
	rec.mu.Unlock()
	assert.Empty(t, s.k.OpenFDs(), "descriptors left open")

	// Every panic the server recovered was one of the handler's own.
	recovered := logs.matching("panicked")
	for _, r := range recovered {
		if r.attrs["panic"] != panicValue {
			t.Errorf("the server recovered a panic of its own: %v\n%v", r.attrs["panic"], r.attrs["stack"])
		}
	}
	assert.Equal(t, int(panics.Load()), len(recovered), "every handler panic recovered and logged once")

	st := srv.Stats()
	assert.Equal(t, int64(0), st.Open)
	c := st.Closed
	sum := c.Peer + c.Local + c.Shutdown + c.Reset + c.IdleTimeout + c.WriteTimeout + c.InputTooLarge + c.Panic + c.Error
	assert.Equal(t, int64(closed), sum, "every close counted once")
	assert.GreaterOrEqual(t, st.Accepted, int64(opened)+st.Rejected)
}

// injectFuzzFault reads a fault from the script: the operation, the error
// (or short), how many times (1-4: a fault that never ends could keep a
// level-triggered descriptor busy forever, a livelock rather than a bug),
// and the target (a client's connection or any descriptor).
func injectFuzzFault(k *sim.Kernel, sc *fuzzScript, client func(byte) *sim.Conn) {
	op := sim.Op(sc.next()%5) + sim.OpRead
	e := int(sc.next()) % (len(fuzzErrnos) + 1)
	times := int(sc.next()%4) + 1
	target := sc.next()
	f := sim.Fault{Op: op, Times: times}
	if e == len(fuzzErrnos) {
		if op != sim.OpRead && op != sim.OpWrite {
			return
		}
		f.Short = true
	} else {
		f.Err = fuzzErrnos[e]
	}
	if target&1 == 1 && op != sim.OpAccept {
		f.Conn = client(target >> 1)
	}
	k.Inject(f)
}
