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
//     cancel channel and a real-time bound. It sleeps on a channel that it
//     creates under k.mu after seeing that its condition does not hold, and
//     that whoever changes the condition closes under k.mu: parkCh for "a
//     poller parked, closed or was created" (which is what ends a turn and
//     what "every poller parked" depends on), extCh for "anything changed"
//     (what RunUntil waits for when the simulation is idle). Because the
//     look and the channel's creation happen in one critical section, a
//     change is either seen by the look or closes the channel.
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
func (k *Kernel) signalParkLocked() {
	if k.parkCh != nil {
		close(k.parkCh)
		k.parkCh = nil
	}
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

// parkTimer is the real-time bound of one step: created on first use so
// that a step that never waits costs no timer.
type parkTimer struct {
	d time.Duration
	t *time.Timer
}

func (t *parkTimer) c() <-chan time.Time {
	if t.t == nil {
		t.t = time.NewTimer(t.d)
	}
	return t.t.C
}

func (t *parkTimer) stop() {
	if t.t != nil {
		t.t.Stop()
	}
}

// waitParkLocked releases k.mu until a poller parks, closes or is created,
// or cancel is closed (it returns false), and takes k.mu again. After the
// step's real-time bound it panics, with k.mu held (the driver's deferred
// Unlock releases it), naming a poller that is still running.
func (k *Kernel) waitParkLocked(cancel <-chan struct{}, t *parkTimer) bool {
	if k.parkCh == nil {
		k.parkCh = make(chan struct{})
	}
	ch := k.parkCh
	k.mu.Unlock()
	var ok, timedOut bool
	select {
	case <-ch:
		ok = true
	case <-cancel:
	case <-t.c():
		timedOut = true
	}
	k.mu.Lock()
	if timedOut {
		p := k.runningLocked()
		if p == nil { // it parked just now: start a fresh bound
			t.t = nil
			return true
		}
		panic(k.parkPanicLocked(p, t.d))
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
	t := parkTimer{d: k.cfg.ParkTimeout}
	defer t.stop()
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
// also returns, made in the same critical section as the idle check, a
// channel that the next change closes, or stepRetry if the state has
// changed since gen was read.
func (k *Kernel) driveOnce(cancel <-chan struct{}, idleWait bool, gen uint64) (stepResult, <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	res := k.stepLocked(cancel)
	if res != stepIdle || !idleWait {
		return res, nil
	}
	if k.gen != gen {
		return stepRetry, nil
	}
	if k.extCh == nil {
		k.extCh = make(chan struct{})
	}
	return stepIdle, k.extCh
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
	res, _ := k.driveOnce(nil, false, 0)
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
		res, wait := k.driveOnce(cancel, true, gen)
		switch res {
		case stepCancelled:
			return false
		case stepDone:
			if steps++; steps > k.cfg.MaxSteps {
				k.livelock("RunUntil", steps)
			}
		case stepIdle:
			select {
			case <-wait:
			case <-cancel:
				return false
			}
		}
	}
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
