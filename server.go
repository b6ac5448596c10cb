// This file holds Server (the C design's tcp_server): it binds the listening
// socket, builds the event loops, runs them, and shuts them down without
// losing output. Server methods are safe from any goroutine.

package reactor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/kernel"
)

// Server states.
const (
	stateNew = iota
	stateServing
	stateShuttingDown
	stateClosed
)

// Server is a TCP or Unix domain socket server built on event loops (see
// NewServer for the addresses it takes): a main loop that accepts and
// hands connections to a pool of sub-loops (or, with WithLoops(0), one loop
// that does everything; or, with WithReusePort, loops that each accept for
// themselves). Create it with NewServer, run it with Serve, stop it with
// Shutdown or Close. Every method is safe from any goroutine.
type Server struct {
	group          // configuration, handler, loops (acceptLoop first if separate), counters
	addr  net.Addr // *net.TCPAddr or *net.UnixAddr; never changed once set

	acceptLoop *EventLoop // the main loop, when one loop accepts for all; else nil
	rr         int        // round-robin cursor; owned by acceptLoop

	mu    sync.Mutex // guards state and err
	state int
	err   error // the first loop failure, returned by Serve

	// lnMu is held while a listening descriptor is closed (acceptor.close,
	// on its loop, or in release) or duplicated (ListenerFiles, on any
	// goroutine), so that a number is never duplicated once close(2) has
	// freed it for another file.
	lnMu       sync.Mutex
	handedOver bool // ListenerFiles succeeded; guarded by lnMu
}

// NewServer creates a server for h listening on addr. It binds the socket
// and builds the event loops at once, so errors such as EADDRINUSE surface
// here; it starts no goroutine until Serve.
//
// addr is one of:
//
//   - "host:port", TCP: host is an IP address, "localhost" or empty (every
//     local address); ":0" picks a free port (see Addr). Listening resolves
//     no names.
//   - "unix:/path/to.sock", a Unix domain socket bound to that file (a
//     relative path is relative to the working directory). The file is
//     created with the permissions 0777 masked by the process's umask, so
//     set the umask (syscall.Umask) before NewServer, or better put the
//     socket in a directory only the intended clients can enter. A socket
//     file left by a process that died is replaced; a path where a server is
//     still listening fails with EADDRINUSE (see below). Shutdown and Close
//     remove the file, unless it has been replaced by another one since.
//   - "unix:@name", a Unix domain socket in Linux's abstract namespace: no
//     file, no permissions (any process in the same network namespace may
//     connect), and the name vanishes with the server.
//   - "", with WithListener: serve a listening socket opened elsewhere.
//
// A Unix path that is taken is tested by connecting to it: if that is
// refused, the file is a leftover of a dead process, and it is removed and
// bound again; otherwise the live server there gets a connection that opens
// and closes at once, and NewServer fails with an error wrapping
// syscall.EADDRINUSE. A file that is not a socket is never removed.
func NewServer(addr string, h Handler, opts ...Option) (*Server, error) {
	s := &Server{}
	if err := s.init("NewServer", h, opts, ErrServerClosed); err != nil {
		return nil, err
	}
	if err := s.cfg.validateServer(); err != nil {
		return nil, err
	}
	if len(s.cfg.listeners) > 0 && addr != "" {
		return nil, fmt.Errorf("reactor: NewServer(%q) with WithListener: pass \"\" as the address, the listener has one", addr)
	}
	if err := s.build(addr); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// build creates the loops and the listening sockets.
func (s *Server) build(addr string) error {
	nIO := s.cfg.loops
	switch {
	case s.cfg.reusePort && len(s.cfg.listeners) > 0:
		nIO = len(s.cfg.listeners) // one loop per inherited socket
	case s.cfg.reusePort:
		nIO = max(nIO, 1)
	case nIO == 0:
		nIO = 1 // single reactor: the one loop accepts and serves
	default:
		l, err := s.newLoop("main")
		if err != nil {
			return err
		}
		s.acceptLoop = l
	}
	for i := range nIO {
		l, err := s.newLoop(fmt.Sprintf("%d", i))
		if err != nil {
			return err
		}
		s.loops = append(s.loops, l)
	}
	if s.acceptLoop == nil && !s.cfg.reusePort {
		s.acceptLoop = s.loops[0]
	} else if s.acceptLoop != nil {
		s.acceptLoop.waitSubs = len(s.loops)
	}

	listenOn := s.loops
	if !s.cfg.reusePort {
		listenOn = []*EventLoop{s.acceptLoop}
	}
	network, address := splitAddr(addr)
	if network == "unix" && s.cfg.reusePort {
		return fmt.Errorf("reactor: WithReusePort with %q: a Unix socket path takes one listener", addr)
	}
	for i, l := range listenOn {
		if i > 0 {
			// Every SO_REUSEPORT socket binds the port the first one got,
			// so ":0" works with WithReusePort too.
			address = s.addr.String()
		}
		var ln net.Listener // nil: bind address
		if len(s.cfg.listeners) > 0 {
			ln = s.cfg.listeners[i]
		}
		a, err := s.listen(l, ln, network, address)
		if err != nil {
			return err
		}
		s.acceptors = append(s.acceptors, a)
		if s.addr == nil {
			s.addr = a.addr
		}
		if err := a.start(); err != nil {
			return err
		}
	}
	return nil
}

// splitAddr tells NewServer's Unix addresses ("unix:/path", "unix:@name")
// from TCP ones ("host:port").
func splitAddr(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", path
	}
	return "tcp", addr
}

// listen opens the listening socket for loop l: a duplicate of ln's (given
// by WithListener or WithListeners), or, if ln is nil, a new one on network
// and address. Before the loops run.
func (s *Server) listen(l *EventLoop, ln net.Listener, network, address string) (*acceptor, error) {
	var fd int
	var sa unix.Sockaddr
	var err error
	if ln != nil {
		fd, sa, err = dupListener(s.k, ln)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: ln.Addr().Network(), Addr: ln.Addr(), Err: err}
		}
	} else {
		fd, sa, err = s.k.Listen(network, address, s.cfg.reusePort, s.cfg.backlog)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Addr: listenAddrOrNil(network, address), Err: err}
		}
	}
	a := newAcceptor(l, s, fd)
	a.addr = sockaddrToNetAddr(sa)
	if ua, ok := a.addr.(*net.UnixAddr); ok {
		a.ch.unix = true
		if ln == nil {
			// The file bind(2) just created: this server removes it when
			// it closes, if it is still that file then.
			if f, ok := kernel.StatSocketFile(ua.Name); ok {
				a.file = &f
			}
		}
	}
	return a, nil
}

// dupListener takes a descriptor of its own for the listening socket of ln
// (see WithListener). rc.Control holds ln's descriptor open while it runs,
// so a concurrent ln.Close cannot hand the number to another file midway.
func dupListener(k kernel.Interface, ln net.Listener) (fd int, sa unix.Sockaddr, err error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1, nil, fmt.Errorf("reactor: WithListener: %T has no descriptor (want a *net.TCPListener or *net.UnixListener)", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, nil, err
	}
	fd = -1
	cerr := rc.Control(func(lfd uintptr) { fd, sa, err = k.DupListener(int(lfd)) })
	if cerr != nil {
		return -1, nil, cerr // ln is closed: Control did not run
	}
	return fd, sa, err
}

func (s *Server) newLoop(name string) (*EventLoop, error) {
	l, err := s.group.newLoop(name)
	if err != nil {
		return nil, err
	}
	l.srv = s
	return l, nil
}

// listenAddrOrNil is the address a failed listen reports: the Unix path or
// name, or the TCP address if it parses.
func listenAddrOrNil(network, addr string) net.Addr {
	if network == "unix" {
		return &net.UnixAddr{Name: addr, Net: "unix"}
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return nil
}

// Addr returns the address the server listens on: a *net.TCPAddr, with the
// port the kernel chose if addr had port 0, or a *net.UnixAddr for a Unix
// domain socket (Name "@name" for an abstract one). Each call returns a new
// value: the caller may change it.
func (s *Server) Addr() net.Addr { return cloneAddr(s.addr) }

// cloneAddr returns a copy of a that shares no memory with it.
func cloneAddr(a net.Addr) net.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		c := *a
		c.IP = slices.Clone(a.IP)
		return &c
	case *net.UnixAddr:
		c := *a
		return &c
	}
	return a
}

// Serve runs the event loops and blocks until the server is shut down, then
// returns ErrServerClosed. If an event loop fails (its Dispatcher returns an
// error), Serve closes the server and returns that error. Serve may be called
// once: a call while it runs returns ErrServerRunning, and calls after
// Shutdown or Close return ErrServerClosed.
func (s *Server) Serve() error {
	s.mu.Lock()
	switch s.state {
	case stateNew:
	case stateServing:
		s.mu.Unlock()
		return ErrServerRunning
	default:
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.state = stateServing
	s.wg.Add(len(s.allLoops))
	s.mu.Unlock()

	for _, l := range s.allLoops {
		go s.runLoop(l, s.loopFailed)
	}
	s.wg.Wait()
	close(s.done)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = stateClosed
	if s.err != nil {
		return s.err
	}
	return ErrServerClosed
}

// Shutdown stops the server gracefully: it stops accepting, stops reading
// from every connection, flushes every byte already accepted by Write,
// closes each connection (OnClose runs with a nil error), stops the loops
// and returns once every goroutine Serve started has exited. If ctx ends
// first, Shutdown closes what is left at once (as Close does) and returns
// ctx.Err(). Calling it again, or after Close, waits for the same end.
//
// A connection not yet open — its PROXY header (WithProxyProtocol) or TLS
// handshake under way — closes at once if its peer has sent nothing; one
// whose peer has (a header, a ClientHello, a first request queued behind
// them) goes on, within its header or handshake timeout, opens, and is
// then drained as the others are, so that what it was sent is answered.
//
// Called from a Handler callback, a task or a timer (on one of the
// server's event loops, which cannot be waited for from there), Shutdown
// begins the shutdown and returns ErrInLoop at once; Serve returns when it
// is done.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.beginStop(false) {
		return nil
	}
	return s.finishStop(ctx, s.stopAll)
}

// Close stops the server at once: it closes the listeners and every
// connection without flushing (OnClose receives an error wrapping
// ErrServerClosed where output was lost), stops the loops and waits for
// their goroutines to exit. Called on one of the server's event loops (from
// a callback, a task or a timer), it begins the close and returns ErrInLoop
// at once, since it cannot wait there for the loop it runs on.
func (s *Server) Close() error {
	if !s.beginStop(true) {
		return nil
	}
	return s.finishStop(context.Background(), s.stopAll)
}

// loopFailed ends the server when one of its loops has failed: Serve
// returns err.
func (s *Server) loopFailed(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.stopAll(true)
}

// beginStop moves the server towards closed. It returns false if the loops
// never ran (everything is released already), true if the caller must wait
// for them.
func (s *Server) beginStop(hard bool) bool {
	s.mu.Lock()
	switch s.state {
	case stateNew:
		s.state = stateClosed
		s.mu.Unlock()
		s.release()
		close(s.done)
		return false
	case stateClosed:
		s.mu.Unlock()
		return true // wait for the loops of a Serve that is finishing
	case stateShuttingDown:
		s.mu.Unlock()
		if hard {
			s.stopAll(true)
		}
		return true
	}
	s.state = stateShuttingDown
	s.mu.Unlock()
	if !hard {
		s.warnReusePortDrain()
	}
	s.stopAll(hard)
	return true
}

// stopAll tells every loop to stop: gracefully (drain each connection's
// output, then close it, then stop) or hard (close everything now). The
// acceptor's loop goes first and forwards the order to the other loops from
// its own goroutine, so every connection it handed to a loop before closing
// its listener reaches that loop before the order does: none is lost in
// between. If the acceptor's loop has already stopped (its Dispatcher
// failed), nothing can be handed over any more, and the order goes to the
// other loops directly.
func (s *Server) stopAll(hard bool) {
	order := func(l *EventLoop) {
		// A loop that has stopped already has closed its connections.
		if hard {
			_ = l.Submit(l.stopHard)
		} else {
			_ = l.Submit(l.beginDrain)
		}
	}
	if s.acceptLoop == nil {
		for _, l := range s.loops {
			order(l)
		}
		return
	}
	forward := func() {
		for _, a := range s.acceptors {
			a.close()
		}
		for _, l := range s.loops {
			if l != s.acceptLoop {
				order(l)
			}
		}
		if hard {
			s.acceptLoop.stopHard()
		} else {
			s.acceptLoop.beginDrain()
		}
	}
	if err := s.acceptLoop.Submit(forward); err != nil {
		for _, l := range s.loops {
			if l != s.acceptLoop {
				order(l)
			}
		}
	}
}

// beginDrain starts a graceful stop of l: its dials in progress fail (with
// ErrServerClosed or ErrClientClosed), its acceptor closes, every
// connection is drained (see Conn.drain), and the loop returns from Run when
// the last one has closed. A handler that panics in OnShutdown ends only its
// own connection; the others are still drained. Loop goroutine.
func (l *EventLoop) beginDrain() {
	l.draining = true
	l.failDials(l.closedErr())
	l.channels.each(func(h eventHandler) {
		switch h := h.(type) {
		case *acceptor:
			h.close()
		case *Conn:
			l.guard(h.drain)
		}
	})
}

// stopHard closes every connection of l now and stops it. Loop goroutine.
func (l *EventLoop) stopHard() {
	l.draining = true
	l.stop()
}

// drain starts the graceful end of a connection: a ShutdownHandler is told
// and decides when to close; otherwise the connection stops reading and
// closes once its output is flushed. A connection already lingering has
// nothing to add. Loop goroutine.
func (c *Conn) drain() {
	if c.state == connHandshake {
		// Not open yet. One whose peer has said something goes on with
		// its PROXY header or TLS handshake (bounded by their timeouts),
		// opens, and then drains like the others (see ready): its first
		// request is not lost. One whose peer has said nothing closes
		// now; it has nothing to lose.
		if !c.prefaceHasInput() {
			c.closeNow(c.loop.closedErr())
		}
		return
	}
	if c.state != connOpen {
		return
	}
	c.drained = true
	l := c.loop
	if sh, ok := c.h.(ShutdownHandler); ok {
		if !c.notified {
			c.notified = true
			if l.tracing {
				l.trace("OnShutdown fd=%d", c.ch.fd)
			}
			l.current = c
			sh.OnShutdown(c)
			l.current = nil
		}
		return
	}
	c.stopRead = true
	c.requestClose()
	c.updateInterest()
}

// accepted takes a new connection from an acceptor on loop from: it applies
// the connection limit and the socket options and hands the connection to a
// loop. Loop goroutine of from.
func (s *Server) accepted(from *EventLoop, fd int, peer netip.AddrPort, unixSock bool) {
	s.stats.accepted.Add(1)
	if !s.takeSlot() {
		_ = s.k.Close(fd) // rejected: never registered
		if n := s.stats.rejected.Add(1); n&(n-1) == 0 {
			// Logged at 1, 2, 4, 8, ... rejections: visible, not a flood.
			s.log.Warn("reactor: connection limit reached; rejecting", "max", s.cfg.maxConns, "rejected", n)
		}
		return
	}
	if !unixSock {
		s.setSockopts(fd) // TCP options; a Unix socket has none of them
	}
	l := from
	if s.acceptLoop != nil && len(s.loops) > 1 {
		l = s.pick(peer)
	} else if s.acceptLoop != nil {
		l = s.loops[0]
	}
	l.numConns.Add(1)
	c := newConn(l, fd, peer, s.handler)
	c.ch.unix = unixSock
	if l == from {
		c.register()
	} else if !l.adopt(c) {
		// The loop has stopped (its Dispatcher failed, or the server is
		// closing): the connection never opened.
		l.numConns.Add(-1)
		_ = s.k.Close(fd)
		s.connGone()
	}
}

// takeSlot counts one more open connection, unless WithMaxConns forbids it.
// With WithReusePort several loops accept at once; the compare-and-swap
// keeps two of them from both taking the last slot (a load, then an add,
// would let the limit be passed by up to one connection per loop).
func (s *Server) takeSlot() bool {
	limit := int64(s.cfg.maxConns)
	for {
		open := s.stats.open.Load()
		if limit > 0 && open >= limit {
			return false
		}
		if s.stats.open.CompareAndSwap(open, open+1) {
			return true
		}
	}
}

// serverStats are the server-wide counters, touched once per connection (not
// per message), so atomics are cheap enough.
type serverStats struct {
	open         atomic.Int64
	accepted     atomic.Int64
	rejected     atomic.Int64
	acceptErrors atomic.Int64
	fdExhausted  atomic.Int64
	dialed       atomic.Int64
	dialErrors   atomic.Int64
}
