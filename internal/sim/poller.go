// This file holds Poller, a virtual epoll instance: one per event loop,
// which calls Add, Modify, Delete and Wait from its own goroutine; Wake and
// Close are safe from any goroutine. Guarded by the Kernel's mutex.

package sim

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Readiness bits, with the same values as the root package's EventRead and
// EventWrite (the adapter there checks it at compile time).
const (
	Read  uint32 = 1 << iota // readable, or the peer finished, or the connection failed
	Write                    // writable
)

// Ready is one descriptor's readiness, as Poller.Wait reports it.
type Ready struct {
	FD     int
	Events uint32
}

// ErrPollerClosed is returned by every Poller method called after Close
// (Close itself returns nil when repeated), and by a Wait that was parked
// or blocked when the poller was closed.
var ErrPollerClosed = errors.New("sim: poller closed")

// Poller is one virtual epoll instance: the readiness backend of one event
// loop. It keeps the Dispatcher contract of the root package: level-
// triggered, Add twice is an error (EEXIST), Modify or Delete of a
// descriptor not registered is an error (ENOENT), interest 0 reports only
// failures, a descriptor closed while registered is dropped, Wake collapses,
// and every method returns ErrPollerClosed after Close.
//
// Add, Modify, Delete and Wait belong to the goroutine of the event loop
// that owns the poller; Wake and Close may be called from any goroutine.
// A poller takes a descriptor number, as an epoll instance does.
//
// How Wait behaves depends on the kernel's mode; see the package
// documentation.
type Poller struct {
	k    *Kernel
	id   int // rank among the kernel's pollers, from 1; "p<id>" in the trace
	fd   int
	cond *sync.Cond // on k.mu: the goroutine in Wait waits here for a turn (stepped) or a change (free)

	// All below guarded by k.mu.
	regs   map[int]*reg // by descriptor
	order  []*reg       // the same registrations in the order Wait scans them
	cursor int          // where the next scan of order starts, so no descriptor starves

	closed bool
	wake   bool // Wake was called since the last Wait returned

	inWait      bool          // a goroutine is inside Wait
	parked      bool          // stepped: in Wait, waiting for a turn (a poller that is not parked is running)
	granted     bool          // stepped: a driver gave it the turn; Wait returns n
	blocked     bool          // blocked in Wait: parked (stepped), or waiting on cond (free)
	blockedCh   chan struct{} // closed when blocked becomes true; see Blocked
	hasDeadline bool          // the current Wait has a deadline
	deadline    time.Duration // virtual time at which the current Wait times out
	events      []Ready       // the current Wait's caller's slice; filled by the driver
	n           int           // how many events the driver filled
}

// reg is a descriptor's registration with a poller.
type reg struct {
	p   *Poller
	f   *file
	ev  uint32 // interest
	pos int    // index in p.order
}

// NewPoller creates a poller. It fails with EMFILE when its descriptor
// would exceed the limit. In stepped mode a new poller counts as running
// until its loop first calls Wait: drivers wait for that, so create a
// poller before the goroutine that uses it starts (a DispatcherFactory
// called from NewServer does) and never leave one unused.
func (k *Kernel) NewPoller() (*Poller, error) {
	k.lock()
	defer k.unlock()
	p := &Poller{k: k, regs: make(map[int]*reg)}
	p.cond = sync.NewCond(&k.mu)
	fd, errno := k.allocFDLocked(&file{kind: filePoller, poller: p})
	if errno != 0 {
		return nil, errno
	}
	k.pollerSeq++
	p.id = k.pollerSeq
	p.fd = fd
	k.pollers = append(k.pollers, p)
	k.signalParkLocked()
	k.recordLocked(Record{Kind: KindPoller, Poller: p.id, FD: fd, Text: "created"})
	return p, nil
}

// ID returns the poller's number: a kernel's pollers are numbered 1, 2, ...
// in creation order and appear as p1, p2, ... in its trace.
func (p *Poller) ID() int { return p.id }

// FD returns the poller's descriptor.
func (p *Poller) FD() int { return p.fd }

// String returns "p<ID>".
func (p *Poller) String() string { return fmt.Sprintf("p%d", p.id) }

// Add registers fd with interest ev (a combination of Read and Write). It
// fails with EEXIST if fd is registered already, EBADF if fd is not open,
// EINVAL for fd being the poller itself or unknown bits in ev, and EPERM
// for another poller (nesting is not modelled).
func (p *Poller) Add(fd int, ev uint32) error {
	k := p.k
	k.lock()
	defer k.unlock()
	if p.closed {
		return ErrPollerClosed
	}
	f, errno := k.fileLocked(fd)
	switch {
	case errno != 0:
		return errno
	case ev&^(Read|Write) != 0 || fd == p.fd:
		return unix.EINVAL
	case f.kind == filePoller:
		return unix.EPERM
	case p.regs[fd] != nil:
		return unix.EEXIST
	}
	r := &reg{p: p, f: f, ev: ev, pos: len(p.order)}
	p.regs[fd] = r
	p.order = append(p.order, r)
	f.regs = append(f.regs, r)
	return nil
}

// Modify replaces the interest of a registered descriptor. It fails with
// ENOENT if fd is not registered, EINVAL for unknown bits in ev.
func (p *Poller) Modify(fd int, ev uint32) error {
	k := p.k
	k.lock()
	defer k.unlock()
	if p.closed {
		return ErrPollerClosed
	}
	r := p.regs[fd]
	switch {
	case ev&^(Read|Write) != 0:
		return unix.EINVAL
	case r == nil:
		return unix.ENOENT
	}
	r.ev = ev
	return nil
}

// Delete forgets a registered descriptor; no Wait reports it afterwards.
// It fails with ENOENT if fd is not registered.
func (p *Poller) Delete(fd int) error {
	k := p.k
	k.lock()
	defer k.unlock()
	if p.closed {
		return ErrPollerClosed
	}
	r := p.regs[fd]
	if r == nil {
		return unix.ENOENT
	}
	p.removeRegLocked(r)
	return nil
}

// removeRegLocked removes r from its poller and its file.
func (p *Poller) removeRegLocked(r *reg) {
	last := p.order[len(p.order)-1]
	p.order[r.pos] = last
	last.pos = r.pos
	p.order[len(p.order)-1] = nil
	p.order = p.order[:len(p.order)-1]
	delete(p.regs, r.f.fd)
	for i, x := range r.f.regs {
		if x == r {
			r.f.regs = append(r.f.regs[:i], r.f.regs[i+1:]...)
			break
		}
	}
}

// Wake makes the poller's current or next Wait return, even with nothing
// ready. Many Wakes before that Wait count as one. Safe from any goroutine.
// In stepped mode it only marks the poller as having work: its loop runs
// when a driver gives it a turn.
func (p *Poller) Wake() error {
	k := p.k
	k.lock()
	defer k.unlock()
	if p.closed {
		return ErrPollerClosed
	}
	p.wake = true
	return nil
}

// Close releases the poller and its descriptor; registrations are
// dropped. A Wait blocked or parked in it returns ErrPollerClosed. Safe
// from any goroutine; repeated calls return nil.
//
// In stepped mode Close ends the poller's turn if it holds one, because a
// loop that closes its poller during its turn will not call Wait again. So,
// as the Dispatcher contract asks, only the loop itself should close its
// poller, or someone else once the loop no longer runs: closed from another
// goroutine mid-turn, the loop's remaining code would run concurrently
// with the next turn. Likewise a loop should close its poller last: what it
// does after Close runs outside any turn.
func (p *Poller) Close() error {
	k := p.k
	k.lock()
	defer k.unlock()
	p.closeLocked()
	return nil
}

func (p *Poller) closeLocked() {
	if p.closed {
		return
	}
	k := p.k
	p.closed = true
	for len(p.order) > 0 {
		p.removeRegLocked(p.order[len(p.order)-1])
	}
	if f := k.files[p.fd]; f != nil && f.poller == p {
		k.freeFDLocked(f)
	}
	for i, x := range k.pollers {
		if x == p {
			k.pollers = append(k.pollers[:i], k.pollers[i+1:]...)
			break
		}
	}
	if k.turn == p {
		k.turn = nil
	}
	p.parked = false
	if p.blockedCh != nil { // it will never block again: release whoever waits for it
		close(p.blockedCh)
		p.blockedCh = nil
	}
	p.cond.Signal()
	k.signalParkLocked()
	k.recordLocked(Record{Kind: KindPoller, Poller: p.id, FD: p.fd, Text: "closed"})
}

// Blocked returns a channel that is closed once the poller is blocked in
// Wait (already closed if it is now), or closed. In free mode, blocked
// means waiting for readiness, a Wake or the deadline; in stepped mode,
// parked waiting for a turn. A test uses it to act only after Wait has
// started waiting: to advance the clock past a Wait's timeout, say.
func (p *Poller) Blocked() <-chan struct{} {
	k := p.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if p.blocked || p.closed {
		return k.closedCh
	}
	if p.blockedCh == nil {
		p.blockedCh = make(chan struct{})
	}
	return p.blockedCh
}

func (p *Poller) setBlockedLocked(b bool) {
	p.blocked = b
	if b && p.blockedCh != nil {
		close(p.blockedCh)
		p.blockedCh = nil
	}
}

// Wait fills events from the front with ready descriptors and returns how
// many. The order within one Wait is drawn from the kernel's random source;
// when more are ready than fit, the next Wait goes on where this one
// stopped, so none starves. The deadline is Now()+timeout in virtual time;
// a negative timeout has none. len(events) must be at least 1 (EINVAL).
//
// Free mode: it returns at once if something is ready, the poller was
// woken, or timeout is 0; otherwise it blocks until one of these, or until
// Advance moves the clock to the deadline, and returns 0 for a wake-up or
// a timeout.
//
// Stepped mode: it parks, ending the caller's turn, and returns only when a
// driver gives the poller a turn, which it does only when the poller has
// work: a ready descriptor, a pending Wake, or a deadline reached. The
// events are taken when the turn is given.
//
// Only one goroutine may be in Wait at a time (EINVAL otherwise).
func (p *Poller) Wait(events []Ready, timeout time.Duration) (int, error) {
	k := p.k
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case p.closed:
		return 0, ErrPollerClosed
	case len(events) == 0 || p.inWait:
		return 0, unix.EINVAL
	}
	p.hasDeadline = timeout >= 0
	p.deadline = addTime(k.now, timeout)
	if k.stepped {
		return p.waitSteppedLocked(events)
	}
	return p.waitFreeLocked(events, timeout)
}

// waitFreeLocked is Wait for free mode: a loop around p.cond, which every
// state change (changedLocked) signals while p is blocked.
func (p *Poller) waitFreeLocked(events []Ready, timeout time.Duration) (int, error) {
	k := p.k
	p.inWait = true
	defer func() { p.inWait = false }()
	for {
		if p.closed {
			return 0, ErrPollerClosed
		}
		n := k.collectLocked(p, events)
		if n > 0 || p.wake || timeout == 0 || (p.hasDeadline && p.deadline <= k.now) {
			p.wake = false
			return n, nil
		}
		p.setBlockedLocked(true)
		k.freeWaiters++
		p.cond.Wait()
		k.freeWaiters--
		p.setBlockedLocked(false)
	}
}

// waitSteppedLocked is Wait for stepped mode. Parking hands control back:
// the turn (if p held it) ends, drivers waiting for every poller to park
// are told, and the goroutine sleeps on p.cond until grantLocked has filled
// events and set granted, or p is closed. Everything it returns was decided
// by the driver under k.mu, so what another goroutine does meanwhile cannot
// change it.
func (p *Poller) waitSteppedLocked(events []Ready) (int, error) {
	k := p.k
	p.inWait = true
	p.events = events
	p.parked = true
	if k.turn == p {
		k.turn = nil
	}
	p.setBlockedLocked(true)
	k.signalParkLocked()
	k.changedLocked()
	for !p.granted && !p.closed {
		p.cond.Wait()
	}
	p.inWait = false
	p.events = nil
	p.parked = false
	p.setBlockedLocked(false)
	if p.closed {
		p.granted = false
		return 0, ErrPollerClosed
	}
	p.granted = false
	return p.n, nil
}

// hasWorkLocked reports whether a parked poller has a reason to run: a
// pending Wake, a deadline reached, or a registered descriptor ready.
func (k *Kernel) hasWorkLocked(p *Poller) bool {
	if p.wake || (p.hasDeadline && p.deadline <= k.now) {
		return true
	}
	for _, r := range p.order {
		if k.readinessLocked(r.f, r.ev) != 0 {
			return true
		}
	}
	return false
}

// readinessLocked returns the events f reports for interest.
func (k *Kernel) readinessLocked(f *file, interest uint32) uint32 {
	switch f.kind {
	case fileListener:
		if len(f.lis.queue) > 0 {
			return Read & interest
		}
	case fileSocket:
		return f.ep.readiness(interest)
	}
	return 0
}

// collectLocked fills events with p's ready descriptors, scanning from
// where the last scan stopped (as epoll moves reported entries to the back
// of its ready list), then shuffles them with the kernel's random source.
func (k *Kernel) collectLocked(p *Poller, events []Ready) int {
	n, total := 0, len(p.order)
	if total == 0 {
		return 0
	}
	start := p.cursor % total
	for i := 0; i < total && n < len(events); i++ {
		j := (start + i) % total
		r := p.order[j]
		if ev := k.readinessLocked(r.f, r.ev); ev != 0 {
			events[n] = Ready{FD: r.f.fd, Events: ev}
			n++
			p.cursor = j + 1
		}
	}
	k.rng.Shuffle(n, func(i, j int) { events[i], events[j] = events[j], events[i] })
	return n
}

// String formats events as the trace shows them: [5:R 7:RW].
func formatReady(events []Ready) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range events {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%s", e.FD, evString(e.Events))
	}
	b.WriteByte(']')
	return b.String()
}

func evString(ev uint32) string {
	switch ev & (Read | Write) {
	case Read:
		return "R"
	case Write:
		return "W"
	case Read | Write:
		return "RW"
	}
	return "-"
}
