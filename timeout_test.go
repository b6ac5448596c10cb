package reactor

// Tests of the timeout bookkeeping itself (timeout.go): what it costs per
// loop iteration, what it keeps in memory, and durations at the edge of
// time.Duration.

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	s := NewSim(3)
	l, err := NewEventLoop(s.Dispatcher)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- l.Run() }()
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
	l.Stop()
	require.True(t, s.k.RunUntil(func() bool {
		select {
		case <-l.Done():
			return true
		default:
			return false
		}
	}, nil))
	require.NoError(t, <-errc)
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
					_, _ = c.Write(make([]byte, 100))
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
