// This file holds channelMap (the C design's channel_map): the table an event
// loop uses to find what handles a descriptor that Dispatcher.Wait reported.
// It is owned by one EventLoop and touched only on its goroutine.

package reactor

// channelMap maps a descriptor to the object whose channel it is (a Conn or
// an acceptor) in O(1): a slice indexed by fd. It holds the object itself,
// as an eventHandler, rather than a pointer to its channel, so a readiness
// event costs one load from the table before the call, not two.
// Descriptors are small integers that the kernel hands out lowest-first, so
// the slice stays as long as the highest descriptor the loop has seen; it
// grows by doubling and never shrinks (a few bytes per descriptor).
//
// Deleting stores nil, so a stale readiness event for a descriptor that was
// closed during the same loop iteration finds nothing and is dropped, even if
// the kernel has already given the number to a new connection on another
// loop.
type channelMap struct {
	chans []eventHandler
}

// get returns the handler registered for fd, or nil.
func (m *channelMap) get(fd int) eventHandler {
	if uint(fd) < uint(len(m.chans)) {
		return m.chans[fd]
	}
	return nil
}

// set registers h under fd, growing the table when fd is beyond it. It
// replaces nothing: the caller deletes the old entry first.
func (m *channelMap) set(fd int, h eventHandler) {
	if fd >= len(m.chans) {
		size := max(2*len(m.chans), 64)
		for size <= fd {
			size *= 2
		}
		grown := make([]eventHandler, size)
		copy(grown, m.chans)
		m.chans = grown
	}
	m.chans[fd] = h
}

// del forgets fd. Deleting an absent descriptor is a no-op.
func (m *channelMap) del(fd int) {
	if uint(fd) < uint(len(m.chans)) {
		m.chans[fd] = nil
	}
}

// each calls fn for every registered handler in descriptor order. The order
// matters: it keeps runs over the simulation deterministic, which map
// iteration would not. fn may delete entries, including the current one.
func (m *channelMap) each(fn func(eventHandler)) {
	for fd := 0; fd < len(m.chans); fd++ {
		if h := m.chans[fd]; h != nil {
			fn(h)
		}
	}
}
