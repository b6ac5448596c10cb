// This file holds the readiness-notification contract (the C design's
// event_dispatcher): the Dispatcher interface that the event loop calls, the
// Events it reports, and the choice of backend. The backends themselves live
// in sibling files (dispatcher_epoll_linux.go, dispatcher_poll_linux.go,
// dispatcher_mock.go). Nothing here is owned by a goroutine; each Dispatcher
// value is owned by the one EventLoop that created it.

package reactor

import (
	"errors"
	"time"
)

// Events is a set of readiness conditions on a descriptor.
type Events uint32

const (
	// EventRead means the descriptor is readable, or that the peer closed
	// the connection or an error is pending on it: a read tells which.
	EventRead Events = 1 << iota
	// EventWrite means the descriptor is writable. It is also reported,
	// together with EventRead, when the connection has failed, so that a
	// connection waiting only to write learns of the failure.
	EventWrite
)

// String returns "R", "W", "RW" or "-", for logs and traces.
func (e Events) String() string {
	switch e & (EventRead | EventWrite) {
	case EventRead:
		return "R"
	case EventWrite:
		return "W"
	case EventRead | EventWrite:
		return "RW"
	}
	return "-"
}

// Event is one descriptor's readiness as reported by Dispatcher.Wait.
type Event struct {
	FD     int
	Events Events
}

// ErrDispatcherClosed is returned by every Dispatcher method called after
// Close (Close itself returns nil when repeated).
var ErrDispatcherClosed = errors.New("reactor: dispatcher closed")

// Dispatcher is a readiness-notification backend: epoll, poll(2), or the
// deterministic mock. An EventLoop owns exactly one Dispatcher and calls Add,
// Modify, Delete and Wait from its own goroutine only; Wake may be called from
// any goroutine, and Close once the loop has stopped waiting.
//
// The contract every implementation keeps (the contract tests in
// dispatcher_contract_test.go run it against each one):
//
//   - Readiness is level-triggered: a descriptor is reported by every Wait
//     for as long as the condition holds and the interest is registered.
//   - Add registers a descriptor that is not yet registered (otherwise it
//     returns an error); Modify replaces the interest set of a registered
//     one; Delete forgets it. Interest 0 is allowed and reports nothing but
//     failures. After Delete returns, no Wait reports the descriptor.
//   - The peer closing the connection, or an error on the socket, is
//     reported as EventRead (and, for a socket that can no longer be written,
//     also EventWrite) even if only EventWrite was asked for: the caller
//     learns which by reading or writing.
//   - Wait fills events from the front and returns how many it filled. It
//     blocks until at least one descriptor is ready, Wake is called, or the
//     timeout passes; a negative timeout blocks without limit, zero polls.
//     On timeout or on a wake-up with nothing ready it returns 0 and a nil
//     error. Interruptions by signals (EINTR) are retried inside Wait and
//     never reach the caller. If more descriptors are ready than len(events),
//     the rest are reported by the next Wait.
//   - Wake makes one blocked Wait return, or the next Wait return at once if
//     none is blocked. Many Wakes before that Wait cost as much as one.
//   - A descriptor must be deleted before it is closed. One closed while
//     still registered is dropped silently by epoll and reported as ready by
//     poll; the event loop never does this.
//   - Close releases everything the Dispatcher holds; it may be called more
//     than once. Every other method returns ErrDispatcherClosed after it.
//
// A Dispatcher may wrap another (to count events, say). A wrapper should
// implement
//
//	Unwrap() Dispatcher
//
// returning the one it wraps, as errors do: the event loop looks through it
// to learn which kernel the descriptors belong to. A wrapper of a Sim's
// Dispatcher must do so; without it NewServer fails with an error saying
// this, since the loop would make real system calls on simulated
// descriptors.
type Dispatcher interface {
	Add(fd int, ev Events) error
	Modify(fd int, ev Events) error
	Delete(fd int) error
	Wait(events []Event, timeout time.Duration) (n int, err error)
	Wake() error
	Close() error
}

// DispatcherFactory creates a Dispatcher. A Server calls it once for every
// event loop it runs, so each loop has its own.
type DispatcherFactory func() (Dispatcher, error)
