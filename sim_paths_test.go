package reactor_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// These tests reproduce the server's hard paths over the simulation, each
// deterministically, and check the exact sequence of kernel calls and
// callbacks in the trace where the order is the point.

// simLog collects what callbacks report, for the test goroutine to read
// between driver calls.
type simLog struct {
	mu     sync.Mutex
	conn   *reactor.Conn // the last connection opened
	events []string
	closed error
}

func (l *simLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf(format, args...))
}

func (l *simLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

func (l *simLog) srvConn() *reactor.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn
}

func (l *simLog) closeErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// handler records OnOpen, OnWriteComplete and OnClose (with the loop's
// virtual time) around message.
func (l *simLog) handler(message func(*reactor.Conn, *reactor.Buffer)) reactor.HandlerFuncs {
	return reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			l.mu.Lock()
			l.conn = c
			l.mu.Unlock()
			l.add("open at %v", c.Loop().Now())
		},
		Message:       message,
		WriteComplete: func(c *reactor.Conn) { l.add("write complete") },
		Close: func(c *reactor.Conn, err error) {
			l.mu.Lock()
			l.closed = err
			l.mu.Unlock()
			l.add("close at %v", c.Loop().Now())
		},
	}
}

// since returns the trace lines after the first n.
func since(s *reactor.Sim, n int) []string { return traceLines(s)[n:] }

// A reply larger than the client's receive window: the first write comes up
// short, the rest stays buffered with EventWrite registered, each time the
// client reads the loop is woken for writing and sends more, and once the
// output is drained OnWriteComplete runs, once, and EventWrite is dropped.
func TestSimPartialWriteDrainsThroughEventWrite(t *testing.T) {
	// No send buffer: a write takes exactly the client's window, so the
	// output beyond it waits in the server, where this test looks.
	s := reactor.NewSim(1, reactor.SimSendBuffer(-1))
	var log simLog
	reply := []byte(strings.Repeat("0123456789", 2) + "abcde") // 25 bytes
	simServe(t, s, log.handler(func(c *reactor.Conn, in *reactor.Buffer) {
		in.Discard(in.Len())
		_, _ = c.Write(reply)
	}))
	c := simDial(t, s)
	c.SetReceiveWindow(10)
	_, err := c.WriteString("go")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, []string{
		"0s turn p1 [4:R]",
		"0s accept c1 fd=4 nfd=5 192.0.2.1:40000",
		"0s note loop 0: OnOpen fd=5 peer=192.0.2.1:40000",
		"0s accept fd=4 EAGAIN",
		"0s turn p1 [5:R]",
		"0s read fd=5 n=2",
		"0s note loop 0: OnMessage fd=5 in=2",
		"0s write fd=5 n=10", // short: the window is full
	}, since(s, 4))
	assert.Equal(t, 15, log.srvConn().Buffered(), "the rest is buffered in the server")
	assert.Equal(t, []string{"open at 0s"}, log.get(), "no OnWriteComplete yet")
	assert.False(t, s.Step(), "idle: writable is not reported while the window is full")

	mark := len(traceLines(s))
	assert.Equal(t, "0123456789", string(c.ReadAll()))
	s.RunUntilIdle()
	assert.Equal(t, []string{
		"0s read c1 n=10",
		"0s turn p1 [5:W]", // EventWrite: room again
		"0s write fd=5 n=10",
	}, since(s, mark))
	assert.Equal(t, 5, log.srvConn().Buffered())

	mark = len(traceLines(s))
	assert.Equal(t, "0123456789", string(c.ReadAll()))
	s.RunUntilIdle()
	assert.Equal(t, []string{
		"0s read c1 n=10",
		"0s turn p1 [5:W]",
		"0s write fd=5 n=5", // drained
		"0s note loop 0: OnWriteComplete fd=5",
	}, since(s, mark))
	assert.Equal(t, "abcde", string(c.ReadAll()))
	assert.Zero(t, log.srvConn().Buffered())
	assert.Equal(t, []string{"open at 0s", "write complete"}, log.get(), "OnWriteComplete once, after the drain")
	assert.False(t, s.Step(), "EventWrite was dropped: with room in the window, it would be reported forever")
}

// simWatermarks is an echo handler that implements WatermarkHandler.
type simWatermarks struct {
	reactor.HandlerFuncs
	log *simLog
}

func (h simWatermarks) OnHighWater(c *reactor.Conn, buffered int) { h.log.add("high %d", buffered) }
func (h simWatermarks) OnLowWater(c *reactor.Conn, buffered int)  { h.log.add("low %d", buffered) }

// Above the high-water mark the connection stops reading: bytes the client
// sends stay in the server's socket, and the handler is told. Once the
// output drains to half the mark, reading resumes and the handler is told
// again. Nothing is lost or reordered.
func TestSimHighWaterPausesReadingAndResumes(t *testing.T) {
	// No send buffer: a write takes exactly the client's window, so the
	// output beyond it waits in the server, where this test looks.
	s := reactor.NewSim(1, reactor.SimSendBuffer(-1))
	var log simLog
	h := simWatermarks{HandlerFuncs: log.handler(simEcho().Message), log: &log}
	simServe(t, s, h, reactor.WithHighWaterMark(100))
	c := simDial(t, s)
	c.SetReceiveWindow(0) // reads nothing for now
	data := make([]byte, 500)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	_, err := c.Write(data[:300])
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, []string{
		"0s turn p1 [5:R]",
		"0s read fd=5 n=300",
		"0s note loop 0: OnMessage fd=5 in=300",
		"0s write fd=5 EAGAIN",
		"0s note loop 0: high water fd=5 buffered=300",
	}, since(s, 8))
	assert.Equal(t, []string{"open at 0s", "high 300"}, log.get())

	mark := len(traceLines(s))
	_, err = c.Write(data[300:])
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, []string{"0s write c1 n=200"}, since(s, mark), "paused: the server does not read")
	assert.Zero(t, c.Pending(), "the bytes wait in the server's socket")

	mark = len(traceLines(s))
	c.SetReceiveWindow(250)
	s.RunUntilIdle()
	assert.Equal(t, []string{
		"0s turn p1 [5:W]",
		"0s write fd=5 n=250",
		"0s note loop 0: low water fd=5 buffered=50", // half the mark: resume
		"0s turn p1 [5:R]",
		"0s read fd=5 n=200",
		"0s note loop 0: OnMessage fd=5 in=200",
		"0s note loop 0: high water fd=5 buffered=250", // and pause again
	}, since(s, mark))

	mark = len(traceLines(s))
	got := c.ReadAll()
	s.RunUntilIdle()
	got = append(got, c.ReadAll()...)
	assert.Equal(t, []string{
		"0s read c1 n=250",
		"0s turn p1 [5:W]",
		"0s write fd=5 n=250",
		"0s note loop 0: low water fd=5 buffered=0",
		"0s note loop 0: OnWriteComplete fd=5",
		"0s read c1 n=250",
	}, since(s, mark))
	assert.Equal(t, data, got, "every byte, in order")
	assert.Equal(t, []string{"open at 0s", "high 300", "low 50", "high 250", "low 0", "write complete"}, log.get())
}

// The idle timeout fires at exactly the virtual deadline: last activity
// plus the timeout, not a nanosecond before.
func TestSimIdleTimeoutFiresAtTheExactDeadline(t *testing.T) {
	s := reactor.NewSim(1)
	var log simLog
	simServe(t, s, log.handler(simEcho().Message), reactor.WithIdleTimeout(10*time.Second))
	c := simDial(t, s)
	s.RunUntilIdle()
	s.Advance(3 * time.Second)
	_, err := c.WriteString("x") // activity at 3s: the deadline moves to 13s
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, "x", string(c.ReadAll()))

	s.Advance(10*time.Second - time.Nanosecond)
	assert.Equal(t, 13*time.Second-time.Nanosecond, s.Now())
	assert.False(t, c.EOF(), "a nanosecond early: still open")
	assert.NoError(t, log.closeErr())
	mark := len(traceLines(s))
	s.Advance(time.Nanosecond)
	assert.Equal(t, []string{
		"13s clock",
		"13s turn p1 [] timeout",
		"13s note loop 0: OnClose fd=5 err=reactor: idle timeout: no bytes for 10s",
		"13s close fd=5",
	}, since(s, mark))
	assert.ErrorIs(t, log.closeErr(), reactor.ErrIdleTimeout)
	assert.Equal(t, []string{"open at 0s", "write complete", "close at 13s"}, log.get())
	assert.True(t, c.EOF())
	assert.Equal(t, []string{
		"0s turn p1 [4:R]",
		"3s turn p1 [5:R]",
		"13s turn p1 [] timeout",
	}, traceLines(s, " turn "), "the loop slept from 3s to exactly 13s")
}

// A flood of connections beyond the descriptor limit: accept fails with
// EMFILE, the acceptor pauses instead of spinning on a listener that stays
// readable, retries on its back-off (10ms, then 20ms more), and accepts
// again as soon as a connection closes and frees a descriptor, until every
// client has been served.
func TestSimEMFILEFlood(t *testing.T) {
	s := reactor.NewSim(1)
	tr := newConnTracker()
	srv, _ := simServe(t, s, tr.handler(simEcho()))
	s.SetFDLimit(len(s.OpenFDs()) + 3) // three connections at a time
	const n = 20
	clients := make([]*reactor.SimConn, n)
	for i := range clients {
		clients[i] = simDial(t, s)
		_, err := clients[i].WriteString(fmt.Sprintf("ping %d", i))
		require.NoError(t, err)
	}
	s.RunUntilIdle() // returns: no livelock
	assert.Equal(t, []string{
		"0s accept c1 fd=4 nfd=5 192.0.2.1:40000",
		"0s accept c2 fd=4 nfd=6 192.0.2.1:40001",
		"0s accept c3 fd=4 nfd=7 192.0.2.1:40002",
		"0s accept fd=4 EMFILE",
	}, traceLines(s, "accept"), "one failed accept, then the acceptor paused")

	s.Advance(10 * time.Millisecond)
	s.Advance(20 * time.Millisecond)
	s.Advance(39 * time.Millisecond) // the next retry is due at 70ms
	assert.Equal(t, []string{
		"0s accept fd=4 EMFILE",
		"10ms accept fd=4 EMFILE",
		"30ms accept fd=4 EMFILE",
	}, traceLines(s, "accept fd=4 EMFILE"), "retries on the doubling back-off, never in between")
	assert.Equal(t, int64(3), srv.Stats().FDExhausted)

	served := map[int]bool{}
	for round := 0; len(served) < n; round++ {
		require.Less(t, round, n, "no progress")
		for i, c := range clients {
			if got := string(c.ReadAll()); got != "" {
				assert.Equal(t, fmt.Sprintf("ping %d", i), got)
				served[i] = true
				require.NoError(t, c.CloseWrite()) // done: frees a descriptor
			}
		}
		s.RunUntilIdle() // no Advance: a freed descriptor resumes accepting at once
	}
	assert.Equal(t, 69*time.Millisecond, s.Now())
	for _, c := range clients {
		assert.True(t, c.EOF())
	}
	assert.Len(t, traceLines(s, "note loop 0: OnOpen"), n)
	tr.verifyPairs(t)
}

// A client resets the connection while the server has output pending for
// it (the client stopped reading): the server learns of it at its next
// operation on the connection, and OnClose gets ECONNRESET. What the
// kernel had taken beyond the client's window, in flight in the server's
// send buffer, is lost with the connection.
func TestSimResetWhileOutputPending(t *testing.T) {
	s := reactor.NewSim(1)
	var log simLog
	simServe(t, s, log.handler(func(c *reactor.Conn, in *reactor.Buffer) {
		in.Discard(in.Len())
		_, _ = c.Write(bytes.Repeat([]byte("z"), 20_000))
	}))
	c := simDial(t, s)
	c.SetReceiveWindow(100)
	_, err := c.WriteString("go")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, 20_000-100-16<<10, log.srvConn().Buffered(), "the window and the send buffer took the rest")
	assert.Equal(t, 16<<10, c.InFlight())

	mark := len(traceLines(s))
	require.NoError(t, c.Reset())
	s.RunUntilIdle()
	assert.Equal(t, []string{
		"0s reset c1 fd=5 reset by client, 16384 bytes in flight lost",
		"0s turn p1 [5:RW]",
		"0s read fd=5 ECONNRESET",
		"0s note loop 0: OnClose fd=5 err=read tcp 127.0.0.1:7000->192.0.2.1:40000: read: connection reset by peer",
		"0s close fd=5",
	}, since(s, mark))
	err = log.closeErr()
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	assert.False(t, errors.Is(err, reactor.ErrServerClosed))
	_, err = log.srvConn().Write([]byte("late"))
	assert.ErrorIs(t, err, reactor.ErrConnClosed)
	assert.Equal(t, []string{"open at 0s", "close at 0s"}, log.get())
	assert.Equal(t, []int{3, 4}, s.OpenFDs(), "the connection's descriptor is closed")
}

// A connection woken for writing (EventWrite) is flushed at once, in the
// middle of the loop's iteration, although a Write earlier in the same
// iteration has already put it on the loop's list of connections to flush
// at the end. Another Write to it later in the iteration (here from a task
// its handler submitted) must not put it on the list a second time: that
// overwrote its link and dropped the connections queued before it (here B,
// which then never received its copy, nor anything after).
func TestSimFlushListSurvivesAWriteAfterEventWrite(t *testing.T) {
	// No send buffer: a write takes exactly the client's window, so the
	// output beyond it waits in the server, where this test looks.
	s := reactor.NewSim(1, reactor.SimSendBuffer(-1))
	var mu sync.Mutex
	var conns []*reactor.Conn // in OnOpen order: B, then A
	h := reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			mu.Lock()
			defer mu.Unlock()
			conns = append(conns, c)
		},
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			msg := in.Next(in.Len())
			mu.Lock()
			all := append([]*reactor.Conn(nil), conns...)
			mu.Unlock()
			for _, x := range all { // to everyone, the sender included
				_, _ = x.Write(msg)
			}
			c.Loop().Submit(func() { _, _ = c.Write([]byte("+")) }) // an acknowledgement, later in the iteration
		},
	}
	simServe(t, s, h)
	b := simDial(t, s)
	s.RunUntilIdle()
	a := simDial(t, s)
	a.SetReceiveWindow(4) // A's copy does not fit: EventWrite registered
	_, err := a.WriteString("hello")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, "hello", string(b.ReadAll()))
	assert.Equal(t, "hell", string(a.ReadAll()))

	mark := len(traceLines(s))
	_, err = a.WriteString("again") // A is now readable and writable at once
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, "0s turn p1 [6:RW]", since(s, mark)[1], "the path under test: EventWrite with a Write already queued")
	assert.Equal(t, "again", string(b.ReadAll()), "B's copy is flushed")
	a.SetReceiveWindow(100)
	s.RunUntilIdle()
	assert.Equal(t, "o+again+", string(a.ReadAll()))
	_, err = b.WriteString("bye")
	require.NoError(t, err)
	s.RunUntilIdle()
	assert.Equal(t, "bye+", string(b.ReadAll()), "and B is still served")
	assert.Equal(t, "bye", string(a.ReadAll()))
}
