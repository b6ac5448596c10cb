package reactor

// Hardening tests over the simulation: timeouts, limits, panic isolation and
// counters, in virtual time, so every deadline is checked to the nanosecond.

import (
	"context"
	"encoding/json"
	"errors"
	"expvar"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/sim"
)

// closeRec is how and when (on the loop's clock) a connection ended.
type closeRec struct {
	err error
	at  time.Duration
}

// recorder is a Handler for tests over the simulation. It records when each
// connection opened and how and when it closed, checks that the callbacks of
// a connection come in order (OnOpen first, nothing after OnClose), and
// delegates behaviour to optional functions; a nil msg echoes.
//
// Its callbacks run on loop goroutines, its queries on the test goroutine;
// mu guards the records (the simulation runs one loop at a time anyway).
type recorder struct {
	open          func(c *Conn)
	msg           func(c *Conn, in *Buffer)
	writeComplete func(c *Conn)
	close         func(c *Conn, err error)

	mu     sync.Mutex
	byFD   map[int]*Conn // open connections by descriptor
	opened map[*Conn]time.Duration
	closed map[*Conn]closeRec
	bad    []string // callbacks out of order
}

func newRecorder() *recorder {
	return &recorder{byFD: map[int]*Conn{}, opened: map[*Conn]time.Duration{}, closed: map[*Conn]closeRec{}}
}

func (r *recorder) OnOpen(c *Conn) {
	r.mu.Lock()
	if _, seen := r.opened[c]; seen {
		r.bad = append(r.bad, "OnOpen twice")
	}
	r.opened[c] = c.loop.Now()
	r.byFD[c.ch.fd] = c
	r.mu.Unlock()
	if r.open != nil {
		r.open(c)
	}
}

func (r *recorder) OnMessage(c *Conn, in *Buffer) {
	r.checkOpen(c, "OnMessage")
	if r.msg != nil {
		r.msg(c, in)
		return
	}
	_, _ = c.Write(in.Next(in.Len()))
}

func (r *recorder) OnWriteComplete(c *Conn) {
	r.checkOpen(c, "OnWriteComplete")
	if r.writeComplete != nil {
		r.writeComplete(c)
	}
}

func (r *recorder) OnClose(c *Conn, err error) {
	r.mu.Lock()
	defer r.mu.Unlock() // r.close must not call back into r
	if _, ok := r.opened[c]; !ok {
		r.bad = append(r.bad, "OnClose before OnOpen")
	}
	if _, ok := r.closed[c]; ok {
		r.bad = append(r.bad, "OnClose twice")
	}
	r.closed[c] = closeRec{err: err, at: c.loop.Now()}
	if r.byFD[c.ch.fd] == c {
		delete(r.byFD, c.ch.fd)
	}
	if r.close != nil {
		r.close(c, err)
	}
}

func (r *recorder) checkOpen(c *Conn, cb string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.opened[c]; !ok {
		r.bad = append(r.bad, cb+" before OnOpen")
	}
	if _, ok := r.closed[c]; ok {
		r.bad = append(r.bad, cb+" after OnClose")
	}
}

// conn returns the server's connection for a client, nil if it is not
// open.
func (r *recorder) conn(cl *sim.Conn) *Conn {
	fd := cl.ServerFD()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byFD[fd]
}

// closeOf reports whether c has closed, and how.
func (r *recorder) closeOf(c *Conn) (closeRec, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.closed[c]
	return rec, ok
}

func (r *recorder) counts() (opened, closed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.opened), len(r.closed)
}

// simRig is a Server over a stepped simulation, driven from the test
// goroutine.
type simRig struct {
	t       *testing.T
	s       *Sim
	srv     *Server
	rec     *recorder
	errc    chan error
	stopped bool
}

const simAddr = "127.0.0.1:80"

// simShutdownTimeout bounds, in real time, a graceful shutdown over the
// simulation, where it takes milliseconds.
const simShutdownTimeout = 20 * time.Second

// startSim serves rec over a new simulation; opts come after the
// simulation's dispatcher and a discarding logger, so they may replace the
// logger. The server is shut down when the test ends, and the recorder
// checked: every connection opened was closed, every callback in order.
func startSim(t *testing.T, seed int64, rec *recorder, opts ...Option) *simRig {
	t.Helper()
	return startSimOn(t, NewSim(seed), rec, opts...)
}

// startSimOn is startSim over a simulation the caller configured.
func startSimOn(t *testing.T, s *Sim, rec *recorder, opts ...Option) *simRig {
	t.Helper()
	return startSimWith(t, s, rec, rec, opts...)
}

// startSimHandler is startSim with h as the handler and rec as the record
// of its callbacks (h embeds rec and adds optional interfaces).
func startSimHandler(t *testing.T, seed int64, rec *recorder, h Handler, opts ...Option) *simRig {
	t.Helper()
	return startSimWith(t, NewSim(seed), rec, h, opts...)
}

func startSimWith(t *testing.T, s *Sim, rec *recorder, h Handler, opts ...Option) *simRig {
	t.Helper()
	all := append([]Option{WithDispatcher(s.Dispatcher), WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	srv, err := NewServer(simAddr, h, all...)
	require.NoError(t, err)
	r := &simRig{t: t, s: s, srv: srv, rec: rec, errc: make(chan error, 1)}
	go func() { r.errc <- srv.Serve() }()
	t.Cleanup(r.shutdown)
	return r
}

// shutdown shuts the server down gracefully (driving the simulation) and
// checks the recorder. Repeated calls do nothing.
func (r *simRig) shutdown() {
	t := r.t
	t.Helper()
	if r.stopped {
		return
	}
	r.stopped = true
	// The timeout is a safety net: a graceful shutdown that cannot finish
	// (a connection whose output can never drain) fails the test instead of
	// hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), simShutdownTimeout)
	defer cancel()
	assert.NoError(t, r.srv.Shutdown(ctx), "graceful shutdown did not finish")
	require.ErrorIs(t, <-r.errc, ErrServerClosed)
	opened, closed := r.rec.counts()
	assert.Equal(t, opened, closed, "every connection opened must be closed")
	r.rec.mu.Lock()
	assert.Empty(t, r.rec.bad, "callbacks out of order")
	r.rec.mu.Unlock()
	assert.Empty(t, r.s.k.OpenFDs(), "descriptors left open in the simulated kernel")
}

func (r *simRig) dial() *sim.Conn {
	r.t.Helper()
	c, err := r.s.k.Dial(simAddr)
	require.NoError(r.t, err)
	return c
}

// dialOpen dials and runs the simulation until the server has the
// connection open, returning both ends.
func (r *simRig) dialOpen() (*sim.Conn, *Conn) {
	r.t.Helper()
	cl := r.dial()
	r.s.k.RunUntilIdle()
	sc := r.rec.conn(cl)
	require.NotNil(r.t, sc, "the server should have opened the connection")
	return cl, sc
}

func (r *simRig) now() time.Duration { return r.s.k.Now() }

// logCapture is a slog.Handler that keeps every record's message and
// attributes, for tests that check what the server logged.
type logCapture struct {
	mu      sync.Mutex
	records []capturedLog
}

type capturedLog struct {
	level slog.Level
	msg   string
	attrs map[string]any
}

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCapture) WithGroup(string) slog.Handler            { return h }
func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := capturedLog{level: r.Level, msg: r.Message, attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	return nil
}

// matching returns the records whose message contains msg.
func (h *logCapture) matching(msg string) []capturedLog {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []capturedLog
	for _, r := range h.records {
		if strings.Contains(r.msg, msg) {
			out = append(out, r)
		}
	}
	return out
}

// discard consumes all input.
func discard(_ *Conn, in *Buffer) { in.Discard(in.Len()) }

// readEOF reports whether the client has seen the server's FIN (after
// reading what was left).
func readEOF(cl *sim.Conn) bool {
	_ = cl.ReadAll()
	_, err := cl.Read(make([]byte, 1))
	return err == io.EOF
}

func TestSimIdleTimeout(t *testing.T) {
	const d = 10 * time.Second
	const at = 4 * time.Second // when the activity, if any, happens
	tests := []struct {
		name     string
		opts     []Option
		open     func(c *Conn)
		activity func(cl *sim.Conn, sc *Conn)
		want     time.Duration // when the connection must close; 0: never
	}{
		{name: "no activity", opts: []Option{WithIdleTimeout(d)}, want: d},
		{
			name:     "client bytes restart it",
			opts:     []Option{WithIdleTimeout(d)},
			activity: func(cl *sim.Conn, _ *Conn) { _, _ = cl.Write([]byte("x")) },
			want:     at + d,
		},
		{
			name:     "server bytes restart it",
			opts:     []Option{WithIdleTimeout(d)},
			activity: func(_ *sim.Conn, sc *Conn) { _, _ = sc.Write([]byte("y")) },
			want:     at + d,
		},
		{name: "per-connection timeout", open: func(c *Conn) { c.SetIdleTimeout(3 * time.Second) }, want: 3 * time.Second},
		{name: "per-connection shorter", opts: []Option{WithIdleTimeout(d)}, open: func(c *Conn) { c.SetIdleTimeout(2 * time.Second) }, want: 2 * time.Second},
		{name: "per-connection off", opts: []Option{WithIdleTimeout(d)}, open: func(c *Conn) { c.SetIdleTimeout(0) }},
		{name: "off by default"},
	}
	for _, tt := range tests {
		for _, loops := range []int{0, 2} {
			t.Run(tt.name+"/loops="+string(rune('0'+loops)), func(t *testing.T) {
				rec := newRecorder()
				rec.msg, rec.open = discard, tt.open
				r := startSim(t, 1, rec, append(tt.opts, WithLoops(loops))...)
				cl, sc := r.dialOpen()
				require.Equal(t, time.Duration(0), r.now())
				if tt.activity != nil {
					r.s.k.AdvanceTo(at)
					tt.activity(cl, sc)
					r.s.k.RunUntilIdle()
				}
				if tt.want == 0 {
					r.s.k.Advance(100 * d)
					_, closed := r.rec.closeOf(sc)
					assert.False(t, closed, "no idle timeout applies")
					return
				}
				r.s.k.AdvanceTo(tt.want - 1)
				_, closed := r.rec.closeOf(sc)
				require.False(t, closed, "closed before the deadline")
				r.s.k.AdvanceTo(tt.want)
				cr, closed := r.rec.closeOf(sc)
				require.True(t, closed, "not closed at the deadline")
				assert.Equal(t, tt.want, cr.at, "closed at the wrong time")
				assert.ErrorIs(t, cr.err, ErrIdleTimeout)
				assert.True(t, readEOF(cl), "the client should see the server's FIN")
				assert.Equal(t, int64(1), r.srv.Stats().Closed.IdleTimeout)
			})
		}
	}
}

func TestSimWriteTimeout(t *testing.T) {
	const d = 5 * time.Second
	tests := []struct {
		name   string
		opts   []Option
		window int // the client's receive window
		open   func(c *Conn)
		read   time.Duration // when the client reads what it has (0: never)
		want   time.Duration // when the connection must close; 0: never
	}{
		{
			name: "peer never reads", opts: []Option{WithWriteTimeout(d)}, window: 0,
			open: func(c *Conn) { _, _ = c.Write(make([]byte, 100<<10)) }, want: d,
		},
		{
			// More than the window and the server's send buffer (16 KiB),
			// so that output waits in the server.
			name: "progress restarts it", opts: []Option{WithWriteTimeout(d)}, window: 1000,
			open: func(c *Conn) { _, _ = c.Write(make([]byte, 40_000)) }, read: 3 * time.Second, want: 3*time.Second + d,
		},
		{
			name: "no pending output never times out", opts: []Option{WithWriteTimeout(d)}, window: 1000,
			open: func(c *Conn) { _, _ = c.Write(make([]byte, 10)) },
		},
		{
			name: "per-connection timeout", window: 0,
			open: func(c *Conn) { c.SetWriteTimeout(2 * time.Second); _, _ = c.Write(make([]byte, 100<<10)) }, want: 2 * time.Second,
		},
		{
			name: "per-connection off", opts: []Option{WithWriteTimeout(d)}, window: 0,
			open: func(c *Conn) { c.SetWriteTimeout(0); _, _ = c.Write(make([]byte, 100<<10)) },
		},
		{
			name: "off by default", window: 0,
			open: func(c *Conn) { _, _ = c.Write(make([]byte, 100<<10)) },
		},
	}
	for _, tt := range tests {
		for _, loops := range []int{0, 2} {
			t.Run(tt.name+"/loops="+string(rune('0'+loops)), func(t *testing.T) {
				rec := newRecorder()
				rec.msg, rec.open = discard, tt.open
				r := startSim(t, 2, rec, append(tt.opts, WithLoops(loops))...)
				cl := r.dial()
				cl.SetReceiveWindow(tt.window)
				r.s.k.RunUntilIdle()
				sc := r.rec.conn(cl)
				require.NotNil(t, sc)
				if tt.read > 0 {
					r.s.k.AdvanceTo(tt.read)
					require.NotEmpty(t, cl.ReadAll())
					r.s.k.RunUntilIdle()
				}
				if tt.want == 0 {
					r.s.k.Advance(100 * d)
					_, closed := r.rec.closeOf(sc)
					assert.False(t, closed, "no write timeout applies")
					// Let the output drain so that the graceful shutdown
					// can flush it.
					cl.SetReceiveWindow(1 << 20)
					return
				}
				r.s.k.AdvanceTo(tt.want - 1)
				_, closed := r.rec.closeOf(sc)
				require.False(t, closed, "closed before the deadline")
				r.s.k.AdvanceTo(tt.want)
				cr, closed := r.rec.closeOf(sc)
				require.True(t, closed, "not closed at the deadline")
				assert.Equal(t, tt.want, cr.at, "closed at the wrong time")
				assert.ErrorIs(t, cr.err, ErrWriteTimeout)
				assert.Equal(t, int64(1), r.srv.Stats().Closed.WriteTimeout)
			})
		}
	}
}

func TestSimMaxInputSize(t *testing.T) {
	const limit = 1000
	keep := func(c *Conn, in *Buffer) {} // a handler waiting for a delimiter that never comes
	tests := []struct {
		name    string
		msg     func(c *Conn, in *Buffer)
		writes  []int // client writes, each followed by a run of the simulation
		eof     bool  // the client half-closes at the end
		short   bool  // the server's reads come up short
		wantErr error // nil: stays open (or, with eof, closes cleanly)
	}{
		{name: "exactly the limit stays open", msg: keep, writes: []int{limit}},
		{name: "one byte over in one write", msg: keep, writes: []int{limit + 1}, wantErr: ErrInputTooLarge},
		{name: "over in two writes", msg: keep, writes: []int{600, 401}, wantErr: ErrInputTooLarge},
		{name: "over in short reads", msg: keep, writes: []int{3 * limit}, short: true, wantErr: ErrInputTooLarge},
		{name: "far over", msg: keep, writes: []int{1 << 20}, wantErr: ErrInputTooLarge},
		{name: "exactly the limit then EOF is orderly", msg: keep, writes: []int{limit}, eof: true},
		{
			name: "a handler that consumes never trips it",
			msg: func(c *Conn, in *Buffer) {
				if in.Len() > 10 {
					in.Discard(in.Len() - 10)
				}
			},
			writes: []int{900, 900, 900, 50_000, 900},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var maxKept atomic.Int64
			rec := newRecorder()
			rec.msg = func(c *Conn, in *Buffer) {
				tt.msg(c, in)
				if c.in != nil {
					maxKept.Store(max(maxKept.Load(), int64(c.in.Len())))
				}
			}
			r := startSim(t, 3, rec, WithLoops(1), WithMaxInputSize(limit))
			cl, sc := r.dialOpen()
			if tt.short {
				r.s.k.Inject(sim.Fault{Op: sim.OpRead, Short: true})
			}
			for _, n := range tt.writes {
				_, err := cl.Write(make([]byte, n))
				require.NoError(t, err)
				r.s.k.RunUntilIdle()
			}
			if tt.eof {
				require.NoError(t, cl.CloseWrite())
				r.s.k.RunUntilIdle()
			}
			cr, closed := r.rec.closeOf(sc)
			assert.LessOrEqual(t, maxKept.Load(), int64(limit), "the connection kept more input than the limit")
			switch {
			case tt.wantErr != nil:
				require.True(t, closed, "the connection should have been closed")
				assert.ErrorIs(t, cr.err, tt.wantErr)
				assert.Equal(t, int64(1), r.srv.Stats().Closed.InputTooLarge)
			case tt.eof:
				require.True(t, closed, "the peer's FIN should have closed the connection")
				assert.NoError(t, cr.err)
				assert.Equal(t, int64(1), r.srv.Stats().Closed.Peer)
			default:
				assert.False(t, closed, "the connection should be open")
			}
		})
	}
}

func TestSimMaxConns(t *testing.T) {
	const limit, extra = 3, 100
	logs := &logCapture{}
	rec := newRecorder()
	r := startSim(t, 4, rec, WithLoops(2), WithMaxConns(limit), WithLogger(slog.New(logs)))
	var kept []*sim.Conn
	for range limit {
		cl, _ := r.dialOpen()
		kept = append(kept, cl)
	}
	var rejected []*sim.Conn
	for range extra {
		rejected = append(rejected, r.dial())
	}
	r.s.k.RunUntilIdle()
	opened, _ := rec.counts()
	assert.Equal(t, limit, opened, "only the first connections are served")
	for i, cl := range rejected {
		assert.True(t, readEOF(cl), "rejected connection %d should be closed at once", i)
	}
	// The connections within the limit are unaffected.
	for i, cl := range kept {
		_, err := cl.Write([]byte("ping"))
		require.NoError(t, err)
		r.s.k.RunUntilIdle()
		assert.Equal(t, "ping", string(cl.ReadAll()), "connection %d", i)
	}
	st := r.srv.Stats()
	assert.Equal(t, int64(limit+extra), st.Accepted)
	assert.Equal(t, int64(extra), st.Rejected)
	assert.Equal(t, int64(limit), st.Open)
	// Logged at 1, 2, 4, ... rejections: not once per rejection.
	warnings := logs.matching("connection limit reached")
	assert.Len(t, warnings, 7, "rejections logged rate-limited (1, 2, 4, ..., 64 of 100)")

	// A slot freed by a close is available again.
	require.NoError(t, kept[0].Close())
	r.s.k.RunUntilIdle()
	cl, _ := r.dialOpen()
	_, err := cl.Write([]byte("again"))
	require.NoError(t, err)
	r.s.k.RunUntilIdle()
	assert.Equal(t, "again", string(cl.ReadAll()))
	assert.Equal(t, int64(limit), r.srv.Stats().Open)
}

// panicValue is what the tests' handlers panic with.
const panicValue = "deliberate test panic"

func TestSimPanicIsolation(t *testing.T) {
	const others = 50
	tests := []struct {
		name        string
		wantVictim  bool // the victim connection is closed with ErrHandlerPanic
		openPanic   bool // the victim's OnOpen panics
		messagePan  bool // the victim's OnMessage panics
		writeCmpPan bool // the victim's OnWriteComplete panics
		taskPanic   bool // a task the victim's OnMessage submits panics
		timerPanic  bool // a timer the victim's OnMessage starts panics
	}{
		{name: "OnMessage", wantVictim: true, messagePan: true},
		{name: "OnOpen", wantVictim: true, openPanic: true},
		{name: "OnWriteComplete", wantVictim: true, writeCmpPan: true},
		{name: "task", taskPanic: true},
		{name: "timer", timerPanic: true},
	}
	for _, tt := range tests {
		for _, loops := range []int{0, 2} {
			t.Run(tt.name+"/loops="+string(rune('0'+loops)), func(t *testing.T) {
				logs := &logCapture{}
				var panicNextOpen atomic.Bool
				rec := newRecorder()
				rec.open = func(c *Conn) {
					if panicNextOpen.Load() {
						c.SetContext("victim")
						panic(panicValue)
					}
				}
				rec.msg = func(c *Conn, in *Buffer) {
					if string(in.Bytes()) == "boom" {
						c.SetContext("victim")
						switch {
						case tt.messagePan:
							panic(panicValue)
						case tt.taskPanic:
							c.Loop().Submit(func() { panic(panicValue) })
						case tt.timerPanic:
							c.Loop().AfterFunc(time.Second, func() { panic(panicValue) })
						}
					}
					_, _ = c.Write(in.Next(in.Len()))
				}
				rec.writeComplete = func(c *Conn) {
					if tt.writeCmpPan && c.Context() == "victim" {
						panic(panicValue)
					}
				}
				r := startSim(t, 5, rec, WithLoops(loops), WithLogger(slog.New(logs)))
				var clients []*sim.Conn
				for range others / 2 {
					clients = append(clients, r.dial())
				}
				r.s.k.RunUntilIdle()
				panicNextOpen.Store(tt.openPanic)
				victim, _ := r.dialOpenAny()
				panicNextOpen.Store(false)
				for range others / 2 {
					clients = append(clients, r.dial())
				}
				r.s.k.RunUntilIdle()
				require.Len(t, clients, others)

				// Everyone writes at once, so that the victim's callbacks run
				// in the same loop iterations as the others'.
				_, _ = victim.Write([]byte("boom")) // may fail if OnOpen closed it
				for _, cl := range clients {
					_, err := cl.Write([]byte("ping"))
					require.NoError(t, err)
				}
				r.s.k.Advance(2 * time.Second) // past the timer
				for i, cl := range clients {
					assert.Equal(t, "ping", string(cl.ReadAll()), "connection %d, first round", i)
				}
				for _, cl := range clients {
					_, err := cl.Write([]byte("pong"))
					require.NoError(t, err)
				}
				r.s.k.RunUntilIdle()
				for i, cl := range clients {
					assert.Equal(t, "pong", string(cl.ReadAll()), "connection %d, second round", i)
				}

				st := r.srv.Stats()
				var victims []closeRec
				rec.mu.Lock()
				for c, cr := range rec.closed {
					if c.Context() == "victim" {
						victims = append(victims, cr)
					} else {
						t.Errorf("a connection other than the victim closed: %v", cr.err)
					}
				}
				rec.mu.Unlock()
				panics := logs.matching("handler panicked")
				require.Len(t, panics, 1, "the panic is logged once")
				assert.Equal(t, panicValue, panics[0].attrs["panic"])
				stack, _ := panics[0].attrs["stack"].(string)
				assert.Contains(t, stack, "TestSimPanicIsolation", "the log carries the panicking stack")
				if tt.wantVictim {
					assert.True(t, victim.WasReset(), "the peer of a panicked connection sees a reset")
					require.Len(t, victims, 1, "the victim is closed")
					assert.ErrorIs(t, victims[0].err, ErrHandlerPanic)
					assert.Contains(t, victims[0].err.Error(), panicValue)
					assert.Equal(t, int64(1), st.Closed.Panic)
					assert.Equal(t, int64(others), st.Open)
				} else {
					assert.Empty(t, victims, "a panic outside a connection's callback closes no connection")
					assert.Equal(t, int64(0), st.Closed.Panic)
					assert.Equal(t, int64(others+1), st.Open)
				}
			})
		}
	}
}

// dialOpenAny dials and runs the simulation; the connection may already be
// closed again (its OnOpen panicked).
func (r *simRig) dialOpenAny() (*sim.Conn, *Conn) {
	cl := r.dial()
	r.s.k.RunUntilIdle()
	return cl, r.rec.conn(cl)
}

// TestRecoverOffLetsPanicCrash runs a server with WithRecover(false) whose
// handler panics, in a child process (this test binary again), and checks
// that the panic crashed it.
func TestRecoverOffLetsPanicCrash(t *testing.T) {
	if os.Getenv("REACTOR_RECOVER_OFF_CHILD") == "1" {
		recovered := make(chan struct{})
		rec := newRecorder()
		rec.msg = func(c *Conn, in *Buffer) { panic(panicValue) }
		rec.close = func(c *Conn, err error) {
			if errors.Is(err, ErrHandlerPanic) {
				close(recovered) // recovery was on after all
			}
		}
		r := startSim(t, 6, rec, WithLoops(1), WithRecover(false))
		cl := r.dial()
		_, _ = cl.Write([]byte("x"))
		r.s.k.RunUntilIdle() // the loop goroutine panics
		// Wait for the process to die. (A loop unwinding from a panic
		// still runs its deferred clean-up, so RunUntilIdle may return
		// first.)
		select {
		case <-recovered:
			t.Log("the panic was recovered")
		case <-time.After(time.Minute): // a safety net: the crash comes in milliseconds
			t.Error("neither crashed nor recovered")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecoverOffLetsPanicCrash$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "REACTOR_RECOVER_OFF_CHILD=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the child should have crashed; its output:\n%s", out)
	assert.Equal(t, 2, exit.ExitCode(), "a Go panic exits with status 2; output:\n%s", out)
	assert.Contains(t, string(out), "panic: "+panicValue)
	assert.NotContains(t, string(out), "was recovered")
}

func TestSimCloseReasonCounters(t *testing.T) {
	type script func(t *testing.T, r *simRig)
	// Each script ends one connection for one reason; the commands the
	// handler obeys are in cmdHandler.
	send := func(t *testing.T, r *simRig, cmd string) *sim.Conn {
		cl, _ := r.dialOpen()
		_, err := cl.Write([]byte(cmd))
		require.NoError(t, err)
		r.s.k.RunUntilIdle()
		return cl
	}
	tests := []struct {
		name string
		run  script
		want CloseStats
	}{
		{"peer", func(t *testing.T, r *simRig) {
			cl := send(t, r, "echo")
			require.NoError(t, cl.CloseWrite())
			r.s.k.RunUntilIdle()
		}, CloseStats{Peer: 1}},
		{"local", func(t *testing.T, r *simRig) { send(t, r, "close") }, CloseStats{Local: 1}},
		{"local half-close", func(t *testing.T, r *simRig) {
			cl := send(t, r, "closewrite")
			require.NoError(t, cl.CloseWrite())
			r.s.k.RunUntilIdle()
		}, CloseStats{Local: 1}},
		{"shutdown", func(t *testing.T, r *simRig) { send(t, r, "echo"); r.shutdown() }, CloseStats{Shutdown: 1}},
		{"reset", func(t *testing.T, r *simRig) {
			cl := send(t, r, "echo")
			require.NoError(t, cl.Reset())
			r.s.k.RunUntilIdle()
		}, CloseStats{Reset: 1}},
		{"idle timeout", func(t *testing.T, r *simRig) {
			send(t, r, "idle")
			r.s.k.Advance(time.Second)
		}, CloseStats{IdleTimeout: 1}},
		{"write timeout", func(t *testing.T, r *simRig) {
			cl, _ := r.dialOpen()
			cl.SetReceiveWindow(0)
			_, _ = cl.Write([]byte("flood"))
			r.s.k.Advance(time.Second)
		}, CloseStats{WriteTimeout: 1}},
		{"input too large", func(t *testing.T, r *simRig) { send(t, r, "hold"+strings.Repeat(".", 200)) }, CloseStats{InputTooLarge: 1}},
		{"panic", func(t *testing.T, r *simRig) { send(t, r, "panic") }, CloseStats{Panic: 1}},
		{"error", func(t *testing.T, r *simRig) {
			cl, _ := r.dialOpen()
			r.s.k.Inject(sim.Fault{Op: sim.OpRead, Conn: cl, Err: unix.EIO, Times: 1})
			_, _ = cl.Write([]byte("echo"))
			r.s.k.RunUntilIdle()
		}, CloseStats{Error: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			rec.msg = cmdHandler
			r := startSim(t, 7, rec, WithLoops(2), WithMaxInputSize(100))
			tt.run(t, r)
			r.shutdown()
			st := r.srv.Stats()
			assert.Equal(t, tt.want, st.Closed)
			assert.Equal(t, int64(0), st.Open)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			require.Len(t, rec.closed, 1)
			for _, cr := range rec.closed {
				switch {
				case tt.want.Reset > 0:
					assert.ErrorIs(t, cr.err, syscall.ECONNRESET)
				case tt.want.Error > 0:
					assert.ErrorIs(t, cr.err, unix.EIO)
				case tt.want.Peer+tt.want.Local+tt.want.Shutdown > 0:
					assert.NoError(t, cr.err)
				}
			}
		})
	}
}

// cmdHandler obeys the first message of a connection: "close" closes it,
// "closewrite" half-closes it, "idle" gives it a 1s idle timeout, "flood"
// writes 100 KiB (more than a client's window and the server's send buffer
// take) under a 1s write timeout, "hold..." keeps its input,
// "panic" panics; anything else is echoed.
func cmdHandler(c *Conn, in *Buffer) {
	msg := string(in.Bytes())
	switch {
	case msg == "close":
		in.Discard(in.Len())
		_ = c.Close()
	case msg == "closewrite":
		in.Discard(in.Len())
		_ = c.CloseWrite()
	case msg == "idle":
		in.Discard(in.Len())
		c.SetIdleTimeout(time.Second)
	case msg == "flood":
		in.Discard(in.Len())
		c.SetWriteTimeout(time.Second)
		_, _ = c.Write(make([]byte, 100<<10))
	case strings.HasPrefix(msg, "hold"):
	case msg == "panic":
		panic(panicValue)
	default:
		_, _ = c.Write(in.Next(in.Len()))
	}
}

func TestSimStatsCounters(t *testing.T) {
	const limit = 4
	rec := newRecorder()
	r := startSim(t, 8, rec, WithLoops(2), WithMaxConns(limit))
	loopStats := func(st Stats, name string) LoopStats {
		for _, ls := range st.Loops {
			if ls.Name == name {
				return ls
			}
		}
		t.Fatalf("no loop %q in %+v", name, st.Loops)
		return LoopStats{}
	}

	// Connections, per loop: round-robin puts two on each sub-loop; the
	// fifth is rejected.
	var cls []*sim.Conn
	for range limit + 1 {
		cls = append(cls, r.dial())
	}
	r.s.k.RunUntilIdle()
	st := r.srv.Stats()
	assert.Equal(t, int64(limit), st.Open)
	assert.Equal(t, int64(limit+1), st.Accepted)
	assert.Equal(t, int64(1), st.Rejected)
	require.Len(t, st.Loops, 3, "the main loop and two sub-loops")
	assert.Equal(t, int64(0), loopStats(st, "main").Conns)
	assert.Equal(t, int64(2), loopStats(st, "0").Conns)
	assert.Equal(t, int64(2), loopStats(st, "1").Conns)

	// Bytes: each served client sends i+1 KiB and gets it echoed.
	total := 0
	for i, cl := range cls[:limit] {
		n := (i + 1) << 10
		total += n
		_, err := cl.Write(make([]byte, n))
		require.NoError(t, err)
	}
	r.s.k.RunUntilIdle()
	for i, cl := range cls[:limit] {
		assert.Len(t, cl.ReadAll(), (i+1)<<10)
	}
	st = r.srv.Stats()
	assert.Equal(t, int64(total), st.BytesRead)
	assert.Equal(t, int64(total), st.BytesWritten)
	var perLoopRead, perLoopWritten int64
	for _, ls := range st.Loops {
		perLoopRead += ls.BytesRead
		perLoopWritten += ls.BytesWritten
	}
	assert.Equal(t, st.BytesRead, perLoopRead)
	assert.Equal(t, st.BytesWritten, perLoopWritten)
	assert.Equal(t, int64(0), loopStats(st, "main").BytesRead, "the main loop only accepts")

	// Task-queue depth: tasks submitted while the loop is parked wait.
	l0 := r.srv.loops[0]
	ran := 0
	for range 3 {
		l0.Submit(func() { ran++ })
	}
	assert.Equal(t, 3, loopStats(r.srv.Stats(), l0.name).Tasks)
	r.s.k.RunUntilIdle()
	assert.Equal(t, 3, ran)
	assert.Equal(t, 0, loopStats(r.srv.Stats(), l0.name).Tasks)

	// Accept failures: EPERM is counted as an accept error, EMFILE as
	// descriptor exhaustion (accepting resumes after the back-off); both
	// leave the connection queued, and it is accepted in the end.
	require.NoError(t, cls[0].Close())
	require.NoError(t, cls[1].Close())
	r.s.k.RunUntilIdle()
	r.s.k.Inject(sim.Fault{Op: sim.OpAccept, Err: unix.EPERM, Times: 1})
	late1 := r.dial()
	r.s.k.RunUntilIdle()
	r.s.k.Inject(sim.Fault{Op: sim.OpAccept, Err: unix.EMFILE, Times: 1})
	late2 := r.dial()
	r.s.k.RunUntilIdle()
	assert.Nil(t, r.rec.conn(late2), "accepting is paused")
	r.s.k.Advance(acceptBackoffMin)
	assert.NotNil(t, r.rec.conn(late1))
	assert.NotNil(t, r.rec.conn(late2), "accepting resumed after the back-off")
	st = r.srv.Stats()
	assert.Equal(t, int64(1), st.AcceptErrors)
	assert.Equal(t, int64(1), st.FDExhausted)
	assert.Equal(t, int64(limit+3), st.Accepted)
	assert.Equal(t, int64(limit), st.Open)
	assert.Equal(t, int64(2), st.Closed.Peer)

	// ExpvarStats renders the same snapshot as JSON.
	var ev expvar.Var = r.srv.ExpvarStats()
	var decoded Stats
	require.NoError(t, json.Unmarshal([]byte(ev.String()), &decoded))
	assert.Equal(t, r.srv.Stats(), decoded)
}

// TestSimTimeoutsCostNoTimer checks that the idle and write timeouts of
// busy connections keep the loop's timer heap empty and its timeout lists
// few: activity moves a connection within a list, it never schedules.
func TestSimTimeoutsCostNoTimer(t *testing.T) {
	rec := newRecorder()
	// No send buffer, so that the output beyond the client's window waits
	// in the server and the write timeout runs.
	r := startSimOn(t, NewSim(9, SimSendBuffer(-1)), rec, WithLoops(1), WithIdleTimeout(time.Minute), WithWriteTimeout(time.Minute))
	var cls []*sim.Conn
	for range 20 {
		cl, _ := r.dialOpen()
		cl.SetReceiveWindow(100) // so that output waits and the write timeout runs
		cls = append(cls, cl)
	}
	l := r.srv.loops[0]
	for round := range 50 {
		for _, cl := range cls {
			_, err := cl.Write(make([]byte, 150))
			require.NoError(t, err)
		}
		r.s.k.Advance(time.Second)
		for _, cl := range cls {
			_ = cl.ReadAll()
		}
		require.Len(t, l.timers, 0, "round %d: a timeout used the timer heap", round)
		require.Len(t, l.tmo.lists, 2, "one list per kind and duration")
	}
	opened, closed := rec.counts()
	assert.Equal(t, 20, opened)
	assert.Equal(t, 0, closed, "activity kept every connection open")
	for _, cl := range cls {
		cl.SetReceiveWindow(1 << 20)
	}
}

// benchTimeoutLoop returns a standalone loop (over the real clock) with n
// open connections under idle and write timeouts, the write timeout
// running: what a loop holds when every connection has output pending.
func benchTimeoutLoop(n int) (*EventLoop, []*Conn) {
	l := newEventLoop("bench", nil, nil, slog.New(slog.DiscardHandler), 512)
	conns := make([]*Conn, n)
	for i := range conns {
		c := &Conn{loop: l, state: connOpen, waitW: true}
		c.setTimeout(idleTimeout, time.Minute)
		c.setTimeout(writeTimeout, time.Minute)
		conns[i] = c
	}
	l.stampActivity()
	return l, conns
}

// TestTimeoutTouchAllocatesNothing: recording a message's activity (a read
// and a write that made progress) and the end of an iteration allocate
// nothing and leave the timer heap alone.
func TestTimeoutTouchAllocatesNothing(t *testing.T) {
	l, conns := benchTimeoutLoop(1000)
	i := 0
	allocs := testing.AllocsPerRun(10_000, func() {
		c := conns[i%len(conns)]
		c.touch(false)
		c.touch(true)
		if i%64 == 63 {
			l.stampActivity()
		}
		i++
	})
	assert.Zero(t, allocs)
	assert.Empty(t, l.timers)
	assert.Len(t, l.tmo.lists, 2)
}

// BenchmarkTimeoutTouch is the per-message cost of the timeouts: a read and
// a write that made progress restart both timeouts of one of 10 000
// connections; an iteration ends every 64 messages.
func BenchmarkTimeoutTouch(b *testing.B) {
	l, conns := benchTimeoutLoop(10_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := conns[i%len(conns)]
		c.touch(false)
		c.touch(true)
		if i%64 == 63 {
			l.stampActivity()
		}
		i++
	}
}
