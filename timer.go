// This file holds the event loop's timers: Timer, returned by
// EventLoop.AfterFunc, and the min-heap the loop keeps them in. The heap is
// owned by the loop goroutine; a Timer's Stop is safe from any goroutine.

package reactor

import (
	"math"
	"sync/atomic"
	"time"
)

// Timer states. A timer moves from pending to exactly one of fired or
// stopped, by compare-and-swap, so Stop and the loop never both win.
const (
	timerPending int32 = iota
	timerFired
	timerStopped
)

// Timer is a function scheduled to run once on an event loop's goroutine,
// created by EventLoop.AfterFunc. Its deadline is measured on the loop's
// clock (Dispatcher time: real monotonic time for epoll and poll, virtual
// time for the simulation).
type Timer struct {
	loop  *EventLoop
	when  time.Duration // deadline on the loop's clock; immutable once queued
	seq   uint64        // AfterFunc order, breaks ties between equal deadlines
	fn    func()
	index int          // position in the loop's heap; loop-owned
	state atomic.Int32 // timerPending, timerFired or timerStopped
}

// Stop prevents the timer from running. It returns true if it did so, and
// false if the timer has already run (or started running) or was already
// stopped. Safe from any goroutine; a stopped timer's memory is reclaimed by
// the loop lazily.
func (t *Timer) Stop() bool {
	if t.state.CompareAndSwap(timerPending, timerStopped) {
		t.loop.stoppedTimers.Add(1)
		return true
	}
	return false
}

// deadlineAfter returns now + d, the deadline d after now on a loop's
// clock, or math.MaxInt64 where the sum would overflow. Programs pass
// math.MaxInt64 for "never"; summed with a clock past zero it would wrap to
// a deadline in the past and fire at once. Saturated, it lands 292 years
// after the clock's origin: never, for the clocks loops run on (monotonic
// time since the process started, virtual time from zero). now and d must
// not be negative.
func deadlineAfter(now, d time.Duration) time.Duration {
	if d > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + d
}

// timerHeap is a binary min-heap of timers ordered by (when, seq). Written by
// hand rather than with container/heap to keep the loop free of interface
// boxing and to maintain Timer.index for compaction.
type timerHeap []*Timer

func (h timerHeap) less(i, j int) bool {
	if h[i].when != h[j].when {
		return h[i].when < h[j].when
	}
	return h[i].seq < h[j].seq
}

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap) push(t *Timer) {
	t.index = len(*h)
	*h = append(*h, t)
	h.up(t.index)
}

// pop removes and returns the earliest timer. The heap must not be empty.
func (h *timerHeap) pop() *Timer {
	old := *h
	last := len(old) - 1
	old.swap(0, last)
	t := old[last]
	old[last] = nil // let the collector have it
	*h = old[:last]
	h.down(0)
	t.index = -1
	return t
}

func (h timerHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h timerHeap) down(i int) {
	n := len(h)
	for {
		smallest := i
		if l := 2*i + 1; l < n && h.less(l, smallest) {
			smallest = l
		}
		if r := 2*i + 2; r < n && h.less(r, smallest) {
			smallest = r
		}
		if smallest == i {
			return
		}
		h.swap(i, smallest)
		i = smallest
	}
}

// compact drops stopped timers and restores the heap order. The loop calls
// it when stopped timers make up most of the heap, so a program that
// schedules and stops many long timers does not grow the heap without bound.
// It returns how many timers it dropped.
func (h *timerHeap) compact() int {
	kept := (*h)[:0]
	dropped := 0
	for _, t := range *h {
		if t.state.Load() == timerStopped {
			dropped++
			continue
		}
		t.index = len(kept)
		kept = append(kept, t)
	}
	clear((*h)[len(kept):])
	*h = kept
	for i := len(kept)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	return dropped
}
