// This file holds the acceptor (the C design's acceptor): a listening
// socket's channel, which accepts new connections and hands each to the loop
// the balancer picks. An acceptor is owned by the loop it is registered on.

package reactor

import (
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/kernel"
)

const (
	// acceptBatch bounds the connections taken per readiness event, so a
	// flood of connects cannot starve the other channels of a single-reactor
	// loop; level-triggered readiness reports the listener again.
	acceptBatch = 256
	// When the process runs out of descriptors, accepting pauses for a
	// back-off that doubles from acceptBackoffMin to acceptBackoffMax (or
	// until a connection closes and frees one).
	acceptBackoffMin = 10 * time.Millisecond
	acceptBackoffMax = time.Second
)

// acceptor owns one listening descriptor.
type acceptor struct {
	ch   channel
	loop *EventLoop
	srv  *Server
	addr net.Addr           // the bound address (*net.TCPAddr or *net.UnixAddr)
	file *kernel.SocketFile // the Unix socket file bind created, removed on close; nil if none

	// Owned by the loop goroutine.
	closed    bool
	paused    bool          // accepting paused after EMFILE/ENFILE
	episode   bool          // inside a descriptor-exhaustion episode (logged once)
	backoff   time.Duration // next pause length
	retry     *Timer        // resumes accepting after the back-off
	pausedNow atomic.Bool   // mirrors paused, for Server.connGone on other goroutines
	fdClosed  bool          // the descriptor is closed; guarded by srv.lnMu (see Server.ListenerFiles)
}

func newAcceptor(l *EventLoop, s *Server, fd int) *acceptor {
	a := &acceptor{loop: l, srv: s, backoff: acceptBackoffMin}
	a.ch = channel{fd: fd}
	return a
}

// start registers the listening socket with the loop. Loop goroutine (or
// before the loop runs).
func (a *acceptor) start() error {
	if err := a.loop.d.Add(a.ch.fd, EventRead); err != nil {
		return err
	}
	a.ch.interest = EventRead
	a.loop.channels.set(a.ch.fd, a)
	a.loop.hasAccept = true
	return nil
}

// handleEvent accepts until the backlog is empty (EAGAIN) or the batch is
// done.
func (a *acceptor) handleEvent(Events) {
	k := a.loop.k
	for range acceptBatch {
		if a.closed || a.paused {
			return
		}
		fd, peer, err := k.Accept(a.ch.fd)
		switch err {
		case nil:
			if a.episode {
				a.episode = false
				a.backoff = acceptBackoffMin
				a.loop.log.Info("reactor: accepting again", "addr", a.srv.Addr())
			}
			a.srv.accepted(a.loop, fd, peer, a.ch.unix)
		case unix.EAGAIN:
			return
		case unix.EINTR, unix.ECONNABORTED, unix.EPERM, unix.EPROTO,
			unix.ENETDOWN, unix.ENONET, unix.EHOSTDOWN, unix.EHOSTUNREACH,
			unix.ENETUNREACH, unix.ENOPROTOOPT, unix.EOPNOTSUPP:
			// A signal, or a failure of that one connection: the peer gave
			// up, a firewall rule refused it (EPERM), or a network error
			// that Linux passes on from the new socket, which accept(2)
			// says to treat like EAGAIN. Go on with the next one.
			if err != unix.EINTR && err != unix.ECONNABORTED {
				a.srv.stats.acceptErrors.Add(1)
				a.loop.log.Debug("reactor: accept: connection failed", "addr", a.srv.Addr(), "err", err)
			}
		case unix.EMFILE, unix.ENFILE:
			a.srv.stats.fdExhausted.Add(1)
			a.pause(err, "out of file descriptors")
			return
		default:
			// ENOBUFS, ENOMEM (the kernel short of memory) and anything
			// unknown. The listener is fine, but a shortage does not end
			// within one iteration: retrying at once would spin the loop
			// and log a line per iteration. Back off as for descriptor
			// exhaustion.
			a.srv.stats.acceptErrors.Add(1)
			a.pause(err, "accept failing")
			return
		}
	}
}

// pause stops accepting after a failure that retrying at once would only
// repeat: descriptor exhaustion (EMFILE, ENFILE) or a shortage of kernel
// memory (ENOBUFS, ENOMEM). With level-triggered readiness a non-empty listen
// queue would otherwise report the listener as readable on every iteration
// and spin the loop at 100 % CPU. The pending connections stay in the
// kernel's queue; accepting resumes after a back-off, or earlier when one of
// the server's connections closes. An episode is logged once, when it
// begins, and once when accepting works again.
func (a *acceptor) pause(err error, what string) {
	if !a.episode {
		a.episode = true
		a.loop.log.Warn("reactor: "+what+"; pausing accept",
			"addr", a.srv.Addr(), "err", err, "open", a.srv.stats.open.Load())
	}
	a.paused = true
	a.pausedNow.Store(true)
	a.setInterest(0)
	a.retry = a.loop.AfterFunc(a.backoff, a.resume)
	a.backoff = min(2*a.backoff, acceptBackoffMax)
}

// resume re-enables accepting. Loop goroutine.
func (a *acceptor) resume() {
	if !a.paused || a.closed {
		return
	}
	if a.retry != nil {
		a.retry.Stop()
		a.retry = nil
	}
	a.paused = false
	a.pausedNow.Store(false)
	a.setInterest(EventRead)
}

func (a *acceptor) setInterest(ev Events) {
	if err := a.loop.d.Modify(a.ch.fd, ev); err != nil {
		a.loop.log.Error("reactor: listener interest", "addr", a.srv.Addr(), "err", err)
		return
	}
	a.ch.interest = ev
}

// close stops accepting for good and closes the listening socket.
// Connections still in the kernel's listen queue are reset by the kernel,
// unless the socket lives on in another process (the listener was
// inherited, or handed over with Server.ListenerFiles), which then accepts
// them, or, for a SO_REUSEPORT socket, net.ipv4.tcp_migrate_req passes them
// to another listener on the port (see Server.warnReusePortDrain).
// The Unix socket file the server created is removed first (as package net
// does), so that a client finds no file rather than a dead one, and only
// if it is still that file, since another server may have replaced it:
// first also because the open socket holds the file's inode, which keeps
// that check sound (see kernel.RemoveSocketFile). It is left in place once
// the socket has been handed over: the process it went to serves that path.
// Loop goroutine; repeated calls are no-ops.
func (a *acceptor) close() {
	if a.closed {
		return
	}
	a.closed = true
	if a.retry != nil {
		a.retry.Stop()
		a.retry = nil
	}
	l := a.loop
	s := a.srv
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if f := a.file; f != nil && !s.handedOver {
		if err := kernel.RemoveSocketFile(*f); err != nil {
			l.log.Warn("reactor: removing the socket file", "addr", a.addr, "err", err)
		}
	}
	if l.channels.get(a.ch.fd) == eventHandler(a) {
		_ = l.d.Delete(a.ch.fd) // the descriptor is closed next either way
		l.channels.del(a.ch.fd)
	}
	_ = l.k.Close(a.ch.fd) // a listener has no unflushed state to lose
	a.fdClosed = true
	l.hasAccept = false // a loop has at most one acceptor
}
