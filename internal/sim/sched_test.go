package sim

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// echoLoop is a small event loop in the shape of the server's, run over a
// Poller on its own goroutine: it accepts on its listener, echoes every
// connection, wakes the next loop after a turn in which it echoed, and
// fires a periodic timer. It reports failures through a shared list, never
// through t (it is not the test's goroutine).
type echoLoop struct {
	k     *Kernel
	p     *Poller
	lfd   int           // listener, or -1
	tick  time.Duration // timer period, or 0
	next  *echoLoop     // woken after a turn that echoed, or nil
	stop  atomic.Bool   // set by the test, followed by a Wake
	zero  bool          // Wait with timeout 0 every time (a livelock)
	turns *turnCheck
	errs  *errList
}

// errList collects failures from loop goroutines for the test goroutine.
type errList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errList) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Errorf(format, args...))
}

func (l *errList) get() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// turnCheck detects two loops running loop code at the same time.
type turnCheck struct {
	running atomic.Int32
	overlap atomic.Bool
}

func (c *turnCheck) enter() {
	if c.running.Add(1) != 1 {
		c.overlap.Store(true)
	}
}

func (c *turnCheck) leave() { c.running.Add(-1) }

func (l *echoLoop) run(wg *sync.WaitGroup) {
	defer wg.Done()
	events := make([]Ready, 3) // small: several Waits when many are ready
	buf := make([]byte, 5)     // small: several reads per message
	conns := map[int]bool{}
	var deadline time.Duration
	if l.tick > 0 {
		deadline = l.tick
	}
	if l.lfd >= 0 {
		if err := l.p.Add(l.lfd, Read); err != nil {
			l.errs.add("%v: add listener: %v", l.p, err)
		}
	}
	for {
		timeout := time.Duration(-1)
		switch {
		case l.zero:
			timeout = 0
		case l.tick > 0:
			timeout = max(deadline-l.k.Now(), 0)
		}
		n, err := l.p.Wait(events, timeout)
		if err != nil {
			if !errors.Is(err, ErrPollerClosed) {
				l.errs.add("%v: wait: %v", l.p, err)
			}
			return
		}
		l.turns.enter()
		if l.stop.Load() {
			// Sorted: ranging over a map would make the run depend on Go's
			// random map order, not on the seed.
			for _, fd := range slices.Sorted(maps.Keys(conns)) {
				_ = l.p.Delete(fd)
				_ = l.k.Close(fd)
			}
			l.k.Tracef("%v stops", l.p)
			l.turns.leave()
			_ = l.p.Close()
			return
		}
		if now := l.k.Now(); l.tick > 0 && now >= deadline {
			if now != deadline {
				l.errs.add("%v: timer for %v fired at %v", l.p, deadline, now)
			}
			l.k.Tracef("%v tick", l.p)
			deadline += l.tick
		}
		echoed := false
		for _, ev := range events[:n] {
			if ev.FD == l.lfd {
				l.accept(conns)
				continue
			}
			echoed = l.echo(ev.FD, buf, conns) || echoed
		}
		if echoed && l.next != nil {
			_ = l.next.p.Wake()
		}
		l.turns.leave()
	}
}

func (l *echoLoop) accept(conns map[int]bool) {
	for {
		fd, sa, err := l.k.Accept(l.lfd)
		if err != nil {
			if err != unix.EAGAIN {
				l.errs.add("%v: accept: %v", l.p, err)
			}
			return
		}
		conns[fd] = true
		if err := l.p.Add(fd, Read); err != nil {
			l.errs.add("%v: add: %v", l.p, err)
		}
		l.k.Tracef("%v accepted fd %d from port %d", l.p, fd, sa.Port())
	}
}

// echo reads fd until EAGAIN and writes back what it read; at EOF or an
// error it closes fd. It reports whether it echoed anything.
func (l *echoLoop) echo(fd int, buf []byte, conns map[int]bool) bool {
	echoed := false
	for {
		n, err := l.k.Read(fd, buf)
		switch {
		case err == unix.EAGAIN:
			return echoed
		case err != nil || n == 0:
			l.k.Tracef("%v closes fd %d (%v)", l.p, fd, err)
			_ = l.p.Delete(fd)
			_ = l.k.Close(fd)
			delete(conns, fd)
			return echoed
		}
		if w, err := l.k.Write(fd, buf[:n]); err != nil || w != n {
			l.errs.add("%v: echo on fd %d: %d of %d, %v", l.p, fd, w, n, err)
		}
		echoed = true
	}
}

// echoWorld is four echo loops on four goroutines, with SO_REUSEPORT
// listeners on one port.
type echoWorld struct {
	k     *Kernel
	loops []*echoLoop
	wg    sync.WaitGroup
	turns turnCheck
	errs  errList
}

func newEchoWorld(t *testing.T, cfg Config, ticks []time.Duration) *echoWorld {
	t.Helper()
	cfg.Stepped = true
	w := &echoWorld{k: New(cfg)}
	for _, tick := range ticks {
		p, err := w.k.NewPoller()
		require.NoError(t, err)
		lfd, _, err := w.k.Listen("tcp4", "127.0.0.1:7000", true, 0)
		require.NoError(t, err)
		w.loops = append(w.loops, &echoLoop{k: w.k, p: p, lfd: lfd, tick: tick, turns: &w.turns, errs: &w.errs})
	}
	for i, l := range w.loops {
		l.next = w.loops[(i+1)%len(w.loops)]
	}
	w.wg.Add(len(w.loops))
	for _, l := range w.loops {
		go l.run(&w.wg)
	}
	return w
}

// stop makes every loop close its connections and its poller in its next
// turn, and waits for the goroutines.
func (w *echoWorld) stop(t *testing.T) {
	t.Helper()
	for _, l := range w.loops {
		l.stop.Store(true)
		_ = l.p.Wake()
	}
	w.k.RunUntilIdle()
	w.wg.Wait()
	assert.Empty(t, w.errs.get())
	assert.False(t, w.turns.overlap.Load(), "two loops ran at once")
}

// echoScript drives an echoWorld: clients connect, write, half-close,
// reset; time passes; and it checks that every client got its bytes back.
// It returns the trace.
func echoScript(t *testing.T, seed int64) string {
	w := newEchoWorld(t, Config{Seed: seed}, []time.Duration{10 * time.Millisecond, 15 * time.Millisecond, 0, 25 * time.Millisecond})
	w.k.RunUntilIdle()
	var clients []*Conn
	sent := map[*Conn][]byte{}
	for i := range 12 {
		c, err := w.k.Dial("127.0.0.1:7000")
		require.NoError(t, err)
		clients = append(clients, c)
		msg := []byte(strings.Repeat(fmt.Sprintf("<%d>", i), i+1))
		_, err = c.Write(msg)
		require.NoError(t, err)
		sent[c] = msg
		if i%3 == 0 {
			w.k.RunUntilIdle()
		}
	}
	w.k.Advance(12 * time.Millisecond)
	for i, c := range clients {
		msg := []byte(fmt.Sprintf("[again %d]", i))
		_, err := c.Write(msg)
		require.NoError(t, err)
		sent[c] = append(sent[c], msg...)
		if i%4 == 1 {
			require.NoError(t, c.CloseWrite())
		}
	}
	w.k.Advance(40 * time.Millisecond)
	for i, c := range clients {
		got := c.ReadAll()
		assert.Equal(t, string(sent[c]), string(got), "client %d", i)
		if i%4 == 1 {
			_, err := c.Read(make([]byte, 1))
			assert.Equal(t, io.EOF, err, "the server closed after the client's FIN")
		}
		if i%4 == 2 {
			require.NoError(t, c.Reset())
		}
	}
	w.k.RunUntilIdle()
	w.stop(t)
	assert.Equal(t, 4, strings.Count(w.k.TraceText(), " stops"))
	return w.k.TraceText()
}

func TestSchedulerDeterministic(t *testing.T) {
	first := echoScript(t, 42)
	second := echoScript(t, 42)
	requireSameTrace(t, first, second)
	assert.Contains(t, first, "turn p")
	assert.Contains(t, first, " wake")
	assert.Contains(t, first, " tick")

	distinct := map[string]bool{}
	for seed := range int64(20) {
		distinct[echoScript(t, seed)] = true
	}
	assert.GreaterOrEqual(t, len(distinct), 2, "different seeds choose differently")
}

func TestAdvanceFiresDeadlinesInOrderAtExactTimes(t *testing.T) {
	w := newEchoWorld(t, Config{Seed: 7}, []time.Duration{10 * time.Millisecond, 15 * time.Millisecond, 25 * time.Millisecond})
	w.k.AdvanceTo(60 * time.Millisecond)
	assert.Equal(t, 60*time.Millisecond, w.k.Now())
	w.k.Advance(0)
	w.stop(t)

	want := map[string][]time.Duration{
		"p1": {10, 20, 30, 40, 50, 60},
		"p2": {15, 30, 45, 60},
		"p3": {25, 50},
	}
	got := map[string][]time.Duration{}
	var last time.Duration
	for _, r := range w.k.Trace() {
		if r.Kind != KindNote || !strings.HasSuffix(r.Text, " tick") {
			continue
		}
		assert.GreaterOrEqual(t, r.At, last, "deadline order")
		last = r.At
		p := strings.TrimSuffix(r.Text, " tick")
		got[p] = append(got[p], r.At/time.Millisecond)
	}
	assert.Equal(t, want, got)
}

func TestStepRunsOneTurnOfAPollerWithWork(t *testing.T) {
	k := New(Config{Stepped: true})
	var wg sync.WaitGroup
	var turns turnCheck
	var errs errList
	var loops []*echoLoop
	for range 3 {
		p, err := k.NewPoller()
		require.NoError(t, err)
		loops = append(loops, &echoLoop{k: k, p: p, lfd: -1, turns: &turns, errs: &errs})
	}
	wg.Add(len(loops))
	for _, l := range loops {
		go l.run(&wg)
	}
	assert.False(t, k.Step(), "nothing has work")
	for _, l := range loops {
		select {
		case <-l.p.Blocked():
		default:
			t.Errorf("%v is not parked after Step", l.p)
		}
	}

	// Wake from outside only marks the poller.
	require.NoError(t, loops[1].p.Wake())
	require.NoError(t, loops[1].p.Wake())
	assert.NotContains(t, k.TraceText(), "turn")
	require.True(t, k.Step())
	assert.Contains(t, k.TraceText(), "turn p2 [] wake\n", "two Wakes, one turn")
	assert.False(t, k.Step())

	// A descriptor registered by the test makes its poller's turn carry it.
	fds, err := k.Socketpair()
	require.NoError(t, err)
	require.NoError(t, loops[2].p.Add(fds[0], Write))
	require.True(t, k.Step())
	trace := k.TraceText()
	assert.Contains(t, trace, "turn p3 [6:W]\n")
	// The loop does not read a writable-only event (echo reads EAGAIN):
	// level-triggered, it stays ready; delete it so the world goes idle.
	require.NoError(t, loops[2].p.Delete(fds[0]))
	k.RunUntilIdle()

	for _, l := range loops {
		l.stop.Store(true)
		require.NoError(t, l.p.Wake())
	}
	k.RunUntilIdle()
	wg.Wait()
	assert.Empty(t, errs.get())
	assert.False(t, turns.overlap.Load())
	assert.False(t, k.Step(), "no pollers left")
}

func TestStepWaitsForANewPollerToPark(t *testing.T) {
	k := New(Config{Stepped: true})
	p, err := k.NewPoller()
	require.NoError(t, err)
	start := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		<-start
		k.Tracef("loop starts")
		_, err := p.Wait(make([]Ready, 1), -1)
		result <- err
	}()
	stepped := make(chan bool)
	go func() { stepped <- k.Step() }()
	close(start)
	assert.False(t, <-stepped)
	select {
	case <-p.Blocked():
	default:
		t.Error("Step returned before the new poller parked")
	}
	assert.Contains(t, k.TraceText(), "loop starts")
	require.NoError(t, p.Close())
	assert.ErrorIs(t, <-result, ErrPollerClosed, "closing a parked poller ends its Wait")
}

func TestStepPanicsWhenAPollerNeverParks(t *testing.T) {
	k := New(Config{Stepped: true, ParkTimeout: 20 * time.Millisecond})
	p, err := k.NewPoller()
	require.NoError(t, err)
	msg := panicMessage(func() { k.Step() })
	assert.Contains(t, msg, "poller p1 has not called Wait since it was created")
	assert.Contains(t, msg, "Serve not called")
	require.NoError(t, p.Close())
	assert.False(t, k.Step(), "the kernel is usable after the panic")
}

func TestRunUntilIdlePanicsOnLivelock(t *testing.T) {
	k := New(Config{Stepped: true, MaxSteps: 50})
	p, err := k.NewPoller()
	require.NoError(t, err)
	var wg sync.WaitGroup
	l := &echoLoop{k: k, p: p, lfd: -1, zero: true, turns: &turnCheck{}, errs: &errList{}}
	wg.Add(1)
	go l.run(&wg)
	msg := panicMessage(k.RunUntilIdle)
	assert.Contains(t, msg, "RunUntilIdle: still busy after 50 steps")
	assert.Contains(t, msg, "turn p1 [] timeout")
	require.NoError(t, p.Close())
	wg.Wait()
	assert.Empty(t, l.errs.get())
}

func TestDriversPanicOnAFreeKernel(t *testing.T) {
	k := New(Config{})
	for name, f := range map[string]func(){
		"Step":         func() { k.Step() },
		"RunUntilIdle": k.RunUntilIdle,
		"RunUntil":     func() { k.RunUntil(func() bool { return true }, nil) },
	} {
		assert.Contains(t, panicMessage(f), "needs a stepped kernel", name)
	}
}

func TestRunUntil(t *testing.T) {
	w := newEchoWorld(t, Config{Seed: 1}, []time.Duration{0, 0})
	defer w.stop(t)
	c, err := w.k.Dial("127.0.0.1:7000")
	require.NoError(t, err)

	t.Run("done during a turn", func(t *testing.T) {
		_, err := c.Write([]byte("hello"))
		require.NoError(t, err)
		assert.True(t, w.k.RunUntil(func() bool { return c.Buffered() == 5 }, nil))
		assert.Equal(t, "hello", string(c.ReadAll()))
	})

	t.Run("idle until a client acts", func(t *testing.T) {
		// Many rounds, so that a write racing with RunUntil's decision to
		// block lands on every side of it: none may be lost.
		for i := range 300 {
			msg := []byte(fmt.Sprintf("m%d", i))
			done := make(chan bool)
			go func() { done <- w.k.RunUntil(func() bool { return c.Buffered() >= len(msg) }, nil) }()
			_, err := c.Write(msg)
			require.NoError(t, err)
			require.True(t, <-done)
			require.Equal(t, string(msg), string(c.ReadAll()))
		}
	})

	t.Run("cancel", func(t *testing.T) {
		cancel := make(chan struct{})
		done := make(chan bool)
		go func() { done <- w.k.RunUntil(func() bool { return false }, cancel) }()
		close(cancel)
		assert.False(t, <-done)
	})

	t.Run("Notify", func(t *testing.T) {
		var flag atomic.Bool
		done := make(chan bool)
		go func() { done <- w.k.RunUntil(flag.Load, nil) }()
		flag.Store(true)
		w.k.Notify()
		assert.True(t, <-done)
	})

	t.Run("driven from two goroutines", func(t *testing.T) {
		var wg sync.WaitGroup
		wg.Add(2)
		for range 2 {
			go func() {
				defer wg.Done()
				w.k.RunUntil(func() bool { return c.Buffered() >= 400 }, nil)
			}()
		}
		for range 100 {
			_, err := c.Write([]byte("abcd"))
			require.NoError(t, err)
		}
		wg.Wait()
		assert.Equal(t, strings.Repeat("abcd", 100), string(c.ReadAll()))
	})
}

func TestCloseFromOutsideWhileParked(t *testing.T) {
	k := New(Config{Stepped: true})
	p, err := k.NewPoller()
	require.NoError(t, err)
	result := make(chan error, 1)
	go func() {
		_, err := p.Wait(make([]Ready, 1), -1)
		result <- err
	}()
	<-p.Blocked()
	require.NoError(t, p.Close())
	assert.ErrorIs(t, <-result, ErrPollerClosed)
	assert.False(t, k.Step())
}

func TestTraceRecords(t *testing.T) {
	k := New(Config{})
	lfd, addr := listen(t, k)
	c, err := k.Dial(addr)
	require.NoError(t, err)
	fd, _, err := k.Accept(lfd)
	require.NoError(t, err)
	_, err = c.Write([]byte("abc"))
	require.NoError(t, err)
	_, err = k.Read(fd, make([]byte, 8))
	require.NoError(t, err)
	k.Advance(1500 * time.Millisecond)
	k.Tracef("note %d", 1)
	require.NoError(t, c.Close())
	_, err = k.Read(fd, make([]byte, 8))
	require.NoError(t, err)
	k.SetTrace(false)
	_, err = k.Write(fd, []byte("x"))
	require.NoError(t, err)
	k.Tracef("not recorded")

	want := `000001 0s listen fd=3 127.0.0.1:20000 backlog=128
000002 0s dial c1 fd=3 192.0.2.1:40000 > 127.0.0.1:20000
000003 0s accept c1 fd=3 nfd=4 192.0.2.1:40000
000004 0s write c1 n=3
000005 0s read fd=4 n=3
000006 1.5s clock
000007 1.5s note note 1
000008 1.5s close c1
000009 1.5s read fd=4 n=0 EOF
`
	assert.Equal(t, want, k.TraceText())
	recs := k.Trace()
	require.Len(t, recs, 9)
	assert.Equal(t, Record{Seq: 5, Kind: KindRead, FD: 4, N: 3}, recs[4])
	recs[0].Text = "changed"
	assert.NotEqual(t, "changed", k.Trace()[0].Text, "Trace returns a copy")
}

// requireSameTrace fails with the first line where two traces differ.
func requireSameTrace(t *testing.T, a, b string) {
	t.Helper()
	if a == b {
		return
	}
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			t.Fatalf("same seed, same script, different traces at line %d:\n\t%s\n\t%s", i+1, la[i], lb[i])
		}
	}
	t.Fatalf("same seed, same script: one trace is a prefix of the other (%d and %d lines)", len(la), len(lb))
}

// singleEcho is one echo loop over a stepped kernel with tracing off, and
// one client connected to it.
type singleEcho struct {
	w *echoWorld
	c *Conn
}

func newSingleEcho(tb testing.TB) *singleEcho {
	tb.Helper()
	w := &echoWorld{k: New(Config{Stepped: true, NoTrace: true})}
	p, err := w.k.NewPoller()
	require.NoError(tb, err)
	lfd, _, err := w.k.Listen("tcp4", "127.0.0.1:7000", false, 0)
	require.NoError(tb, err)
	w.loops = []*echoLoop{{k: w.k, p: p, lfd: lfd, turns: &w.turns, errs: &w.errs}}
	w.wg.Add(1)
	go w.loops[0].run(&w.wg)
	c, err := w.k.Dial("127.0.0.1:7000")
	require.NoError(tb, err)
	w.k.RunUntilIdle()
	return &singleEcho{w: w, c: c}
}

// roundTrip writes msg, runs the simulation until idle and reads the echo
// into got.
func (e *singleEcho) roundTrip(msg, got []byte) error {
	if _, err := e.c.Write(msg); err != nil {
		return err
	}
	e.w.k.RunUntilIdle()
	if n, err := e.c.Read(got); n != len(msg) || err != nil {
		return fmt.Errorf("read %d, %v", n, err)
	}
	return nil
}

func (e *singleEcho) stop(tb testing.TB) {
	tb.Helper()
	e.w.loops[0].stop.Store(true)
	require.NoError(tb, e.w.loops[0].p.Wake())
	e.w.k.RunUntilIdle()
	e.w.wg.Wait()
	require.Empty(tb, e.w.errs.get())
}

func TestSteppingDoesNotAllocate(t *testing.T) {
	e := newSingleEcho(t)
	defer e.stop(t)
	msg, got := make([]byte, 64), make([]byte, 64)
	var err error
	allocs := testing.AllocsPerRun(200, func() {
		if err == nil {
			err = e.roundTrip(msg, got)
		}
	})
	require.NoError(t, err)
	assert.Zero(t, allocs, "write, two steps, read: the driver and the turn hand-off allocate nothing")
}

// BenchmarkTurn measures a stepped round trip: a client writes, one loop
// gets a turn and echoes, the client reads.
func BenchmarkTurn(b *testing.B) {
	e := newSingleEcho(b)
	msg, got := make([]byte, 64), make([]byte, 64)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := e.roundTrip(msg, got); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	e.stop(b)
}
