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

// timerHeap is the loop's pending timers, by deadline and then AfterFunc
// order: a deadlineHeap of its own type for compact, which only timers
// need.
type timerHeap deadlineHeap[*Timer]

func (h *timerHeap) push(t *Timer) { (*deadlineHeap[*Timer])(h).push(t.when, t.seq, &t.index, t) }

// pop removes and returns the earliest timer. The heap must not be empty.
func (h *timerHeap) pop() *Timer { return (*deadlineHeap[*Timer])(h).remove(0) }

// compact drops stopped timers and restores the heap order. The loop calls
// it when stopped timers make up most of the heap, so a program that
// schedules and stops many long timers does not grow the heap without bound.
// It returns how many timers it dropped.
func (h *timerHeap) compact() int {
	kept := (*h)[:0]
	dropped := 0
	for _, e := range *h {
		if e.item.state.Load() == timerStopped {
			*e.index = -1
			dropped++
			continue
		}
		*e.index = len(kept)
		kept = append(kept, e)
	}
	clear((*h)[len(kept):])
	*h = kept
	deadlineHeap[*Timer](kept).heapify()
	return dropped
}

// deadlineHeap is a binary min-heap of items by deadline, equal deadlines
// by seq: the loop's timers, and its timeout lists (timeout.go). Each entry
// carries the item's key, so that ordering reads no item, and a pointer to
// the item's record of its own position, kept up to date (-1 once the item
// is out) so that an item can be moved (update) or taken out (remove) where
// it stands. Written by hand rather than with container/heap to keep the
// loop free of interface boxing; and with entries rather than items that
// order themselves, because generic code calls a type parameter's methods
// indirectly (measured: push and pop five times slower). Owned by the loop
// goroutine.
type deadlineHeap[T any] []heapEntry[T]

type heapEntry[T any] struct {
	when  time.Duration
	seq   uint64
	index *int // the item's position field
	item  T
}

// before reports whether entry e comes out before entry f.
func (e *heapEntry[T]) before(f *heapEntry[T]) bool {
	if e.when != f.when {
		return e.when < f.when
	}
	return e.seq < f.seq
}

// put stores e at position i and tells its item.
func (h deadlineHeap[T]) put(i int, e heapEntry[T]) {
	h[i] = e
	*e.index = i
}

// push adds item with its key; index is where the item records its
// position.
func (h *deadlineHeap[T]) push(when time.Duration, seq uint64, index *int, item T) {
	*index = len(*h)
	*h = append(*h, heapEntry[T]{when: when, seq: seq, index: index, item: item})
	h.up(*index)
}

// remove takes out and returns the item at position i, which must exist.
func (h *deadlineHeap[T]) remove(i int) T {
	old := *h
	last := len(old) - 1
	e := old[i]
	if i < last {
		old.put(i, old[last])
	}
	old[last] = heapEntry[T]{} // let the collector have the item
	*h = old[:last]
	if i < last {
		h.fix(i)
	}
	*e.index = -1
	return e.item
}

// update gives the item at position i a new deadline.
func (h deadlineHeap[T]) update(i int, when time.Duration) {
	h[i].when = when
	h.fix(i)
}

// fix restores the order around position i.
func (h deadlineHeap[T]) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

// heapify orders the entries from scratch, in linear time.
func (h deadlineHeap[T]) heapify() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// up and down move the entry at i to its place, moving the others it
// passes rather than swapping, which writes each entry once. down reports
// whether the entry moved.
func (h deadlineHeap[T]) up(i int) {
	e := h[i]
	for i > 0 {
		parent := (i - 1) / 2
		if !e.before(&h[parent]) {
			break
		}
		h.put(i, h[parent])
		i = parent
	}
	h.put(i, e)
}

func (h deadlineHeap[T]) down(i int) bool {
	start, n := i, len(h)
	e := h[i]
	for {
		child := 2*i + 1
		if child >= n {
			break
		}
		if r := child + 1; r < n && h[r].before(&h[child]) {
			child = r
		}
		if !h[child].before(&e) {
			break
		}
		h.put(i, h[child])
		i = child
	}
	h.put(i, e)
	return i > start
}
