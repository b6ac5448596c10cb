// This file holds the epoll backend (the C design's epoll_dispatcher) and
// the eventfd wake-up that it shares with the poll backend
// (dispatcher_poll_linux.go).

package reactor

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Epoll creates a Dispatcher backed by Linux epoll(7), level-triggered, with
// an eventfd(2) for Wake. It is the default backend on Linux: Add, Modify
// and Delete are O(1) and Wait costs the number of ready descriptors, not
// the number registered. Each Dispatcher holds two descriptors (the epoll
// instance and the eventfd) until Close.
func Epoll() (Dispatcher, error) { return newEpoll() }

// epollDispatcher is the epoll backend. It is owned by one event loop: Add,
// Modify, Delete, Wait and Close run on that loop's goroutine only; Wake may
// run on any goroutine, concurrently with all of them (see eventfdWaker).
type epollDispatcher struct {
	epfd int          // the epoll instance; closed by Close under waker.mu
	w    eventfdWaker // Wake's eventfd, registered in epfd for EPOLLIN
	// evs receives epoll_wait's results; it has at least len(events) of
	// the caller's slice, and is reallocated only when the caller passes a
	// bigger one (the event loop doubles its slice when a Wait fills it).
	// Loop goroutine only.
	evs []unix.EpollEvent
}

var _ Dispatcher = (*epollDispatcher)(nil)

// newEpoll is the Epoll factory.
func newEpoll() (Dispatcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	d := &epollDispatcher{epfd: epfd}
	if err := d.w.open(); err != nil {
		_ = unix.Close(epfd) // already failing; err says why
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(d.w.fd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, d.w.fd, &ev); err != nil {
		_ = d.Close() // already failing; err says why
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return d, nil
}

// epollInterest maps an interest set to epoll flags.
//
// EPOLLRDHUP is deliberately not requested. Level-triggered EPOLLIN already
// reports a peer's FIN (the socket reads as EOF), so with EventRead it would
// add nothing the loop uses; and without EventRead (a loop that stopped
// reading a connection for backpressure, interest EventWrite or 0) it would
// report a half-closed socket on every Wait, and the loop would spin. A
// failed connection is still reported whatever the interest, through
// EPOLLHUP and EPOLLERR, which epoll always reports: a reset TCP
// connection, or a socketpair whose peer has closed. A TCP peer's close
// itself arrives as a FIN, which under interest EventWrite alone shows only
// as writable; the write that follows draws a reset from the peer, which is
// then reported as EventRead|EventWrite. Bits other than EventRead and
// EventWrite are ignored.
func epollInterest(ev Events) uint32 {
	var e uint32
	if ev&EventRead != 0 {
		e |= unix.EPOLLIN
	}
	if ev&EventWrite != 0 {
		e |= unix.EPOLLOUT
	}
	return e
}

// epollReady maps what epoll reported to Events, as the Dispatcher contract
// says: EPOLLIN and EPOLLRDHUP are EventRead, EPOLLOUT is EventWrite, and
// EPOLLERR and EPOLLHUP (an error pending, or a connection closed both ways)
// are both, so a loop that waits only to write learns of the failure too.
func epollReady(e uint32) Events {
	var ev Events
	if e&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
		ev |= EventRead
	}
	if e&unix.EPOLLOUT != 0 {
		ev |= EventWrite
	}
	if e&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		ev |= EventRead | EventWrite
	}
	return ev
}

// Add registers fd with interest ev. It fails (EEXIST) if fd is already
// registered. The fd, not a pointer, goes into the epoll event's data: the
// loop finds the channel through its channel map, and the kernel never
// holds a Go pointer the garbage collector cannot see.
func (d *epollDispatcher) Add(fd int, ev Events) error {
	return d.ctl(unix.EPOLL_CTL_ADD, fd, ev)
}

// Modify replaces the interest of a registered fd (ENOENT if it is not).
func (d *epollDispatcher) Modify(fd int, ev Events) error {
	return d.ctl(unix.EPOLL_CTL_MOD, fd, ev)
}

// Delete unregisters fd (ENOENT if it is not registered). No later Wait
// reports it: epoll_ctl removes it from the ready list too.
func (d *epollDispatcher) Delete(fd int) error {
	return d.ctl(unix.EPOLL_CTL_DEL, fd, 0)
}

func (d *epollDispatcher) ctl(op, fd int, ev Events) error {
	if d.w.isClosed() {
		return ErrDispatcherClosed
	}
	e := unix.EpollEvent{Events: epollInterest(ev), Fd: int32(fd)}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(d.epfd, op, fd, &e))
}

// Wait reports up to len(events) ready descriptors, as the Dispatcher
// contract says. It allocates nothing unless events is longer than any slice
// it was given before. An empty events slice is an error: epoll_wait cannot
// wait for zero events. A Wake wakes it without being reported as an Event.
//
// The ready list of an epoll instance is a queue: a level-triggered
// descriptor that epoll_wait reports goes back to its tail. So when more
// descriptors are ready than len(events), successive Waits take turns
// through them and none starves.
func (d *epollDispatcher) Wait(events []Event, timeout time.Duration) (int, error) {
	if d.w.isClosed() {
		return 0, ErrDispatcherClosed
	}
	if len(events) == 0 {
		return 0, errNoEventSlots
	}
	if len(d.evs) < len(events) {
		d.evs = make([]unix.EpollEvent, len(events))
	}
	evs := d.evs[:len(events)]
	n, err := d.wait(evs, timeout)
	if err != nil {
		return 0, err
	}
	filled := 0
	for i := range evs[:n] {
		e := &evs[i]
		if int(e.Fd) == d.w.fd {
			d.w.drain()
			continue
		}
		if ready := epollReady(e.Events); ready != 0 {
			events[filled] = Event{FD: int(e.Fd), Events: ready}
			filled++
		}
	}
	return filled, nil
}

// wait fills evs with epoll_wait and returns how many it filled.
//
// It first polls with a zero timeout through a raw system call, and makes
// the ordinary, blocking epoll_wait only if nothing was ready and the caller
// is willing to wait. A busy loop finds events ready most of the time, and
// the raw call skips the scheduler's entersyscall/exitsyscall (on the
// development machine, BenchmarkDispatcherWait with one ready descriptor
// went from about 650 to 500 ns). A raw call must never block, though:
// the Go scheduler would not know the thread is in the kernel and could not
// hand its P to another goroutine while the loop sleeps. The blocking call
// is therefore an ordinary one. When nothing is ready the raw try is one
// extra, cheap system call before the loop goes to sleep.
//
// epoll_pwait with a nil signal mask is epoll_wait, and exists on every
// Linux architecture (arm64 has no epoll_wait).
func (d *epollDispatcher) wait(evs []unix.EpollEvent, timeout time.Duration) (int, error) {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(d.epfd),
			uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, os.NewSyscallError("epoll_pwait", e)
		}
		if r > 0 || timeout == 0 {
			return int(r), nil
		}
		break
	}

	var deadline time.Time
	msec := -1
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
		msec = ceilMillis(timeout)
	}
	for {
		n, err := unix.EpollWait(d.epfd, evs, msec)
		if err != nil && err != unix.EINTR {
			return 0, os.NewSyscallError("epoll_wait", err)
		}
		if n > 0 {
			return n, nil
		}
		// Interrupted by a signal, or timed out: wait out whatever is left
		// of the timeout. The timer never fires early, so this normally
		// finds nothing left; it does matter after EINTR, and for a timeout
		// longer than epoll_wait's int milliseconds.
		if timeout > 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return 0, nil
			}
			msec = ceilMillis(left)
		}
	}
}

// ceilMillis converts a positive timeout to epoll_wait's milliseconds,
// rounding up: rounded down, a Wait for a timer due in 2.5ms would return
// after 2ms, find the timer not yet due, and wait again for 0ms, spinning
// until the deadline. Timeouts beyond math.MaxInt32 ms (24.8 days) are
// clamped; the caller waits again for the rest.
func ceilMillis(d time.Duration) int {
	const maxMillis = math.MaxInt32
	if d >= maxMillis*time.Millisecond {
		return maxMillis
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// Wake makes a blocked Wait return, or the next Wait return at once. It may
// be called from any goroutine, and allocates nothing; concurrent Wakes
// before a Wait cost one eventfd write in all.
func (d *epollDispatcher) Wake() error { return d.w.wake() }

// Close closes the epoll instance and the eventfd. A second Close returns
// nil; every other method returns ErrDispatcherClosed after it. Wake may
// race with Close safely. Registered descriptors are not closed: they belong
// to their owners.
func (d *epollDispatcher) Close() error {
	return d.w.close(func() error {
		return os.NewSyscallError("close", unix.Close(d.epfd))
	})
}

// errNoEventSlots is returned by Wait when given an empty events slice.
var errNoEventSlots = errors.New("reactor: Dispatcher.Wait needs a non-empty events slice")

// eventfdWaker is the wake-up of the epoll and poll backends: an eventfd(2)
// that the backend watches for readability, written by Wake and read back
// (drained) by Wait. The backend owns it and embeds it.
//
// Concurrency: wake may run on any goroutine; open, drain and isClosed run
// on the owning loop's goroutine (isClosed on any); close runs once the loop
// has stopped waiting, possibly while another goroutine is in wake.
//
// Many wakes before a Wait cost one write, as the Go runtime's netpollBreak
// does it: pending is set by the one wake that writes, every other wake that
// finds it set returns at once, and drain clears it only after reading the
// counter. The order matters. Clearing before the read could lose a wake-up:
// a wake between the two would see the flag clear and write, the read would
// swallow that write, and the flag, set again, would stop every later wake
// from writing while no write is pending. Clearing after the read means a
// wake that comes between them writes nothing; that is right, because the
// Wait that is draining is about to return, and the loop looks at its task
// queue after Wait returns, so whatever that wake was announcing is seen.
type eventfdWaker struct {
	fd      int         // the eventfd; closed by close under mu
	pending atomic.Bool // an eventfd write is pending that no Wait has drained
	closed  atomic.Bool // set by close, under mu, and never cleared
	// mu serialises wake's write with close, so that the write never goes
	// to a descriptor number that close has released and the process has
	// reused for something else (a socket, say, that would receive the 8
	// bytes). Only the wake that writes takes it, at most once per drain.
	mu  sync.Mutex
	one [8]byte // the counter increment, 1 in native byte order; never changes after open
	buf [8]byte // drain's read buffer; loop goroutine only
}

// open creates the eventfd, non-blocking so that a drain that finds the
// counter already zero cannot block the loop, and close-on-exec.
func (w *eventfdWaker) open() error {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("eventfd", err)
	}
	w.fd = fd
	binary.NativeEndian.PutUint64(w.one[:], 1)
	return nil
}

func (w *eventfdWaker) isClosed() bool { return w.closed.Load() }

// wake adds 1 to the eventfd's counter, unless a write is already pending.
// The write is a raw system call: a non-blocking eventfd write never blocks,
// and it is made from w.one so nothing escapes to the heap per call.
func (w *eventfdWaker) wake() error {
	if w.closed.Load() {
		return ErrDispatcherClosed
	}
	if !w.pending.CompareAndSwap(false, true) {
		return nil // folded into the write that set pending
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return ErrDispatcherClosed
	}
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(w.fd), uintptr(unsafe.Pointer(&w.one[0])), uintptr(len(w.one)))
		switch e {
		case 0, unix.EAGAIN: // EAGAIN: the counter is at its maximum, so readable anyway
			return nil
		case unix.EINTR:
			continue
		}
		w.pending.Store(false) // nothing was written: let the next wake try
		return os.NewSyscallError("write", e)
	}
}

// drain reads the eventfd's counter (resetting it to zero) and then, not
// before (see eventfdWaker), clears pending. Wait calls it when the eventfd
// is reported readable. A read error can only be EAGAIN (the counter was
// already zero), which needs nothing done.
func (w *eventfdWaker) drain() {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(w.fd), uintptr(unsafe.Pointer(&w.buf[0])), uintptr(len(w.buf)))
		if e != unix.EINTR {
			break
		}
	}
	w.pending.Store(false)
}

// close closes the eventfd and then calls closeMore (the backend's own
// descriptors), under mu, once: a second call returns nil. The first error
// is returned, but every descriptor is closed regardless; close is never
// retried (after EINTR the descriptor is already gone on Linux).
func (w *eventfdWaker) close(closeMore func() error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return nil
	}
	w.closed.Store(true)
	err := os.NewSyscallError("close", unix.Close(w.fd))
	if closeMore != nil {
		if err2 := closeMore(); err == nil {
			err = err2
		}
	}
	return err
}
