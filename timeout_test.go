package reactor

// Tests of the timeout bookkeeping itself (timeout.go): what it costs per
// loop iteration, what it keeps in memory, and durations at the edge of
// time.Duration.

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/internal/kernel"
	"github.com/tcpreactor/reactor/internal/sim"
)

// idleDispatcher is a Dispatcher with nothing ever ready: Wait returns at
// once, so that a benchmark can run one idle loop iteration after another
// without sleeping. Its loop reads the real clock.
type idleDispatcher struct{}

func (idleDispatcher) Add(int, Events) error                    { return nil }
func (idleDispatcher) Modify(int, Events) error                 { return nil }
func (idleDispatcher) Delete(int) error                         { return nil }
func (idleDispatcher) Wait([]Event, time.Duration) (int, error) { return 0, nil }
func (idleDispatcher) Wake() error                              { return nil }
func (idleDispatcher) Close() error                             { return nil }

// idleTimeoutLoop returns a loop over idleDispatcher holding n open
// connections, each with its own idle timeout (an hour and i ms: none
// expires while a benchmark runs), as a server does whose clients choose
// their keep-alive.
func idleTimeoutLoop(n int) (*EventLoop, []*Conn) {
	l := newEventLoop("idle", idleDispatcher{}, nil, slog.New(slog.DiscardHandler), 512)
	conns := make([]*Conn, n)
	for i := range conns {
		c := &Conn{loop: l, state: connOpen}
		c.setTimeout(idleTimeout, time.Hour+time.Duration(i)*time.Millisecond)
		conns[i] = c
	}
	l.stampActivity()
	return l, conns
}

// BenchmarkIdleIterationDistinctTimeouts is one idle loop iteration (wait,
// tasks, timers, timeouts, flush, stamp: nothing to do in any of them) on a
// loop whose n connections each have a distinct idle timeout. Its cost
// should not grow with n.
func BenchmarkIdleIterationDistinctTimeouts(b *testing.B) {
	for _, n := range []int{1, 100, 20_000} {
		b.Run("n="+strconv.Itoa(n), func(b *testing.B) {
			l, _ := idleTimeoutLoop(n)
			b.ReportAllocs()
			for b.Loop() {
				if err := l.iterate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// forever is the duration programs pass for "never".
const forever = time.Duration(math.MaxInt64)

// TestSimTimersOfForeverNeverFire: AfterFunc with a duration near
// math.MaxInt64, scheduled when the clock is past zero (so that now + d
// overflows), never fires, while an ordinary timer beside it fires exactly.
func TestSimTimersOfForeverNeverFire(t *testing.T) {
	const start = time.Hour
	s, l := runSimLoop(t, 3)
	s.k.Advance(start)
	fired := make(chan string, 4)
	at := func(name string) func() {
		return func() { fired <- fmt.Sprintf("%s@%v", name, l.Now()) }
	}
	l.AfterFunc(forever, at("forever"))
	l.AfterFunc(forever-start+1, at("overflows by one"))
	l.AfterFunc(forever-2*start, at("in 292 years"))
	l.AfterFunc(2*time.Second, at("2s"))
	s.k.RunUntilIdle()
	assert.Empty(t, fired, "no virtual time has passed")
	s.k.Advance(2*time.Second - 1)
	assert.Empty(t, fired)
	s.k.Advance(1)
	assert.Equal(t, "2s@1h0m2s", <-fired)
	s.k.Advance(1000 * time.Hour)
	assert.Empty(t, fired, "a timer of forever fired")
}

// TestSimTimeoutsOfForeverNeverFire: idle and write timeouts near
// math.MaxInt64, set by option or per connection and counted from a clock
// past zero (so that since + d overflows), never fire; ordinary timeouts
// beside them still fire exactly on time.
func TestSimTimeoutsOfForeverNeverFire(t *testing.T) {
	const start = time.Hour // the clock when the connection opens
	tests := []struct {
		name    string
		opts    []Option
		open    func(c *Conn)
		stall   bool          // the server writes at open and the client never reads
		want    time.Duration // when, after start, the connection must close; 0: never
		wantErr error
	}{
		{name: "WithIdleTimeout(forever)", opts: []Option{WithIdleTimeout(forever)}},
		{name: "WithIdleTimeout overflowing by one", opts: []Option{WithIdleTimeout(forever - start + 1)}},
		{name: "SetIdleTimeout(forever)", open: func(c *Conn) { c.SetIdleTimeout(forever) }},
		{name: "WithWriteTimeout(forever)", opts: []Option{WithWriteTimeout(forever)}, stall: true},
		{name: "SetWriteTimeout(forever)", open: func(c *Conn) { c.SetWriteTimeout(forever) }, stall: true},
		{
			name: "idle forever, write 5s", opts: []Option{WithIdleTimeout(forever), WithWriteTimeout(5 * time.Second)},
			stall: true, want: 5 * time.Second, wantErr: ErrWriteTimeout,
		},
		{
			name: "write forever, idle 7s", opts: []Option{WithIdleTimeout(7 * time.Second), WithWriteTimeout(forever)},
			stall: true, want: 7 * time.Second, wantErr: ErrIdleTimeout,
		},
		{
			name: "SetIdleTimeout(forever) beside others' 3s", opts: []Option{WithIdleTimeout(3 * time.Second)},
			open: func(c *Conn) { c.SetIdleTimeout(forever) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			rec.msg = discard
			rec.open = func(c *Conn) {
				if tt.open != nil {
					tt.open(c)
				}
				if tt.stall {
					// More than the simulated send buffer holds, so
					// that output waits while the client reads nothing.
					_, _ = c.Write(make([]byte, 64<<10))
				}
			}
			r := startSim(t, 4, rec, append(tt.opts, WithLoops(0))...)
			r.s.k.Advance(start)
			cl := r.dial()
			if tt.stall {
				cl.SetReceiveWindow(0)
			}
			r.s.k.RunUntilIdle()
			sc := r.rec.conn(cl)
			require.NotNil(t, sc)
			if tt.want == 0 {
				// A second connection an hour later wakes the loop, which
				// expires whatever is due; then a long time passes.
				r.s.k.Advance(time.Hour)
				cl2, _ := r.dialOpen()
				r.s.k.Advance(1000 * time.Hour)
				cr, closed := r.rec.closeOf(sc)
				assert.False(t, closed, "closed at %v: %v", cr.at, cr.err)
				cl2.SetReceiveWindow(1 << 20)
				cl.SetReceiveWindow(1 << 20) // so that the shutdown can flush
				return
			}
			r.s.k.AdvanceTo(start + tt.want - 1)
			_, closed := r.rec.closeOf(sc)
			require.False(t, closed, "closed before the deadline")
			r.s.k.AdvanceTo(start + tt.want)
			cr, closed := r.rec.closeOf(sc)
			require.True(t, closed, "not closed at the deadline")
			assert.Equal(t, start+tt.want, cr.at)
			assert.ErrorIs(t, cr.err, tt.wantErr)
		})
	}
}

// clockKernel is a kernel whose clock the test sets, and whose Close does
// nothing (the connections of timeoutModel have no descriptor). Everything
// else is the operating system's, and unused.
type clockKernel struct {
	kernel.OS
	now time.Duration
}

func (k *clockKernel) Now() time.Duration { return k.now }
func (k *clockKernel) Close(int) error    { return nil }

// clockDispatcher is idleDispatcher with the clock of k.
type clockDispatcher struct {
	idleDispatcher
	k *clockKernel
}

func (d clockDispatcher) kernel() kernel.Interface { return d.k }

// timeoutModel drives a loop's timeouts directly, the way a loop iteration
// does (activity, then expiry, then the stamp), on a clock it sets, and
// checks them against a brute-force reading of every connection's state.
type timeoutModel struct {
	t      *testing.T
	k      *clockKernel
	l      *EventLoop
	conns  []*Conn
	closed map[*Conn]error // by OnClose
	order  []*Conn         // closed by the last expiry, in order
}

func newTimeoutModel(t *testing.T, n int) *timeoutModel {
	m := &timeoutModel{t: t, k: &clockKernel{now: time.Hour}, closed: map[*Conn]error{}}
	m.l = newEventLoop("model", clockDispatcher{k: m.k}, nil, slog.New(slog.DiscardHandler), 512)
	h := HandlerFuncs{Close: func(c *Conn, err error) {
		m.closed[c] = err
		m.order = append(m.order, c)
	}}
	m.l.g = &group{handler: h}
	for range n {
		m.conns = append(m.conns, &Conn{loop: m.l, h: h, state: connOpen})
	}
	return m
}

// due returns, for every open connection with a timeout that has passed,
// the earliest such deadline.
func (m *timeoutModel) due() map[*Conn]time.Duration {
	due := map[*Conn]time.Duration{}
	for _, c := range m.conns {
		if c.state != connOpen || c.x == nil {
			continue
		}
		for kind := range phaseTimeout { // the kinds an open connection has
			ln := c.x.link[kind]
			if ln.list == nil || ln.since == stampPending {
				continue
			}
			if dl := deadlineAfter(ln.since, c.x.d[kind]); dl <= m.k.now {
				if prev, ok := due[c]; !ok || dl < prev {
					due[c] = dl
				}
			}
		}
	}
	return due
}

// expire runs the loop's expiry and checks that it closed exactly the
// connections due, earliest deadline first.
func (m *timeoutModel) expire() {
	t := m.t
	due := m.due()
	m.order = m.order[:0]
	m.l.expireTimeouts()
	require.Len(t, m.order, len(due), "closed %d connections, %d were due", len(m.order), len(due))
	for i, c := range m.order {
		dl, ok := due[c]
		require.True(t, ok, "closed a connection that was not due")
		if i > 0 {
			require.LessOrEqual(t, due[m.order[i-1]], dl, "closed out of deadline order")
		}
		err := m.closed[c]
		require.True(t, errors.Is(err, ErrIdleTimeout) || errors.Is(err, ErrWriteTimeout), "closed by %v", err)
	}
}

// check verifies the loop's bookkeeping between iterations: no list is
// dirty; every list in the map has connections and stands in the heap
// under its front's exact deadline, in heap order; every connection whose
// timeout runs is on the list of its kind and duration; and the loop's next
// deadline is the earliest of all.
func (m *timeoutModel) check() {
	t := m.t
	tm := &m.l.tmo
	require.Nil(t, tm.dirty, "a list is still dirty")
	require.Len(t, tm.heap, len(tm.lists), "every list, and only those, in the heap")
	for i, e := range tm.heap {
		tl := e.item
		require.Equal(t, i, tl.index, "heap index")
		require.Same(t, tl, tm.lists[tl.timeoutKey], "a list in the heap is not in the map")
		require.NotNil(t, tl.head, "an empty list is kept")
		dl, ok := tl.deadline()
		require.True(t, ok, "a list's front is not stamped")
		require.Equal(t, dl, e.when, "a list stands in the heap under a stale deadline")
		if i > 0 {
			require.False(t, e.before(&tm.heap[(i-1)/2]), "heap order")
		}
	}
	var first time.Duration
	found := false
	for _, c := range m.conns {
		if c.state != connOpen || c.x == nil {
			continue
		}
		for kind := range phaseTimeout { // the kinds an open connection has
			d, ln := c.x.d[kind], c.x.link[kind]
			runs := d > 0 && (kind != writeTimeout || c.waitW)
			require.Equal(t, runs, ln.list != nil, "kind %d: on a list iff its clock runs", kind)
			if !runs {
				continue
			}
			require.Same(t, tm.lists[timeoutKey{kind, d}], ln.list)
			require.NotEqual(t, stampPending, ln.since)
			if dl := deadlineAfter(ln.since, d); !found || dl < first {
				first, found = dl, true
			}
		}
	}
	got, ok := m.l.nextTimeoutDeadline()
	require.Equal(t, found, ok)
	require.Equal(t, first, got, "the loop's next deadline")
}

// TestTimeoutsAgainstModel runs random activity over connections with
// idle and write timeouts of random, mostly distinct, durations (and some
// of forever), one loop iteration at a time, and checks after each that
// the heap of lists is exact, that expiry closed exactly what was due, and
// that nothing else is kept.
func TestTimeoutsAgainstModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			m := newTimeoutModel(t, 60)
			shared := []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond}
			duration := func() time.Duration {
				switch r := rng.IntN(20); {
				case r == 0:
					return 0
				case r == 1:
					return forever
				case r < 8:
					return shared[rng.IntN(len(shared))]
				default:
					return time.Duration(1+rng.IntN(50_000)) * time.Microsecond
				}
			}
			for range 3000 {
				m.k.now += time.Duration(rng.IntN(3000)) * time.Microsecond
				for range rng.IntN(8) {
					c := m.conns[rng.IntN(len(m.conns))]
					if c.state != connOpen {
						continue
					}
					switch rng.IntN(7) {
					case 0:
						c.setTimeout(idleTimeout, duration())
					case 1:
						c.setTimeout(writeTimeout, duration())
					case 2:
						c.waitW = !c.waitW
						c.writePending(c.waitW)
					case 3:
						c.touch(rng.IntN(2) == 0)
					case 4:
						c.closeNow(nil) // closed by the handler: not a timeout
					default:
						// no activity: the connection ages
					}
				}
				m.expire()
				m.l.stampActivity()
				m.check()
			}
			// Close the rest: every list is freed.
			for _, c := range m.conns {
				c.closeNow(nil)
			}
			m.l.stampActivity()
			assert.Empty(t, m.l.tmo.lists)
			assert.Empty(t, m.l.tmo.heap)
			assert.LessOrEqual(t, len(m.l.tmo.spare), maxSpareLists)
		})
	}
}

// liveHeap returns the bytes of live heap objects, after a collection.
func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestTimeoutListsMemoryFollowsUse: a loop whose connections each had
// their own idle timeout (20 000 at a time, three times over, all with
// durations not seen before) keeps nothing of their lists once the
// connections are gone: lists that empty are freed, and the map and heap
// that held them shrink.
func TestTimeoutListsMemoryFollowsUse(t *testing.T) {
	const n = 20_000
	l := newEventLoop("mem", clockDispatcher{k: &clockKernel{now: time.Hour}}, nil, slog.New(slog.DiscardHandler), 512)
	before := liveHeap()
	for round := range 3 {
		conns := make([]*Conn, n)
		for i := range conns {
			c := &Conn{loop: l, state: connOpen}
			c.setTimeout(idleTimeout, time.Hour+time.Duration(round*n+i)*time.Millisecond)
			conns[i] = c
		}
		l.stampActivity()
		require.Len(t, l.tmo.lists, n)
		require.Len(t, l.tmo.heap, n)
		for _, c := range conns {
			c.state = connClosed
			c.untrack() // what closeNow does for the timeouts
		}
		l.stampActivity()
	}
	grown := liveHeap() - before
	assert.Empty(t, l.tmo.lists)
	assert.Empty(t, l.tmo.heap)
	assert.Less(t, cap(l.tmo.heap), shrinkMin, "the heap's array was not given back")
	assert.LessOrEqual(t, len(l.tmo.spare), maxSpareLists)
	// 60 000 lists held on to would be some 5 MB.
	assert.Less(t, grown, int64(256<<10), "the loop kept %d bytes", grown)
	runtime.KeepAlive(l)
}

// TestConnSize: a Conn fits the allocator's 128-byte size class, paid once
// per idle connection; the timeouts live beside it (Conn.tmo) and must not
// grow it.
func TestConnSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the layout is tuned for 64-bit platforms")
	}
	assert.LessOrEqual(t, unsafe.Sizeof(Conn{}), uintptr(128))
}

// TestSimManyDistinctIdleTimeoutsFireExactly: 200 connections each choose
// their own idle timeout (as MQTT clients choose their keep-alive), most of
// them distinct, some shared, some forever, and change it midway; bytes
// arrive at random moments. Every connection must close at exactly its last
// activity plus its timeout, and the loops keep lists only for the
// durations still in use.
func TestSimManyDistinctIdleTimeoutsFireExactly(t *testing.T) {
	const (
		n     = 200
		start = time.Hour
	)
	for _, loops := range []int{0, 2} {
		t.Run(fmt.Sprint("loops=", loops), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(loops), 11))
			rec := newRecorder()
			rec.msg = func(c *Conn, in *Buffer) {
				// "d<nanoseconds>;" sets the idle timeout; other bytes are
				// just activity.
				for _, f := range strings.Split(string(in.Next(in.Len())), ";") {
					if v, ok := strings.CutPrefix(f, "d"); ok {
						d, err := strconv.ParseInt(v, 10, 64)
						if err == nil {
							c.SetIdleTimeout(time.Duration(d))
						}
					}
				}
			}
			r := startSim(t, 5, rec, WithLoops(loops))
			r.s.k.Advance(start)

			type event struct {
				at  time.Duration
				cl  int
				set time.Duration // 0: just activity
			}
			duration := func() time.Duration {
				switch x := rng.IntN(10); {
				case x == 0:
					return forever
				case x < 3:
					return 5 * time.Second
				default:
					return time.Second + time.Duration(rng.IntN(20_000))*time.Millisecond
				}
			}
			var events []event
			for i := range n {
				events = append(events, event{at: start + time.Duration(rng.IntN(2000))*time.Millisecond, cl: i, set: duration()})
				for range rng.IntN(4) {
					events = append(events, event{at: start + 2*time.Second + time.Duration(rng.IntN(40_000))*time.Millisecond, cl: i})
				}
				if rng.IntN(4) == 0 {
					events = append(events, event{at: start + 2*time.Second + time.Duration(rng.IntN(40_000))*time.Millisecond, cl: i, set: duration()})
				}
			}
			slices.SortStableFunc(events, func(a, b event) int { return cmp.Compare(a.at, b.at) })

			cls := make([]*sim.Conn, n)
			scs := make([]*Conn, n)
			for i := range cls {
				cls[i], scs[i] = r.dialOpen()
			}
			// The model: each connection's timeout and last activity.
			d := make([]time.Duration, n)
			last := make([]time.Duration, n)
			deadline := func(i int) (time.Duration, bool) {
				if d[i] == 0 || d[i] == forever {
					return 0, false
				}
				return last[i] + d[i], true
			}
			for _, ev := range events {
				r.s.k.AdvanceTo(ev.at)
				if dl, ok := deadline(ev.cl); ok && dl <= ev.at {
					continue // closed by then
				}
				msg := "x"
				if ev.set != 0 {
					msg = fmt.Sprintf("d%d;", int64(ev.set))
					d[ev.cl] = ev.set
				}
				last[ev.cl] = ev.at
				_, err := cls[ev.cl].Write([]byte(msg))
				require.NoError(t, err)
				r.s.k.RunUntilIdle()
			}
			r.s.k.Advance(time.Hour)
			forevers := map[*EventLoop]int{}
			for i, sc := range scs {
				cr, closed := r.rec.closeOf(sc)
				dl, ok := deadline(i)
				if !ok {
					assert.False(t, closed, "connection %d, timeout %v, closed at %v: %v", i, d[i], cr.at, cr.err)
					forevers[sc.loop] = 1 // one list: idle, forever
					continue
				}
				if assert.True(t, closed, "connection %d not closed", i) {
					assert.Equal(t, dl, cr.at, "connection %d, timeout %v", i, d[i])
					assert.ErrorIs(t, cr.err, ErrIdleTimeout)
				}
			}
			for _, l := range r.srv.loops {
				assert.Len(t, l.tmo.lists, forevers[l], "loop %s keeps lists of closed connections", l.name)
			}
		})
	}
}

// TestTimeoutStallsAllocateNothing: a connection alone with its write
// timeout's duration empties its list each time its output drains, and
// fills it again at the next stall; the list is recycled, not allocated
// anew.
func TestTimeoutStallsAllocateNothing(t *testing.T) {
	l := newEventLoop("stall", clockDispatcher{k: &clockKernel{now: time.Hour}}, nil, slog.New(slog.DiscardHandler), 512)
	c := &Conn{loop: l, state: connOpen}
	c.setTimeout(idleTimeout, time.Minute)
	c.setTimeout(writeTimeout, 1234*time.Millisecond)
	l.stampActivity()
	allocs := testing.AllocsPerRun(1000, func() {
		c.waitW = true
		c.writePending(true)
		l.stampActivity()
		c.waitW = false
		c.writePending(false)
		l.stampActivity()
	})
	assert.Zero(t, allocs)
	assert.Len(t, l.tmo.lists, 1, "only the idle timeout's list is left")
}
