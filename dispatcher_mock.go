// This file holds the deterministic mock backend: mockDispatcher, the
// Dispatcher that adapts one virtual epoll instance (internal/sim's Poller)
// to the Dispatcher contract. Sim (sim.go) is the simulated network users
// build it from; the simulation itself, sockets, clock, faults and
// scheduler, lives in internal/sim.

package reactor

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/kernel"
	"github.com/tcpreactor/reactor/internal/sim"
)

// internal/sim cannot import this package (this package's tests import
// it), so it has its own readiness bits. They must equal ours, so that
// converting is a plain conversion; this fails to compile if they drift.
func _() {
	var x [1]struct{}
	_ = x[sim.Read^uint32(EventRead)]
	_ = x[sim.Write^uint32(EventWrite)]
}

// mockDispatcher is the Dispatcher of the mock backend: a thin adapter
// over one sim.Poller that converts events and errors. Like every
// Dispatcher it is owned by one EventLoop; Wake and Close are safe from any
// goroutine (the Poller's mutex guards them).
type mockDispatcher struct {
	k   *sim.Kernel
	p   *sim.Poller
	buf []sim.Ready // Wait's scratch, as long as the longest events slice seen; owned by the loop
}

var _ Dispatcher = (*mockDispatcher)(nil)

// newMockDispatcher creates a poller on k. k may be free-running (the
// contract tests) or stepped (Sim).
func newMockDispatcher(k *sim.Kernel) (*mockDispatcher, error) {
	p, err := k.NewPoller()
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	return &mockDispatcher{k: k, p: p}, nil
}

// kernel returns the simulated kernel whose descriptors this dispatcher
// watches: a Server over the mock must make its socket calls there.
func (d *mockDispatcher) kernel() kernel.Interface { return d.k }

// simKernel returns the same kernel with its simulation controls, for a
// Server that must drive the simulation while it waits (Shutdown, Close).
func (d *mockDispatcher) simKernel() *sim.Kernel { return d.k }

// The mock stands in for epoll, so its errors name epoll's calls, wrapped
// as the epoll backend wraps them; ErrDispatcherClosed after Close.
func (d *mockDispatcher) wrap(call string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sim.ErrPollerClosed) {
		return ErrDispatcherClosed
	}
	return os.NewSyscallError(call, err)
}

// Add registers fd for ev. A descriptor the simulation does not know is
// almost always a real one: the event loop took the real kernel for its
// socket calls because a wrapper hid this dispatcher from it. The error
// says so.
func (d *mockDispatcher) Add(fd int, ev Events) error {
	err := d.p.Add(fd, uint32(ev))
	if errors.Is(err, unix.EBADF) {
		return fmt.Errorf("reactor: descriptor %d is not one of the simulation's: "+
			"a Dispatcher that wraps a Sim's must implement Unwrap() Dispatcher, "+
			"or its event loop makes real system calls: %w", fd, d.wrap("epoll_ctl", err))
	}
	return d.wrap("epoll_ctl", err)
}

// Modify replaces fd's interest set.
func (d *mockDispatcher) Modify(fd int, ev Events) error {
	return d.wrap("epoll_ctl", d.p.Modify(fd, uint32(ev)))
}

// Delete forgets fd.
func (d *mockDispatcher) Delete(fd int) error {
	return d.wrap("epoll_ctl", d.p.Delete(fd))
}

// Wait waits for readiness as sim.Poller.Wait does: in virtual time, and
// over a Sim only when the simulation gives this loop its turn. It
// allocates only when events is longer than any slice it was given before.
func (d *mockDispatcher) Wait(events []Event, timeout time.Duration) (int, error) {
	if cap(d.buf) < len(events) {
		d.buf = make([]sim.Ready, len(events))
	}
	buf := d.buf[:len(events)]
	n, err := d.p.Wait(buf, timeout)
	for i, r := range buf[:n] {
		events[i] = Event{FD: r.FD, Events: Events(r.Events)}
	}
	return n, d.wrap("epoll_wait", err)
}

// Wake makes the loop's Wait return; over a Sim, it gives the loop work
// for its next turn. Safe from any goroutine.
func (d *mockDispatcher) Wake() error {
	return d.wrap("write", d.p.Wake())
}

// Close releases the poller. Over a Sim, a loop that closes its dispatcher
// ends its turn. Repeated calls return nil.
func (d *mockDispatcher) Close() error {
	return d.wrap("close", d.p.Close())
}

// runUntil drives a stepped simulation until done holds or cancel is
// closed (then it returns false). A Server waiting for its loops in
// Shutdown or Close calls it: over a stepped simulation the loops only run
// when driven. While nothing else can happen it lets virtual time pass up
// to horizon, as real time passes while a real server waits (the linger of
// a connection whose peer never closes ends by its timeout). Over a
// free-running kernel there is nothing to drive.
func (d *mockDispatcher) runUntil(done func() bool, cancel <-chan struct{}, horizon time.Duration) bool {
	if !d.k.Stepped() {
		return true
	}
	return d.k.RunUntilAt(done, cancel, horizon)
}
