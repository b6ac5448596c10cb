// This file holds what a server needs to be replaced by a new process
// without refusing or resetting a connection: handing its listening sockets
// over (ListenerFiles), and telling the operator when the other way, a new
// process binding the same port with SO_REUSEPORT, cannot drain the old one
// without loss. The recipe that uses them is in the README ("Zero-downtime
// restarts") and in examples/internal/restart.

package reactor

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/tcpreactor/reactor/internal/kernel"
)

// ListenerFiles returns the server's listening sockets as files, for
// handing them to the process that replaces this one: one file, or one per
// loop with WithReusePort, in loop order. Each is a new descriptor
// (F_DUPFD_CLOEXEC) for the same socket, which the caller owns and must
// close; the server keeps serving its own. Pass them in exec.Cmd's
// ExtraFiles (exec clears close-on-exec on the child's copies only), and
// serve them in the child with WithListener, or with WithReusePort and
// WithListeners when there are several:
//
//	files, err := srv.ListenerFiles()
//	cmd := exec.Command(exe, args...)
//	cmd.ExtraFiles = files // descriptors 3, 4, ... in the child
//	err = cmd.Start()
//	for _, f := range files {
//		f.Close() // the child has its own
//	}
//	// once the child serves (it says so, e.g. over a pipe):
//	srv.Shutdown(ctx)
//
// The socket and its queue of pending connections belong to every process
// holding a descriptor for it: while both serve, each new connection goes
// to whichever accepts first, and once Shutdown has closed this server's
// descriptor the child takes every connection, including those already
// queued. None is refused or reset.
//
// The files are non-blocking, as the server's descriptors are (the two
// share the flag), and stay so: (*os.File).Fd, which exec.Cmd calls, leaves
// a file from ListenerFiles as it is, where on a file from
// (*net.TCPListener).File it switches the shared socket to blocking mode,
// and the server's next accept would then block its event loop.
//
// Once ListenerFiles has succeeded, Shutdown and Close leave in place the
// Unix socket file the server created, since another process may now be
// serving the socket at that path (NewServer replaces a socket file nobody
// listens on, should it be left behind), and a graceful Shutdown of a
// WithReusePort server no longer warns about its drain (the sockets live
// on, so closing this server's descriptors resets nothing).
//
// ListenerFiles returns ErrServerClosed once Shutdown or Close has begun,
// and an error wrapping errors.ErrUnsupported over the simulation, whose
// sockets are not the kernel's. It is safe from any goroutine.
func (s *Server) ListenerFiles() ([]*os.File, error) {
	if _, ok := s.k.(kernel.OS); !ok {
		return nil, fmt.Errorf("reactor: ListenerFiles: the simulation's listeners are not real sockets: %w", errors.ErrUnsupported)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew && s.state != stateServing {
		return nil, ErrServerClosed
	}
	// A loop whose Dispatcher failed closes its acceptor while the state is
	// still stateServing: lnMu and fdClosed keep a descriptor number from
	// being duplicated after close(2) has freed it for another file.
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	files := make([]*os.File, 0, len(s.acceptors))
	fail := func(err error) ([]*os.File, error) {
		for _, f := range files {
			_ = f.Close() // already failing; err says why
		}
		return nil, err
	}
	for _, a := range s.acceptors {
		if a.fdClosed {
			return fail(ErrServerClosed)
		}
		fd, _, err := s.k.DupListener(a.ch.fd)
		if err != nil {
			return fail(fmt.Errorf("reactor: ListenerFiles: %w", err))
		}
		// os.NewFile sees O_NONBLOCK and so never clears it (see above).
		files = append(files, os.NewFile(uintptr(fd), "listener:"+a.addr.String()+":"+strconv.Itoa(fd)))
	}
	s.handedOver = true
	return files, nil
}

// warnReusePortDrain logs, when a graceful Shutdown begins, that closing
// this server's SO_REUSEPORT listeners will reset the connections still
// queued in them, if the kernel will not pass them to another listener of
// the port (see kernel.ReusePortMigrates). Another process bound beside
// this one with SO_REUSEPORT to take over from it loses those connections;
// the message says what would prevent that. Nothing is logged for a server
// without WithReusePort (its listener's queue dies with it, or lives on in
// the process it was handed to), after ListenerFiles, or over the
// simulation.
func (s *Server) warnReusePortDrain() {
	if !s.cfg.reusePort {
		return
	}
	if _, ok := s.k.(kernel.OS); !ok {
		return
	}
	s.lnMu.Lock()
	handedOver := s.handedOver
	s.lnMu.Unlock()
	if handedOver {
		return
	}
	on, err := kernel.ReusePortMigrates()
	if on {
		return
	}
	msg := "reactor: closing SO_REUSEPORT listeners resets the connections still queued in them, instead of passing them to another listener on the port; for a lossless drain set net.ipv4.tcp_migrate_req=1 (Linux 5.14 or later)"
	if err != nil {
		s.log.Warn(msg, "addr", s.addr, "err", err)
		return
	}
	s.log.Warn(msg, "addr", s.addr, "tcp_migrate_req", 0)
}
