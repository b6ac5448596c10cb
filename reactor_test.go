package reactor

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kernelFactories are the real backends the loop tests run over; the
// simulation has tests of its own (loop_sim_test.go).
var kernelFactories = []struct {
	name string
	f    DispatcherFactory
}{
	{"epoll", Epoll},
	{"poll", Poll},
}

// startLoop runs a new standalone loop on its own goroutine and stops it
// when the test ends, checking that Run returned nil.
func startLoop(t *testing.T, f DispatcherFactory) *EventLoop {
	t.Helper()
	l, err := NewEventLoop(f)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- l.Run() }()
	t.Cleanup(func() {
		l.Stop()
		assert.NoError(t, <-errc)
		<-l.Done()
	})
	return l
}

func TestLoopSubmitOrderAndCount(t *testing.T) {
	for _, fc := range kernelFactories {
		t.Run(fc.name, func(t *testing.T) {
			l := startLoop(t, fc.f)
			const goroutines, perG = 100, 1000
			// seen[g] is only touched by tasks, which all run on the loop.
			seen := make([][]int, goroutines)
			var wg sync.WaitGroup
			var tasksDone sync.WaitGroup
			tasksDone.Add(goroutines * perG)
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perG {
						l.Submit(func() {
							seen[g] = append(seen[g], i)
							tasksDone.Done()
						})
					}
				}()
			}
			wg.Wait()
			tasksDone.Wait()
			// Read the results on the loop, which owns them.
			check := make(chan struct{})
			l.Submit(func() {
				defer close(check)
				for g := range goroutines {
					if !assert.Len(t, seen[g], perG, "goroutine %d", g) {
						continue
					}
					for i, v := range seen[g] {
						if v != i {
							assert.Failf(t, "out of order", "goroutine %d: task %d ran at position %d", g, v, i)
							break
						}
					}
				}
			})
			<-check
		})
	}
}

func TestLoopTaskQueuedByTaskRunsNextIteration(t *testing.T) {
	for _, fc := range kernelFactories {
		t.Run(fc.name, func(t *testing.T) {
			l := startLoop(t, fc.f)
			var order []string
			done := make(chan struct{})
			// Queue both tasks from the loop, so they are in one batch
			// whatever the test goroutine's timing.
			l.Submit(func() {
				l.Submit(func() {
					order = append(order, "first")
					l.Submit(func() {
						order = append(order, "queued by first")
						close(done)
					})
					order = append(order, "first done")
				})
				l.Submit(func() { order = append(order, "second") })
			})
			<-done
			assert.Equal(t, []string{"first", "first done", "second", "queued by first"}, order)
		})
	}
}

func TestLoopTimersFireInDeadlineOrder(t *testing.T) {
	for _, fc := range kernelFactories {
		t.Run(fc.name, func(t *testing.T) {
			l := startLoop(t, fc.f)
			var fired []int
			done := make(chan struct{})
			ready := make(chan struct{})
			// Schedule from the loop so "now" is the same for all of them.
			l.Submit(func() {
				for _, ms := range []int{30, 10, 20, 10, 0} {
					l.AfterFunc(time.Duration(ms)*time.Millisecond, func() {
						fired = append(fired, ms)
						if len(fired) == 5 {
							close(done)
						}
					})
				}
				close(ready)
			})
			<-ready
			<-done
			assert.Equal(t, []int{0, 10, 10, 20, 30}, fired)
		})
	}
}

func TestLoopTimerStop(t *testing.T) {
	for _, fc := range kernelFactories {
		t.Run(fc.name, func(t *testing.T) {
			l := startLoop(t, fc.f)
			stopped := l.AfterFunc(time.Millisecond, func() { t.Error("a stopped timer ran") })
			assert.True(t, stopped.Stop(), "Stop of a pending timer")
			assert.False(t, stopped.Stop(), "second Stop")

			ran := make(chan struct{})
			fired := l.AfterFunc(0, func() { close(ran) })
			<-ran
			// The timer's function has run: Stop must say it was too late.
			assert.False(t, fired.Stop(), "Stop after the timer ran")

			// A later timer proves the stopped one had its chance to misfire.
			later := make(chan struct{})
			l.AfterFunc(5*time.Millisecond, func() { close(later) })
			<-later
		})
	}
}

func TestLoopManyStoppedTimersAreReclaimed(t *testing.T) {
	l := startLoop(t, Epoll)
	const n = 10 * timerCompactMin
	timers := make([]*Timer, n)
	for i := range timers {
		timers[i] = l.AfterFunc(time.Hour, func() { t.Error("stopped timer ran") })
	}
	for _, tm := range timers {
		require.True(t, tm.Stop())
	}
	// One short timer makes the loop pass through fireTimers, which compacts.
	heapLen := make(chan int)
	l.AfterFunc(0, func() {
		l.Submit(func() { heapLen <- len(l.timers) })
	})
	assert.Less(t, <-heapLen, timerCompactMin, "stopped timers should have been dropped from the heap")
}

func TestLoopRunTwiceAndStopIdempotent(t *testing.T) {
	l, err := NewEventLoop(Epoll)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- l.Run() }()
	ran := make(chan struct{})
	l.Submit(func() { close(ran) })
	<-ran
	assert.ErrorIs(t, l.Run(), ErrLoopStopped, "second Run while running")
	l.Stop()
	l.Stop()
	require.NoError(t, <-errc)
	<-l.Done()
	assert.ErrorIs(t, l.Run(), ErrLoopStopped, "Run after Stop")
}

func TestLoopRecoversPanickingTask(t *testing.T) {
	l := startLoop(t, Epoll)
	after := make(chan struct{})
	l.Submit(func() { panic("boom") })
	l.Submit(func() { close(after) })
	<-after // the loop survived and ran the next task
}
