package reactor

// Tests of the timeout bookkeeping itself (timeout.go): what it costs per
// loop iteration, what it keeps in memory, and durations at the edge of
// time.Duration.

import (
	"log/slog"
	"strconv"
	"testing"
	"time"
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
