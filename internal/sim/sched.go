// This file holds the stepped scheduler: the driver calls (Step,
// RunUntilIdle, Advance, RunUntil) that a test makes from its own goroutine
// to give event loops their turns one at a time. Guarded by the Kernel's
// mutex; drivers must not run on a loop goroutine.

package sim

import (
	"fmt"
	"strings"
	"time"
)

// This file is the stepped scheduler: the drivers (Step, RunUntilIdle,
// Advance, AdvanceTo, RunUntil) and the hand-off of the turn.
//
// Synchronisation, in one place:
//
//   - All state is under k.mu. A poller's goroutine in Wait sleeps on
//     p.cond (whose locker is k.mu) until p.granted or p.closed: only a
//     driver sets granted (grantLocked), only Close sets closed, and both
//     signal p.cond while holding k.mu, so the wake-up cannot be lost.
//   - A driver never sleeps on a sync.Cond, because it must also watch a
//     cancel channel and a real-time bound. It joins a waitList under k.mu
//     after seeing that its condition does not hold, and sleeps on its own
//     channel; whoever changes the condition wakes the whole list under
//     k.mu: parkWaiters for "a poller parked, closed or was created" (what
//     ends a turn and what "every poller parked" depends on), extWaiters
//     for "anything changed" (what RunUntil waits for when the simulation
//     is idle). Because the look and the joining happen in one critical
//     section, a change is either seen by the look or wakes the driver.
//   - RunUntil calls done without k.mu (done may call into the kernel). It
//     reads k.gen, which every change increments, before calling done; it
//     then blocks only if gen has not moved since, so a change that
//     happened while done ran is never missed. This is an event count.
//   - At most one poller holds the turn (k.turn). A driver grants a turn
//     only when no poller is running, so drivers on several goroutines
//     still hand out turns one at a time, each choice made under k.mu from
//     the same state: which driver makes it does not change what is chosen.

type stepResult int

const (
	stepIdle      stepResult = iota // every poller parked, none with work
	stepDone                        // a turn was given and has ended
	stepCancelled                   // cancel was closed first
	stepRetry                       // RunUntil: state changed since it looked; look again
)

// signalParkLocked tells drivers waiting for pollers to park that one did
// (or closed, or was created: the set of running pollers changed).
func (k *Kernel) signalParkLocked() { k.parkWaiters.wakeAll() }

// waitList is a set of drivers waiting for one kind of change, each on its
// own channel of capacity 1. The channels are recycled, so that stepping
// allocates nothing in steady state. All methods are called with k.mu held.
type waitList struct {
	waiting []chan struct{} // drivers to wake at the next change
	spare   []chan struct{} // channels no driver uses, empty
}

// join adds a driver and returns the channel it is to wait on (after
// releasing k.mu). The driver must call leave once it stops waiting.
func (w *waitList) join() chan struct{} {
	var ch chan struct{}
	if n := len(w.spare); n > 0 {
		ch = w.spare[n-1]
		w.spare = w.spare[:n-1]
	} else {
		ch = make(chan struct{}, 1)
	}
	w.waiting = append(w.waiting, ch)
	return ch
}

// leave takes back ch from a driver that has stopped waiting, woken or
// not (cancelled, timed out), dropping a wake-up it did not consume.
func (w *waitList) leave(ch chan struct{}) {
	for i, x := range w.waiting {
		if x == ch {
			w.waiting = append(w.waiting[:i], w.waiting[i+1:]...)
			break
		}
	}
	select {
	case <-ch:
	default:
	}
	w.spare = append(w.spare, ch)
}

// wakeAll wakes every waiting driver and empties the list.
func (w *waitList) wakeAll() {
	for i, ch := range w.waiting {
		select {
		case ch <- struct{}{}:
		default: // already woken
		}
		w.waiting[i] = nil
	}
	w.waiting = w.waiting[:0]
}

// runningLocked returns a live poller that is not parked (the turn holder
// first), or nil if every live poller is parked.
func (k *Kernel) runningLocked() *Poller {
	if k.turn != nil {
		return k.turn
	}
	for _, p := range k.pollers {
		if !p.parked {
			return p
		}
	}
	return nil
}

// parkTimer is the real-time bound of one step: armed on first use, so
// that a step that never waits needs no timer, and then taken from (and
// given back to) the kernel's spare timer, so that steps do not allocate
// one each. Its methods are called with k.mu held.
type parkTimer struct {
	k *Kernel
	t *time.Timer
}

func (t *parkTimer) armLocked() <-chan time.Time {
	if t.t == nil {
		if t.t = t.k.spareTimer; t.t != nil {
			t.k.spareTimer = nil
			t.t.Reset(t.k.cfg.ParkTimeout)
		} else {
			t.t = time.NewTimer(t.k.cfg.ParkTimeout)
		}
	}
	return t.t.C
}

// stopLocked stops the timer and keeps it for the next step. (Since Go
// 1.23 a stopped timer's channel holds no stale tick, so Reset is safe.)
func (t *parkTimer) stopLocked() {
	if t.t != nil {
		t.t.Stop()
		t.k.spareTimer = t.t
		t.t = nil
	}
}

// waitParkLocked releases k.mu until a poller parks, closes or is created,
// or cancel is closed (it returns false), and takes k.mu again. After the
// step's real-time bound it panics, with k.mu held (the driver's deferred
// Unlock releases it), naming a poller that is still running.
func (k *Kernel) waitParkLocked(cancel <-chan struct{}, t *parkTimer) bool {
	ch := k.parkWaiters.join()
	tick := t.armLocked()
	k.mu.Unlock()
	var ok, timedOut bool
	select {
	case <-ch:
		ok = true
	case <-cancel:
	case <-tick:
		timedOut = true
	}
	k.mu.Lock()
	k.parkWaiters.leave(ch)
	if timedOut {
		p := k.runningLocked()
		if p == nil { // it parked just now: start a fresh bound
			t.t.Reset(k.cfg.ParkTimeout)
			return true
		}
		panic(k.parkPanicLocked(p, k.cfg.ParkTimeout))
	}
	return ok
}

func (k *Kernel) parkPanicLocked(p *Poller, d time.Duration) string {
	what := "has not called Wait since it was created"
	if k.turn == p {
		what = "was given a turn and has not called Wait again"
	}
	return fmt.Sprintf("sim: poller %v %s for %v of real time. "+
		"Usual causes: its event loop is not running (Serve not called, or the loop's goroutine "+
		"exited without closing its poller); a handler blocks (on a channel, a mutex, time.Sleep, "+
		"real I/O) instead of returning; or Step, RunUntil or Advance was called from that loop's "+
		"own goroutine, which then waits for itself.%s", p, what, d, k.traceTailLocked(10))
}

// stepLocked waits until every live poller is parked, picks one that has
// work, gives it the turn and waits until the turn ends. k.mu is held on
// entry and exit; it is released while waiting.
func (k *Kernel) stepLocked(cancel <-chan struct{}) stepResult {
	t := parkTimer{k: k}
	defer t.stopLocked()
	for k.runningLocked() != nil {
		if !k.waitParkLocked(cancel, &t) {
			return stepCancelled
		}
	}
	p := k.pickLocked()
	if p == nil {
		return stepIdle
	}
	seq := k.grantLocked(p)
	for k.turn == p && k.turnSeq == seq {
		if !k.waitParkLocked(cancel, &t) {
			return stepCancelled
		}
	}
	return stepDone
}

// pickLocked chooses, with the random source, among the parked pollers
// that have work, in creation order; nil if none has.
func (k *Kernel) pickLocked() *Poller {
	cands := k.cands[:0]
	for _, p := range k.pollers {
		if k.hasWorkLocked(p) {
			cands = append(cands, p)
		}
	}
	k.cands = cands[:0]
	switch len(cands) {
	case 0:
		return nil
	case 1:
		return cands[0]
	}
	return cands[k.rng.IntN(len(cands))]
}

// grantLocked gives p the turn: its Wait's result is decided here, under
// k.mu (the ready events, a Wake consumed, or a timeout), and its goroutine
// is signalled to return it. It returns the turn's number.
func (k *Kernel) grantLocked(p *Poller) uint64 {
	n := k.collectLocked(p, p.events)
	woke := p.wake
	p.wake = false
	p.n = n
	p.granted = true
	p.parked = false
	p.setBlockedLocked(false)
	k.turn = p
	k.turnSeq++
	if k.traceOn {
		text := formatReady(p.events[:n])
		if woke {
			text += " wake"
		}
		if n == 0 && !woke {
			text += " timeout"
		}
		k.recordLocked(Record{Kind: KindTurn, Poller: p.id, FD: -1, N: n, Text: text})
	}
	p.cond.Signal()
	return k.turnSeq
}

// driveOnce runs one step with k.mu held (released by a deferred Unlock
// even if the step panics). With idleWait, when the simulation is idle it
// also joins extWaiters, in the same critical section as the idle check,
// and returns the channel that the next change wakes (the caller must
// leave it), or stepRetry if the state has changed since gen was read.
//
// horizon, when not negative, lets an idle simulation move its clock: to
// the earliest deadline of a parked poller, if that is at or before
// horizon; the caller then steps again (stepRetry).
func (k *Kernel) driveOnce(cancel <-chan struct{}, idleWait bool, gen uint64, horizon time.Duration) (stepResult, chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	res := k.stepLocked(cancel)
	if res != stepIdle || !idleWait {
		return res, nil
	}
	if k.gen != gen {
		return stepRetry, nil
	}
	if next, ok := k.earliestDeadlineLocked(); ok && horizon >= 0 && next <= horizon {
		k.setClockLocked(next)
		return stepRetry, nil
	}
	return stepIdle, k.extWaiters.join()
}

func (k *Kernel) mustBeStepped(method string) {
	if !k.stepped {
		panic("sim: " + method + " needs a stepped kernel (Config.Stepped)")
	}
}

// Step runs one turn. It waits until every live poller is parked in Wait
// (a poller created but not yet waiting counts as running), picks with the
// random source one of those that have work (a ready registered
// descriptor, a pending Wake, or a deadline at or before Now), gives it the
// turn, and waits until its loop calls Wait again or closes the poller. It
// returns false, having run nothing, if no poller had work.
//
// If a poller does not park within Config.ParkTimeout of real time, Step
// panics with a message naming it. It panics on a free-running kernel.
// Never call it from an event loop's goroutine: it would wait for that loop.
func (k *Kernel) Step() bool {
	k.mustBeStepped("Step")
	res, _ := k.driveOnce(nil, false, 0, -1)
	return res == stepDone
}

// RunUntilIdle steps until no poller has work. It panics after
// Config.MaxSteps steps, a livelock: some loop always has work (a Wait with
// timeout 0 every turn, a Wake every turn, a descriptor that stays ready
// because it is never read or deleted).
func (k *Kernel) RunUntilIdle() {
	k.mustBeStepped("RunUntilIdle")
	for i := 0; k.Step(); i++ {
		if i >= k.cfg.MaxSteps {
			k.livelock("RunUntilIdle", i)
		}
	}
}

func (k *Kernel) livelock(method string, steps int) {
	k.mu.Lock()
	tail := k.traceTailLocked(20)
	k.mu.Unlock()
	panic(fmt.Sprintf("sim: %s: still busy after %d steps: a livelock? Some loop always has work: "+
		"a Wait with timeout 0 every turn, a Wake every turn, or a descriptor that stays ready "+
		"because it is never read or deleted.%s", method, steps, tail))
}

// Advance moves virtual time forward by d, running the simulation on the
// way; see AdvanceTo.
func (k *Kernel) Advance(d time.Duration) {
	k.mu.Lock()
	t := addTime(k.now, d)
	k.mu.Unlock()
	k.AdvanceTo(t)
}

// AdvanceTo moves virtual time forward to t (never backward).
//
// Free mode: it sets the clock and wakes the Waits whose deadline has come.
//
// Stepped mode: it runs until idle; then, while some parked poller's
// deadline is at or before t, it moves the clock to the earliest such
// deadline and runs until idle again; finally it sets the clock to t and
// runs until idle. So every timer fires at exactly its deadline, timers
// fire in deadline order, and what a timer's callback schedules for before
// t fires too.
func (k *Kernel) AdvanceTo(t time.Duration) {
	if !k.stepped {
		k.lock()
		k.setClockLocked(t)
		k.unlock()
		return
	}
	k.RunUntilIdle()
	for {
		k.lock()
		next, ok := k.earliestDeadlineLocked()
		if !ok || next > t {
			k.unlock()
			break
		}
		k.setClockLocked(next)
		k.unlock()
		k.RunUntilIdle()
	}
	k.lock()
	k.setClockLocked(t)
	k.unlock()
	k.RunUntilIdle()
}

func (k *Kernel) setClockLocked(t time.Duration) {
	if t > k.now {
		k.now = t
		k.recordLocked(Record{Kind: KindClock, FD: -1})
	}
}

// earliestDeadlineLocked returns the earliest deadline of a parked poller.
func (k *Kernel) earliestDeadlineLocked() (time.Duration, bool) {
	var d time.Duration
	found := false
	for _, p := range k.pollers {
		if p.parked && p.hasDeadline && (!found || p.deadline < d) {
			d, found = p.deadline, true
		}
	}
	return d, found
}

// RunUntil drives the simulation until done returns true (it returns true)
// or cancel is closed (it returns false; a nil cancel never is). It steps
// while there is work; when the simulation is idle and done is false, it
// blocks until something changes from outside (a client operation, a Wake,
// a poller created or closed, Notify) and looks again. A Server's Shutdown
// and Close use it to run the loops they are waiting for.
//
// done is called without the kernel's lock held and may call into the
// kernel. It is evaluated again after every turn and after every change, so
// it must become true through the simulation: during a turn, or before a
// kernel operation made after the change (closing a poller, Notify). State
// changed by a goroutine after its last kernel operation (a loop goroutine
// exiting after it closed its poller) is seen only if that goroutine calls
// Notify afterwards.
//
// It panics after Config.MaxSteps steps without done becoming true (a
// livelock), or as Step does when a poller does not park; never call it
// from an event loop's goroutine.
func (k *Kernel) RunUntil(done func() bool, cancel <-chan struct{}) bool {
	return k.RunUntilAt(done, cancel, -1)
}

// RunUntilAt is RunUntil for a driver that waits for something which may
// take time, as a Server's graceful shutdown waits for the peers of its
// lingering connections: when the simulation is idle and done is false, it
// moves the clock to the earliest deadline of a parked poller if that is at
// or before horizon (a virtual time), as Advance would, and steps on; only
// with no such deadline does it block. A negative horizon never moves the
// clock.
func (k *Kernel) RunUntilAt(done func() bool, cancel <-chan struct{}, horizon time.Duration) bool {
	k.mustBeStepped("RunUntil")
	steps := 0
	for {
		k.mu.Lock()
		gen := k.gen
		k.mu.Unlock()
		if done() {
			return true
		}
		select {
		case <-cancel:
			return false
		default:
		}
		res, wait := k.driveOnce(cancel, true, gen, horizon)
		switch res {
		case stepCancelled:
			return false
		case stepDone:
			if steps++; steps > k.cfg.MaxSteps {
				k.livelock("RunUntil", steps)
			}
		case stepIdle:
			cancelled := false
			select {
			case <-wait:
			case <-cancel:
				cancelled = true
			}
			k.mu.Lock()
			k.extWaiters.leave(wait)
			k.mu.Unlock()
			if cancelled {
				return false
			}
		}
	}
}

// AdvanceWhile runs until idle, then, while done is false and some parked
// poller's deadline is at or before horizon, moves the clock to the earliest
// such deadline and runs until idle again, as AdvanceTo does but stopping
// as soon as done holds. It returns done().
func (k *Kernel) AdvanceWhile(done func() bool, horizon time.Duration) bool {
	k.RunUntilIdle()
	for !done() {
		k.lock()
		next, ok := k.earliestDeadlineLocked()
		if !ok || next > horizon {
			k.unlock()
			return false
		}
		k.setClockLocked(next)
		k.unlock()
		k.RunUntilIdle()
	}
	return true
}

// traceTailLocked formats the last n trace records for a panic message.
func (k *Kernel) traceTailLocked(n int) string {
	if len(k.trace) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nLast trace records:")
	for _, r := range k.trace[max(len(k.trace)-n, 0):] {
		b.WriteString("\n\t")
		b.WriteString(r.String())
	}
	return b.String()
}
