package reactor

// The close paths over the simulation, where every step and every virtual
// nanosecond can be checked: the lingering close, its bounds, writing after
// the peer's half-close, and the notice of a graceful shutdown.

import (
	"bytes"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/internal/sim"
)

// drainClient reads what the server sends, step by step, until the
// server's FIN, and returns it with the error that ended it (nil at EOF).
// It reads at most perStep bytes between steps: a slow reader, so that the
// server's output is still in flight when it closes.
func drainClient(t *testing.T, r *simRig, cl *sim.Conn, perStep int) ([]byte, error) {
	t.Helper()
	var got []byte
	buf := make([]byte, perStep)
	for range 1_000_000 {
		n, err := cl.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		if n == 0 && !r.s.k.Step() {
			if cl.EOF() && cl.Buffered() == 0 {
				return got, nil
			}
			if !r.s.k.Step() {
				return got, errors.New("the server neither sends nor closes")
			}
		}
	}
	return got, errors.New("no end")
}

// TestSimLingeringClose: a reply larger than the client's window and the
// server's send buffer, a Close, and a request the server never reads. A
// plain close(2) would reset the connection and lose what is in flight;
// the lingering close delivers everything, then FIN.
func TestSimLingeringClose(t *testing.T) {
	reply := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	rec := newRecorder()
	rec.msg = func(c *Conn, in *Buffer) {
		if in.IndexByte('\n') >= 0 {
			in.Discard(in.Len())
			_, _ = c.Write(reply)
			_ = c.Close()
		}
	}
	r := startSim(t, 5, rec, WithLoops(1))
	cl, sc := r.dialOpen()
	_, _ = cl.Write([]byte("GET\n"))
	r.s.k.Step()
	_, _ = cl.Write([]byte("GET again\n")) // after the Close: never read
	got, err := drainClient(t, r, cl, 10_000)
	require.NoError(t, err, "the client must see EOF, not a reset, after %d of %d bytes", len(got), len(reply))
	assert.Equal(t, reply, got)
	assert.False(t, cl.WasReset())

	// The server lingers until the client's EOF, holding no buffer.
	r.s.k.RunUntilIdle()
	_, closed := rec.closeOf(sc)
	require.False(t, closed, "closed before the client's EOF")
	require.Equal(t, connLinger, sc.state)
	assert.Nil(t, sc.in)
	assert.Nil(t, sc.out)
	require.NoError(t, cl.Close())
	r.s.k.RunUntilIdle()
	cr, closed := rec.closeOf(sc)
	require.True(t, closed)
	assert.NoError(t, cr.err)
	assert.Equal(t, int64(1), r.srv.Stats().Closed.Local)
	assert.Contains(t, r.s.k.TraceText(), "shutdown fd=")
}

func TestSimLingerBounds(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		client  func(t *testing.T, r *simRig, cl *sim.Conn)
		wantAt  time.Duration // virtual time of OnClose, from the Close
		wantErr error
		expired int64
	}{
		{
			name:   "a client that never closes: the linger timeout",
			wantAt: DefaultLingerTimeout, expired: 1,
		},
		{
			name: "a shorter linger timeout", opts: []Option{WithLingerTimeout(time.Second)},
			wantAt: time.Second, expired: 1,
		},
		{
			name: "input arriving during the linger is discarded, not waited for",
			client: func(t *testing.T, r *simRig, cl *sim.Conn) {
				r.s.k.Advance(time.Second)
				_, _ = cl.Write([]byte("more"))
				r.s.k.RunUntilIdle()
			},
			wantAt: DefaultLingerTimeout, expired: 1,
		},
		{
			name: "a flood past LingerMaxBytes resets",
			client: func(t *testing.T, r *simRig, cl *sim.Conn) {
				_, _ = cl.Write(make([]byte, LingerMaxBytes+1))
				r.s.k.RunUntilIdle()
			},
			wantAt: 0, wantErr: ErrInputTooLarge,
		},
		{
			name: "a reset during the linger is reported",
			client: func(t *testing.T, r *simRig, cl *sim.Conn) {
				require.NoError(t, cl.Reset())
				r.s.k.RunUntilIdle()
			},
			wantAt: 0, wantErr: syscall.ECONNRESET,
		},
		{
			name: "lingering off: closed at once", opts: []Option{WithLingerTimeout(0)},
			wantAt: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			rec.msg = cmdHandler
			r := startSim(t, 9, rec, append([]Option{WithLoops(0)}, tt.opts...)...)
			cl, sc := r.dialOpen()
			_, _ = cl.Write([]byte("close"))
			r.s.k.RunUntilIdle()
			start := r.now()
			if tt.client != nil {
				tt.client(t, r, cl)
			}
			if tt.wantAt > 0 {
				r.s.k.AdvanceTo(start + tt.wantAt - 1)
				_, closed := rec.closeOf(sc)
				require.False(t, closed, "closed before the linger ended")
				r.s.k.AdvanceTo(start + tt.wantAt)
			}
			cr, closed := rec.closeOf(sc)
			require.True(t, closed)
			assert.Equal(t, start+tt.wantAt, cr.at)
			if tt.wantErr != nil {
				assert.ErrorIs(t, cr.err, tt.wantErr)
			} else {
				assert.NoError(t, cr.err)
			}
			assert.Equal(t, tt.expired, r.srv.Stats().LingerExpired)
			_ = cl.Close()
		})
	}
}

// A lingering connection still counts as open: WithMaxConns rejects the
// next one, and a hard Close ends the linger at once.
func TestSimLingerCountsAndHardClose(t *testing.T) {
	rec := newRecorder()
	rec.msg = cmdHandler
	r := startSim(t, 2, rec, WithLoops(0), WithMaxConns(1))
	cl, sc := r.dialOpen()
	_, _ = cl.Write([]byte("close"))
	r.s.k.RunUntilIdle()
	require.Equal(t, connLinger, sc.state)
	assert.Equal(t, int64(1), r.srv.Stats().Open)

	cl2 := r.dial()
	r.s.k.RunUntilIdle()
	assert.Nil(t, rec.conn(cl2))
	assert.Equal(t, int64(1), r.srv.Stats().Rejected)

	r.stopped = true // closed here, hard
	require.NoError(t, r.srv.Close())
	require.ErrorIs(t, <-r.errc, ErrServerClosed)
	cr, closed := rec.closeOf(sc)
	require.True(t, closed)
	assert.ErrorIs(t, cr.err, ErrServerClosed)
	assert.Equal(t, time.Duration(0), cr.at, "no linger time passed")
	assert.Empty(t, r.s.k.OpenFDs())
}

// halfCloser answers a request after the client has shut down its write
// side, a second (virtual) after it arrived, as a reply computed elsewhere
// would be; then it closes.
type halfCloser struct {
	*recorder
	halfClosed int
}

func (h *halfCloser) OnHalfClose(c *Conn) {
	h.halfClosed++
	c.Loop().AfterFunc(time.Second, func() {
		_, _ = c.Write([]byte("late reply"))
		_ = c.Close()
	})
}

func TestSimWriteAfterPeerHalfClose(t *testing.T) {
	t.Run("HalfCloseHandler keeps it open for writing", func(t *testing.T) {
		h := &halfCloser{recorder: newRecorder()}
		h.msg = discard
		r := startSimHandler(t, 1, h.recorder, h, WithLoops(0))
		cl, sc := r.dialOpen()
		_, _ = cl.Write([]byte("request"))
		require.NoError(t, cl.CloseWrite())
		r.s.k.RunUntilIdle()
		assert.Equal(t, 1, h.halfClosed)
		_, closed := h.closeOf(sc)
		require.False(t, closed)
		r.s.k.Advance(time.Second)
		assert.Equal(t, "late reply", string(cl.ReadAll()))
		assert.True(t, readEOF(cl))
		cr, closed := h.closeOf(sc)
		require.True(t, closed)
		assert.NoError(t, cr.err)
		assert.Equal(t, time.Second, cr.at)
	})
	t.Run("without it, the connection closes and Write fails", func(t *testing.T) {
		rec := newRecorder()
		rec.msg = discard
		r := startSim(t, 1, rec, WithLoops(0))
		cl, sc := r.dialOpen()
		_, _ = cl.Write([]byte("request"))
		require.NoError(t, cl.CloseWrite())
		r.s.k.RunUntilIdle()
		_, closed := rec.closeOf(sc)
		require.True(t, closed)
		_, err := sc.Write([]byte("late"))
		assert.ErrorIs(t, err, ErrConnClosed)
	})
	t.Run("the idle timeout still applies", func(t *testing.T) {
		h := &halfCloser{recorder: newRecorder()}
		h.msg = discard
		r := startSimHandler(t, 1, h.recorder, idleHalfCloser{h}, WithLoops(0), WithIdleTimeout(3*time.Second))
		cl, sc := r.dialOpen()
		_, _ = cl.Write([]byte("request"))
		require.NoError(t, cl.CloseWrite())
		r.s.k.Advance(10 * time.Second)
		cr, closed := h.closeOf(sc)
		require.True(t, closed)
		assert.ErrorIs(t, cr.err, ErrIdleTimeout)
		assert.Equal(t, 3*time.Second, cr.at)
	})
	t.Run("a reset while half-open ends it", func(t *testing.T) {
		h := &halfCloser{recorder: newRecorder()}
		h.msg = discard
		r := startSimHandler(t, 1, h.recorder, idleHalfCloser{h}, WithLoops(0))
		cl, sc := r.dialOpen()
		_, _ = cl.Write([]byte("request"))
		require.NoError(t, cl.CloseWrite())
		r.s.k.RunUntilIdle()
		require.NoError(t, cl.Reset())
		steps := 0
		for ; steps < 100 && r.s.k.Step(); steps++ {
		}
		require.Less(t, steps, 100, "a failed half-open connection must not spin the loop")
		cr, closed := h.closeOf(sc)
		require.True(t, closed)
		// A reset that follows the peer's FIN is not reported to reads
		// (Linux reports it as EPIPE, to writes only): with no output
		// pending, nothing was lost.
		if cr.err != nil {
			assert.ErrorIs(t, cr.err, syscall.EPIPE)
		}
	})
}

// idleHalfCloser keeps the connection open after the peer's EOF and never
// answers.
type idleHalfCloser struct{ *halfCloser }

func (idleHalfCloser) OnHalfClose(*Conn) {}

// shutdownNotified closes an idle connection at once when a shutdown
// begins, and a connection in the middle of a request after answering it.
type shutdownNotified struct {
	*recorder
	notified []*Conn
}

func (h *shutdownNotified) OnShutdown(c *Conn) {
	h.notified = append(h.notified, c)
	if c.in == nil { // nothing half-received: idle
		_ = c.Close()
		return
	}
	c.SetContext("closing")
}

func TestSimShutdownHandler(t *testing.T) {
	h := &shutdownNotified{recorder: newRecorder()}
	h.msg = func(c *Conn, in *Buffer) {
		for i := in.IndexByte('\n'); i >= 0; i = in.IndexByte('\n') {
			in.Discard(i + 1)
			_, _ = c.Write([]byte("OK\n"))
			if c.Context() == "closing" {
				_ = c.Close()
				return
			}
		}
	}
	r := startSimHandler(t, 4, h.recorder, h, WithLoops(2))
	idle, idleC := r.dialOpenAny()
	busy, busyC := r.dialOpenAny()
	_, _ = busy.Write([]byte("REQ"))
	r.s.k.RunUntilIdle()

	require.True(t, r.srv.beginStop(false))
	r.s.k.RunUntilIdle()
	assert.ElementsMatch(t, []*Conn{idleC, busyC}, h.notified)
	assert.True(t, readEOF(idle), "the idle connection is closed at once")
	_ = idle.Close()

	// The busy one is still served: its request completes and is answered.
	_, _ = busy.Write([]byte(" 1\n"))
	r.s.k.RunUntilIdle()
	assert.Equal(t, "OK\n", string(busy.ReadAll()))
	assert.True(t, readEOF(busy))
	_ = busy.Close()
	r.s.k.RunUntilIdle()
	require.True(t, r.srv.loopsStopped())
	r.stopped = true
	require.ErrorIs(t, <-r.errc, ErrServerClosed)
	st := r.srv.Stats()
	assert.Equal(t, int64(2), st.Closed.Shutdown)
}

// TestSimNoMessageAfterCloseInCallback: a Close made in OnWriteComplete
// while the loop flushes at the end of an iteration (here after a write
// from a task) used to leave the connection reading until the next
// iteration, which dispatched the client's next bytes to OnMessage before
// the close was carried out.
func TestSimNoMessageAfterCloseInCallback(t *testing.T) {
	h := &closeOnWriteComplete{recorder: newRecorder()}
	h.msg = func(c *Conn, in *Buffer) {
		if h.closed {
			h.after = append(h.after, string(in.Bytes()))
		}
		in.Discard(in.Len())
	}
	r := startSimHandler(t, 6, h.recorder, h, WithLoops(0))
	cl, sc := r.dialOpen()
	require.NoError(t, sc.Loop().Submit(func() { _, _ = sc.Write([]byte("x")) }))
	require.True(t, r.s.k.Step()) // the task writes; the flush calls OnWriteComplete, which closes
	require.True(t, h.closed)
	_, _ = cl.Write([]byte("after close"))
	r.s.k.RunUntilIdle()
	assert.Empty(t, h.after, "OnMessage after Close")
	_ = cl.Close()
}

type closeOnWriteComplete struct {
	*recorder
	closed bool
	after  []string
}

func (h *closeOnWriteComplete) OnWriteComplete(c *Conn) {
	h.closed = true
	_ = c.Close()
}

// A handler that calls SetLimit on the Buffer it is given must neither lift
// WithMaxInputSize nor leave its limit on the loop's shared buffer.
func TestSimHandlerSetLimitDoesNotLiftMaxInput(t *testing.T) {
	rec := newRecorder()
	rec.msg = func(c *Conn, in *Buffer) {
		in.SetLimit(0) // keeps everything, and tries to lift the limit
		if in == &c.loop.inView {
			in.SetLimit(5)
		}
	}
	r := startSim(t, 8, rec, WithLoops(0), WithMaxInputSize(100))
	cl, sc := r.dialOpen()
	_, _ = cl.Write(make([]byte, 60))
	r.s.k.RunUntilIdle()
	assert.Equal(t, 0, sc.loop.inView.limit, "a handler's limit stayed on the shared buffer")
	_, _ = cl.Write(make([]byte, 60))
	r.s.k.RunUntilIdle()
	cr, closed := rec.closeOf(sc)
	require.True(t, closed, "120 bytes held under a limit of 100")
	assert.ErrorIs(t, cr.err, ErrInputTooLarge)
	_ = cl.Close()
}

// A handler that panics after writing part of a reply ends its connection
// with a reset, so the peer cannot take the part for the whole: it reads
// what arrived, then ECONNRESET, never EOF.
func TestSimPanicEndsWithAReset(t *testing.T) {
	rec := newRecorder()
	rec.msg = func(c *Conn, in *Buffer) {
		in.Discard(in.Len())
		_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Len"))
		panic(panicValue)
	}
	r := startSim(t, 3, rec, WithLoops(0))
	cl, sc := r.dialOpen()
	_, _ = cl.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	r.s.k.RunUntilIdle()
	cr, closed := rec.closeOf(sc)
	require.True(t, closed)
	assert.ErrorIs(t, cr.err, ErrHandlerPanic)
	require.True(t, cl.WasReset())
	_, err := cl.Read(make([]byte, 100))
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	_ = cl.Close()
}
