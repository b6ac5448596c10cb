// This file holds Conn (the C design's tcp_connection): one accepted TCP
// connection, its input and output buffers and its life from OnOpen to
// OnClose. A Conn is owned by the event loop it was registered on; Write,
// Close, CloseWrite, Buffered, LocalAddr and RemoteAddr are safe from any
// goroutine and reach the loop through the loop's flush queue.

package reactor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Handler receives one connection's events, always on that connection's
// loop goroutine and never two at once for the same connection.
//
//   - OnOpen runs once, when the connection is registered.
//   - OnMessage runs when bytes arrive. in holds every byte not yet consumed;
//     consume what you use (Next, Discard, Read) and leave the rest, which
//     is handed to the next OnMessage together with newer bytes. in is valid
//     only during the call.
//   - OnWriteComplete runs when a flush has emptied the output buffer.
//   - OnClose runs once, last: no callback follows it. err is nil when the
//     peer or this side closed the connection in an orderly way, and
//     otherwise says why it ended (ECONNRESET, ErrIdleTimeout, ...).
//
// Callbacks must not block: while one runs, no other connection of the loop
// is served. Hand slow work to another goroutine and Write the result.
type Handler interface {
	OnOpen(c *Conn)
	OnMessage(c *Conn, in *Buffer)
	OnWriteComplete(c *Conn)
	OnClose(c *Conn, err error)
}

// HandlerFuncs implements Handler with optional functions: a nil field is a
// no-op (a nil Message discards input).
type HandlerFuncs struct {
	Open          func(*Conn)
	Message       func(*Conn, *Buffer)
	WriteComplete func(*Conn)
	Close         func(*Conn, error)
}

var _ Handler = HandlerFuncs{}

// OnOpen calls h.Open if set.
func (h HandlerFuncs) OnOpen(c *Conn) {
	if h.Open != nil {
		h.Open(c)
	}
}

// OnMessage calls h.Message if set, and otherwise discards the input.
func (h HandlerFuncs) OnMessage(c *Conn, in *Buffer) {
	if h.Message != nil {
		h.Message(c, in)
		return
	}
	in.Discard(in.Len())
}

// OnWriteComplete calls h.WriteComplete if set.
func (h HandlerFuncs) OnWriteComplete(c *Conn) {
	if h.WriteComplete != nil {
		h.WriteComplete(c)
	}
}

// OnClose calls h.Close if set.
func (h HandlerFuncs) OnClose(c *Conn, err error) {
	if h.Close != nil {
		h.Close(c, err)
	}
}

// WatermarkHandler is an optional interface a Handler may implement to learn
// about backpressure (see WithHighWaterMark). OnHighWater runs when a flush
// leaves more than the high-water mark of output buffered: the connection
// stops reading (OnMessage pauses) until its output drains. OnLowWater runs
// when the output has drained to the low-water mark (half the high-water
// mark) and reading resumes. A handler that produces output on its own (not
// in reply to input) should stop writing on OnHighWater and continue on
// OnLowWater; buffered then stays within one write of the mark.
type WatermarkHandler interface {
	OnHighWater(c *Conn, buffered int)
	OnLowWater(c *Conn, buffered int)
}

// Conn states, owned by the loop.
const (
	connNew    uint8 = iota // created by the acceptor, not yet registered
	connOpen                // registered; OnOpen has run
	connClosed              // OnClose has run; the descriptor is closed
)

// Conn is one TCP connection served by an event loop.
//
// Ownership: the loop the connection was registered on owns it; every
// Handler callback for it runs on that loop's goroutine. Write, Close,
// CloseWrite, Buffered, LocalAddr and RemoteAddr are safe from any goroutine.
// Context and SetContext are not synchronised: use them from callbacks, or
// synchronise yourself.
//
// Output written inside a callback is coalesced and flushed with one write
// after the callback returns: right after OnMessage, while it is hot in the
// cache; at the end of the loop iteration for the other callbacks, tasks,
// timers and writes to other connections. Output written from another
// goroutine is flushed at the end of the loop's next iteration. What the
// kernel does not take stays buffered, with EventWrite registered only until
// it drains.
type Conn struct {
	ch   channel
	loop *EventLoop

	// Owned by the loop goroutine.
	in    *Buffer // unconsumed input; nil while there is none
	ctx   any
	tmo   *connTimeouts // nil unless the connection has a timeout
	raddr [16]byte      // the peer's IP, IPv4 as IPv4-mapped IPv6 (see peer)
	rport uint16

	state    uint8
	eof      bool // the peer shut down its write side
	stopRead bool // Close was requested or the server is draining: read no more
	paused   bool // output above the high-water mark: reading paused
	waitW    bool // the kernel buffer was full: EventWrite registered
	shutDone bool // shutdown(SHUT_WR) has been done
	drained  bool // closed by the server's graceful shutdown

	// Shared: guarded by mu. (The fields are ordered so that the struct
	// fits the allocator's 128-byte size class: every byte of a Conn is paid
	// once per idle connection.)
	wclosed     bool // no more writes: Close, CloseWrite or the end of the connection
	closeReq    bool // Close was called: close once the output is flushed
	shutReq     bool // CloseWrite was called: FIN once the output is flushed
	flushQueued bool // c is on its loop's flush list
	fdClosed    bool // the descriptor has been closed (its number may be reused)
	mu          sync.Mutex
	out         *Buffer // output not yet taken by the kernel; nil while empty
	nextFlush   *Conn   // link in the loop's flush list (see EventLoop.queueFlush)
}

func newConn(l *EventLoop, fd int, peer netip.AddrPort) *Conn {
	c := &Conn{loop: l, raddr: peer.Addr().As16(), rport: peer.Port()}
	c.ch = channel{fd: fd, handler: c}
	return c
}

// peer returns the peer's address. The zone of a link-local IPv6 peer is
// not kept.
func (c *Conn) peer() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(c.raddr).Unmap(), c.rport)
}

// Loop returns the event loop that owns the connection.
func (c *Conn) Loop() *EventLoop { return c.loop }

// Context returns the value set by SetContext.
func (c *Conn) Context() any { return c.ctx }

// SetContext attaches a user value to the connection (a parser, a session).
func (c *Conn) SetContext(v any) { c.ctx = v }

// RemoteAddr returns the peer's address, as a *net.TCPAddr.
func (c *Conn) RemoteAddr() net.Addr {
	return net.TCPAddrFromAddrPort(c.peer())
}

// LocalAddr returns the local address of the connection, as a *net.TCPAddr
// (the server's address once the connection has closed).
func (c *Conn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Under mu the descriptor cannot be closed (and its number reused by
	// another connection) between the check and the getsockname: closeNow
	// sets fdClosed under mu before it closes the descriptor.
	if !c.fdClosed {
		if sa, err := c.loop.k.Getsockname(c.ch.fd); err == nil {
			return net.TCPAddrFromAddrPort(sockaddrToAddrPort(sa))
		}
	}
	if c.loop.srv != nil {
		return c.loop.srv.Addr()
	}
	return &net.TCPAddr{}
}

// Buffered returns how many bytes of output are waiting to be taken by the
// kernel. Safe from any goroutine.
func (c *Conn) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out == nil {
		return 0
	}
	return c.out.Len()
}

// Write copies p to the connection's output and returns len(p). It never
// drops what it accepted: the bytes are flushed in order, or, if the
// connection fails first, OnClose reports the error. It fails only with
// ErrConnClosed, once Close or CloseWrite has been called or the connection
// has ended. Bytes from one goroutine's successive Writes arrive in that
// order. Safe from any goroutine.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.wclosed {
		c.mu.Unlock()
		return 0, ErrConnClosed
	}
	if len(p) == 0 {
		c.mu.Unlock()
		return 0, nil
	}
	if c.out == nil {
		c.out = getBuffer()
	}
	_, _ = c.out.Write(p) // pooled buffers have no limit: cannot fail
	queue := !c.flushQueued
	c.flushQueued = true
	c.mu.Unlock()
	if queue {
		c.loop.queueFlush(c)
	}
	return len(p), nil
}

// Close closes the connection once its pending output has been flushed; no
// OnMessage follows a Close made from a callback. It returns ErrConnClosed if
// the connection is already closed or closing. Safe from any goroutine.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closeReq {
		c.mu.Unlock()
		return ErrConnClosed
	}
	c.wclosed = true
	c.closeReq = true
	c.queueLocked()
	return nil
}

// CloseWrite half-closes the connection: once the pending output has been
// flushed it sends FIN (shutdown(SHUT_WR)), and it keeps reading until the
// peer closes its side. Later Writes fail with ErrConnClosed. Safe from any
// goroutine.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	if c.wclosed {
		c.mu.Unlock()
		return ErrConnClosed
	}
	c.wclosed = true
	c.shutReq = true
	c.queueLocked()
	return nil
}

// queueLocked puts c on its loop's flush list unless it is there already,
// and unlocks mu.
func (c *Conn) queueLocked() {
	queue := !c.flushQueued
	c.flushQueued = true
	c.mu.Unlock()
	if queue {
		c.loop.queueFlush(c)
	}
}

// register adds the connection to its loop and runs OnOpen. Loop goroutine.
func (c *Conn) register() {
	l := c.loop
	if err := l.d.Add(c.ch.fd, EventRead); err != nil {
		l.log.Error("reactor: registering connection", "loop", l.name, "fd", c.ch.fd, "err", err)
		_ = l.k.Close(c.ch.fd) // never registered: nothing else refers to it
		c.state = connClosed
		l.numConns.Add(-1)
		if l.srv != nil {
			l.srv.connGone()
		}
		return
	}
	c.ch.interest = EventRead
	l.channels.set(c.ch.fd, &c.ch)
	c.state = connOpen
	l.conns++
	if l.draining {
		// Accepted just before the server began shutting down: open and
		// close it in order, so OnOpen and OnClose still pair.
		c.drain()
	}
	if d := l.srv.cfg.idleTimeout; d > 0 {
		c.setTimeout(idleTimeout, d)
	}
	if d := l.srv.cfg.writeTimeout; d > 0 {
		c.setTimeout(writeTimeout, d)
	}
	if l.tracing {
		l.trace("OnOpen fd=%d peer=%v", c.ch.fd, c.peer())
	}
	l.current = c
	l.srv.handler.OnOpen(c)
	l.current = nil
}

// handleEvent is called by the loop when the descriptor is ready.
func (c *Conn) handleEvent(ev Events) {
	if ev&EventRead != 0 && c.canRead() {
		c.handleRead()
	}
	if ev&EventWrite != 0 && c.state == connOpen {
		c.waitW = false
		c.flush(false)
	}
}

func (c *Conn) canRead() bool {
	return c.state == connOpen && !c.eof && !c.stopRead && !c.paused
}

// handleRead reads once (the loop is level-triggered: what is left is
// reported again, and one read per connection per iteration keeps the loop
// fair) and delivers the bytes to OnMessage.
//
// Fresh bytes go into the loop's shared read buffer, and only what the
// handler leaves unconsumed is copied into the connection's own buffer, so a
// connection that consumes everything it is given never holds an input
// buffer at all. A connection with leftover input reads with readv into its
// buffer's free space and the shared buffer, so its buffer need not be large
// in advance.
func (c *Conn) handleRead() {
	l := c.loop
	var n int
	var err error
	if c.in == nil {
		n, err = l.k.Read(c.ch.fd, l.readBuf)
		if n > 0 {
			// Counted first: the handler may panic, or the input be too
			// large, and the bytes were read all the same.
			l.bytesRead(n)
			l.inView.borrow(l.readBuf[:n])
			c.deliver(&l.inView)
			if rest := l.inView.Len(); rest > 0 && c.state == connOpen {
				c.in = getBuffer()
				c.in.SetLimit(l.srv.cfg.maxInputSize)
				if _, werr := c.in.Write(l.inView.Bytes()); werr != nil {
					c.closeNow(fmt.Errorf("%w: %d bytes unconsumed", ErrInputTooLarge, rest))
					return
				}
			}
			l.inView.borrow(nil)
		}
	} else {
		n, err = c.in.readFD(l.k, c.ch.fd, l.readBuf, l.iov)
		if errors.Is(err, ErrBufferFull) {
			// The unconsumed input is exactly at the limit. Only a byte
			// beyond it makes the input too large: the peer's FIN (an
			// orderly end) or a spurious wake-up must not. One byte
			// tells which.
			n, err = l.k.Read(c.ch.fd, l.readBuf[:1])
			if n > 0 {
				l.bytesRead(n)
				c.closeNow(fmt.Errorf("%w: more than %d bytes unconsumed", ErrInputTooLarge, c.in.Len()))
				return
			}
			n = 0 // handled below: EOF, EAGAIN or an error
		}
		if n > 0 {
			l.bytesRead(n)
			c.deliver(c.in)
			if c.in != nil && c.in.Len() == 0 {
				putBuffer(c.in)
				c.in = nil
			}
		}
	}
	switch {
	case n > 0:
		c.touch(false)
		// Flush what the callback wrote now, while it is hot in the cache,
		// rather than with the rest at the end of the iteration: with many
		// ready connections the output of all of them would otherwise pass
		// through memory before the first write (measured: 1.24x the CPU per
		// message of the C server at 4 KiB x 1000 connections). c stays on
		// the flush list, where it costs a lock and finds nothing left.
		c.flush(false)
	case err == nil: // read returned 0: the peer shut down its write side
		c.peerEOF()
	case err == unix.EAGAIN || err == unix.EINTR:
		// Spurious readiness, or a signal: the level-triggered loop will
		// report the descriptor again if it is still readable.
	default:
		c.closeNow(c.opError("read", err))
	}
}

// deliver runs OnMessage with in.
func (c *Conn) deliver(in *Buffer) {
	if c.state != connOpen {
		return
	}
	l := c.loop
	if l.tracing {
		l.trace("OnMessage fd=%d in=%d", c.ch.fd, in.Len())
	}
	l.current = c
	l.srv.handler.OnMessage(c, in)
	l.current = nil
}

// peerEOF handles the peer's FIN: no more input will come. Output written
// before and during the last OnMessage is still flushed; then the
// connection closes and OnClose(c, nil) runs.
func (c *Conn) peerEOF() {
	c.eof = true
	c.mu.Lock()
	c.wclosed = true
	c.closeReq = true
	c.queueLocked()
	c.updateInterest()
}

// flush writes the pending output with one write(2), then acts on what is
// left: registers EventWrite while output remains, applies backpressure,
// and carries out a requested CloseWrite or Close once the output is empty.
// Loop goroutine.
//
// listed says the caller took c off the loop's flush list (flushAll): only
// then may flushQueued be cleared. A flush for EventWrite must leave it
// alone, because c may still be on the list: clearing it would let the next
// Write push c a second time, overwriting its link and losing every
// connection queued before it (found by the simulation's property tests).
func (c *Conn) flush(listed bool) {
	l := c.loop
	c.mu.Lock()
	if listed {
		c.flushQueued = false
	}
	if c.state != connOpen {
		c.mu.Unlock()
		return
	}
	var n int
	var err error
	pending := 0
	if out := c.out; out != nil {
		if !c.waitW && out.Len() > 0 {
			n, err = out.writeFD(l.k, c.ch.fd)
		}
		pending = out.Len()
		if pending == 0 {
			putBuffer(out)
			c.out = nil
		}
	}
	closeReq, shutReq := c.closeReq, c.shutReq
	c.mu.Unlock()

	if n > 0 {
		l.bytesWritten(n)
		c.touch(true)
	}
	if err != nil && err != unix.EAGAIN && err != unix.EINTR {
		c.closeNow(c.opError("write", err))
		return
	}
	if pending > 0 {
		c.waitW = true
		c.writePending(true)
		if closeReq {
			c.stopRead = true
		}
		c.checkHighWater(pending)
		c.updateInterest()
		return
	}
	c.waitW = false
	c.writePending(false)
	if c.paused {
		c.resume(pending)
	}
	if n > 0 {
		if l.tracing {
			l.trace("OnWriteComplete fd=%d", c.ch.fd)
		}
		l.current = c
		l.srv.handler.OnWriteComplete(c)
		l.current = nil
		if c.state != connOpen {
			return
		}
	}
	if shutReq && !c.shutDone {
		c.shutDone = true
		if err := l.k.Shutdown(c.ch.fd, unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
			c.closeNow(c.opError("shutdown", err))
			return
		}
	}
	if closeReq {
		c.closeNow(nil)
		return
	}
	c.updateInterest()
}

// checkHighWater pauses reading when the output passes the high-water mark.
func (c *Conn) checkHighWater(pending int) {
	hwm := c.loop.srv.cfg.highWaterMark
	if c.paused || hwm <= 0 || pending <= hwm {
		if c.paused && pending <= hwm/2 {
			c.resume(pending)
		}
		return
	}
	c.paused = true
	if c.loop.tracing {
		c.loop.trace("high water fd=%d buffered=%d", c.ch.fd, pending)
	}
	if wh, ok := c.loop.srv.handler.(WatermarkHandler); ok {
		c.loop.current = c
		wh.OnHighWater(c, pending)
		c.loop.current = nil
	}
}

func (c *Conn) resume(pending int) {
	c.paused = false
	if c.loop.tracing {
		c.loop.trace("low water fd=%d buffered=%d", c.ch.fd, pending)
	}
	if wh, ok := c.loop.srv.handler.(WatermarkHandler); ok {
		c.loop.current = c
		wh.OnLowWater(c, pending)
		c.loop.current = nil
	}
}

// updateInterest tells the Dispatcher what the connection now waits for, if
// that changed.
func (c *Conn) updateInterest() {
	if c.state != connOpen {
		return
	}
	var want Events
	if c.canRead() {
		want |= EventRead
	}
	if c.waitW {
		want |= EventWrite
	}
	if want == c.ch.interest {
		return
	}
	if err := c.loop.d.Modify(c.ch.fd, want); err != nil {
		c.closeNow(err)
		return
	}
	c.ch.interest = want
}

// closeNow ends the connection at once: its buffers are released, it leaves
// the loop, OnClose runs with err, and the descriptor is closed. Output not
// yet flushed is lost; callers pass an error saying why unless the output is
// known to be empty. Loop goroutine; a no-op on a closed connection.
func (c *Conn) closeNow(err error) {
	if c.state == connClosed {
		return
	}
	wasOpen := c.state == connOpen
	c.state = connClosed
	l := c.loop
	c.mu.Lock()
	c.wclosed = true
	c.closeReq = true
	if out := c.out; out != nil {
		if out.Len() > 0 && err == nil {
			err = fmt.Errorf("%w: %d bytes of output not flushed", ErrServerClosed, out.Len())
		}
		putBuffer(out)
		c.out = nil
	}
	c.mu.Unlock()
	if c.in != nil {
		putBuffer(c.in)
		c.in = nil
	}
	c.untrack()
	fd := c.ch.fd
	if wasOpen {
		if derr := l.d.Delete(fd); derr != nil && !errors.Is(derr, ErrDispatcherClosed) {
			l.log.Error("reactor: deregistering connection", "loop", l.name, "fd", fd, "err", derr)
		}
		l.channels.del(fd)
		l.conns--
		l.numConns.Add(-1)
	}
	// The descriptor is closed after OnClose, so LocalAddr still works there;
	// deferred so a panicking OnClose cannot leak it.
	defer func() {
		c.mu.Lock()
		c.fdClosed = true
		c.mu.Unlock()
		_ = l.k.Close(fd) // nothing useful to do if close fails: the fd is gone either way
		if l.srv != nil {
			l.srv.connGone()
		}
	}()
	if wasOpen {
		l.countClose(c, err)
		l.current = nil
		c.callOnClose(err)
	}
}

// callOnClose runs OnClose, recovering a panic in it (there is no
// connection left to end, so it is only logged).
func (c *Conn) callOnClose(err error) {
	l := c.loop
	if l.tracing {
		l.trace("OnClose fd=%d err=%v", c.ch.fd, err)
	}
	if l.recoverOn {
		defer func() {
			if r := recover(); r != nil {
				l.log.Error("reactor: OnClose panicked", "loop", l.name, "panic", r)
			}
		}()
	}
	l.srv.handler.OnClose(c, err)
}

// opError wraps a syscall error as net.OpError does, with the addresses.
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{
		Op:     op,
		Net:    "tcp",
		Source: c.loop.srv.Addr(),
		Addr:   c.RemoteAddr(),
		Err:    os.NewSyscallError(op, err),
	}
}

// sockaddrToAddrPort converts an accepted peer address to its compact form
// (a Conn keeps a netip.AddrPort, not a net.Addr, until someone asks).
func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}
