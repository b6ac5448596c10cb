package reactor_test

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// pauseRig is a server over a Sim whose one connection the test pauses and
// resumes, recording the callbacks.
type pauseRig struct {
	s      *reactor.Sim
	stop   func() error
	conn   *reactor.Conn // the server's end, once open
	events []string
	got    bytes.Buffer
}

func newPauseRig(t *testing.T, h func(r *pauseRig) reactor.Handler, opts ...reactor.Option) (*pauseRig, *reactor.SimConn) {
	t.Helper()
	r := &pauseRig{s: reactor.NewSim(5, reactor.SimReceiveWindow(1024), reactor.SimSendBuffer(-1))}
	all := append([]reactor.Option{reactor.WithDispatcher(r.s.Dispatcher), reactor.WithLoops(0)}, opts...)
	srv, err := reactor.NewServer("127.0.0.1:80", h(r), all...)
	require.NoError(t, err)
	r.stop = r.s.Start(srv)
	t.Cleanup(func() { _ = r.stop() })
	c, err := r.s.Dial("127.0.0.1:80")
	require.NoError(t, err)
	r.s.RunUntilIdle()
	require.NotNil(t, r.conn)
	return r, c
}

// onLoop runs fn on the connection's loop and lets the simulation run.
func (r *pauseRig) onLoop(fn func()) {
	_ = r.conn.Loop().Submit(fn)
	r.s.RunUntilIdle()
}

// recording is a handler that records what it sees and pauses reading as
// soon as the connection opens.
func recording(r *pauseRig) reactor.HandlerFuncs {
	return reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			r.conn = c
			c.PauseRead()
		},
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			r.events = append(r.events, fmt.Sprintf("message %d", in.Len()))
			r.got.Write(in.Next(in.Len()))
		},
		Close: func(c *reactor.Conn, err error) { r.events = append(r.events, fmt.Sprintf("close %v", err)) },
	}
}

func TestPauseReadPushesBackOnThePeer(t *testing.T) {
	r, c := newPauseRig(t, func(r *pauseRig) reactor.Handler { return recording(r) })
	payload := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB, four times the window
	_, err := c.Write(payload)
	require.NoError(t, err)
	r.s.RunUntilIdle()
	assert.Empty(t, r.events, "no OnMessage while paused")
	assert.Equal(t, len(payload)-1024, c.Pending(), "the server's receive window is full: the rest waits in the client")

	r.onLoop(r.conn.PauseRead) // repeated: harmless
	r.onLoop(r.conn.ResumeRead)
	assert.Equal(t, payload, r.got.Bytes())
	assert.Zero(t, c.Pending())

	// Pausing again stops the next bytes; they all come on resume.
	r.onLoop(r.conn.PauseRead)
	_, _ = c.WriteString("more")
	r.s.RunUntilIdle()
	n := len(r.events)
	r.onLoop(r.conn.ResumeRead)
	assert.Equal(t, n+1, len(r.events))
	assert.Equal(t, "more", r.got.String()[len(payload):])
}

func TestPauseReadComposesWithHighWater(t *testing.T) {
	// An echo server with a small high-water mark, talking to a client
	// whose window is closed: the echo's output passes the mark, which
	// pauses reading; the handler pauses it too on high water. Draining
	// the output lifts the mark's pause but not the handler's.
	r, c := newPauseRig(t, func(r *pauseRig) reactor.Handler {
		return &hwEcho{r: r}
	}, reactor.WithHighWaterMark(2048))
	c.SetReceiveWindow(0)
	_, _ = c.Write(bytes.Repeat([]byte("x"), 3000))
	r.s.RunUntilIdle()
	assert.Equal(t, []string{"high"}, r.events)
	_, _ = c.Write(bytes.Repeat([]byte("y"), 100))
	r.s.RunUntilIdle()

	c.SetReceiveWindow(1 << 20) // the client reads: the output drains
	r.s.RunUntilIdle()
	assert.Equal(t, []string{"high", "low"}, r.events)
	assert.Equal(t, 3000, r.got.Len(), "still paused by the handler: the y's wait in the kernel")
	assert.Len(t, c.ReadAll(), 3000)

	r.onLoop(r.conn.ResumeRead)
	r.s.RunUntilIdle()
	assert.Equal(t, 3100, r.got.Len(), "every byte read once both pauses are lifted")
}

// hwEcho echoes, and pauses reading itself while its output is above the
// high-water mark.
type hwEcho struct {
	r *pauseRig
}

func (h *hwEcho) OnOpen(c *reactor.Conn) { h.r.conn = c }
func (h *hwEcho) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	h.r.got.Write(in.Bytes())
	_, _ = c.Write(in.Next(in.Len()))
}
func (h *hwEcho) OnWriteComplete(*reactor.Conn) {}
func (h *hwEcho) OnClose(*reactor.Conn, error)  {}
func (h *hwEcho) OnHighWater(c *reactor.Conn, _ int) {
	h.r.events = append(h.r.events, "high")
	c.PauseRead()
}
func (h *hwEcho) OnLowWater(*reactor.Conn, int) { h.r.events = append(h.r.events, "low") }

func TestPausedConnectionLearnsOfAReset(t *testing.T) {
	r, c := newPauseRig(t, func(r *pauseRig) reactor.Handler { return recording(r) })
	_, _ = c.WriteString("unread")
	r.s.RunUntilIdle()
	require.NoError(t, c.Reset())
	// A reset is reported whatever the interest; a loop that did not act
	// on it would be given it again on every turn and never become idle.
	for i := 0; r.s.Step(); i++ {
		require.Less(t, i, 100, "the paused connection's failure keeps its loop busy")
	}
	require.Len(t, r.events, 1)
	assert.Contains(t, r.events[0], syscall.ECONNRESET.Error())
}

func TestPausedConnectionFinishedBothWays(t *testing.T) {
	// Both sides have sent FIN while the server's reading is paused: the
	// socket reports a hang-up whatever the interest. The connection must
	// neither spin nor lose the bytes it has not read: they, and the EOF,
	// are read on resume.
	r, c := newPauseRig(t, func(r *pauseRig) reactor.Handler {
		h := recording(r)
		open := h.Open
		h.Open = func(c *reactor.Conn) {
			open(c)
			_ = c.CloseWrite()
		}
		return h
	})
	_, _ = c.WriteString("last words")
	require.NoError(t, c.CloseWrite())
	for i := 0; r.s.Step(); i++ {
		require.Less(t, i, 100, "the hang-up keeps the paused connection's loop busy")
	}
	assert.True(t, c.EOF())
	assert.Empty(t, r.events)
	r.onLoop(r.conn.ResumeRead)
	assert.Equal(t, []string{"message 10", "close <nil>"}, r.events)
	assert.Equal(t, "last words", r.got.String())
}
