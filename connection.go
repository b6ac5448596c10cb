// This file holds Conn (the C design's tcp_connection): one connection,
// accepted or dialled, its input and output buffers and its life from
// OnOpen to OnClose, and the pause of its reading. A Conn is owned by the event loop it was registered on; Write,
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
	"sync/atomic"

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

// HalfCloseHandler is an optional interface a Handler may implement to keep
// writing to a peer that has shut down its write side: a client that sends
// its request and then shutdown(SHUT_WR), as nc -N and many RPC and HTTP/1.0
// clients do, while the reply is computed on another goroutine.
//
// Without it, the peer's EOF ends the connection as soon as the output
// written before and during the last OnMessage has been flushed. With it,
// OnHalfClose runs once, on the loop, after that last OnMessage, and the
// connection stays open for writing until the handler calls Close or
// CloseWrite (either then closes it once the output is flushed). Idle and
// write timeouts still apply, and a reset by the peer still ends it with an
// error. OnHalfClose is not called when the handler had already called Close
// or CloseWrite.
type HalfCloseHandler interface {
	OnHalfClose(c *Conn)
}

// ShutdownHandler is an optional interface a Handler may implement to learn
// that a graceful Server.Shutdown has begun, so that it can end each
// connection at a clean point: an HTTP server answers the request it is on
// with "Connection: close" and then closes, instead of having the request
// dropped.
//
// Without it, Shutdown stops reading from every connection at once, flushes
// its output and closes it. With it, OnShutdown runs once for every open
// connection, on its loop (also for one that opens while the shutdown is
// under way, right after its OnOpen), and the connection goes on being
// served, reading included, until the handler calls Close or CloseWrite:
// calling Close in OnShutdown closes it at once, after its output. A
// connection the handler never closes holds the shutdown until its context
// ends, when Shutdown closes everything left.
type ShutdownHandler interface {
	OnShutdown(c *Conn)
}

// Conn states, owned by the loop.
const (
	connNew       uint8 = iota // created by the acceptor, not yet registered
	connHandshake              // registered; its PROXY header or TLS handshake is under way, OnOpen has not run
	connOpen                   // registered; OnOpen has run
	connLinger                 // closing: output flushed, FIN sent, input read and discarded until the peer's EOF
	connClosed                 // OnClose has run; the descriptor is closed
)

// Bits of Conn.shared. They are written with Conn.mu held, so that a bit and
// the output it concerns change together, and read with an atomic load from
// anywhere: the loop checks closeRequested on every read without taking the
// lock. The one exception is sharedInline, which the loop sets without the
// lock (and clears with it); so every write is an atomic Or or And, never a
// load and a store that could undo a concurrent one.
const (
	sharedWClosed     uint32 = 1 << iota // no more writes: Close, CloseWrite or the end of the connection
	sharedCloseReq                       // Close was called: close once the output is flushed
	sharedShutReq                        // CloseWrite was called: FIN once the output is flushed
	sharedFlushQueued                    // c is on its loop's flush list
	sharedFDClosed                       // the descriptor has been closed (its number may be reused)
	sharedProxied                        // a PROXY header gave the connection's addresses (see proxyAddr)
	sharedDialled                        // this process dialled the connection: the server's address is not its own
	sharedInline                         // the loop is delivering input and flushes right after (see handleRead)
)

// Conn is one connection served by an event loop, accepted by a Server or
// dialled by Client.Dial or EventLoop.Dial: TCP, or a Unix domain socket
// stream (see NewServer, EventLoop.Dial), which behaves the same but for its
// addresses (RemoteAddr) and the TCP options that do not apply to it.
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
// goroutine is flushed by the end of the loop's next iteration (with the
// OnMessage output if it lands while OnMessage runs for the connection).
// What the kernel does not take stays buffered, with EventWrite registered
// only until it drains.
type Conn struct {
	ch   channel
	loop *EventLoop
	h    Handler // receives the connection's events; set before it opens

	// Owned by the loop goroutine.
	in    *Buffer // unconsumed input; nil while there is none
	ctx   any
	x     *connExt // optional parts (timeouts, TLS); nil for a plain connection without them
	raddr [16]byte // the peer's IP, IPv4 as IPv4-mapped IPv6 (see peer)
	rport uint16

	state    uint8
	eof      bool // the peer shut down its write side
	stopRead bool // the server is draining: read no more
	paused   bool // output above the high-water mark: reading paused
	readOff  bool // the handler paused reading (PauseRead)
	waitW    bool // the kernel buffer was full: EventWrite registered
	shutDone bool // shutdown(SHUT_WR) has been done
	drained  bool // closed because of the server's graceful shutdown
	keepOpen bool // the peer's EOF came and a HalfCloseHandler keeps the connection open
	notified bool // OnShutdown has run

	// Shared. (The fields are ordered so that the struct fits the
	// allocator's 128-byte size class: every byte of a Conn is paid once per
	// idle connection.)
	shared    atomic.Uint32 // shared* bits; written with mu held, read atomically
	mu        sync.Mutex    // guards out and nextFlush, and orders changes to shared
	out       *Buffer       // output not yet taken by the kernel; nil while empty
	nextFlush *Conn         // link in the loop's flush list (see EventLoop.queueFlush)
}

func newConn(l *EventLoop, fd int, peer netip.AddrPort, h Handler) *Conn {
	return &Conn{ch: channel{fd: fd}, loop: l, h: h, raddr: peer.Addr().As16(), rport: peer.Port()}
}

// has reports whether the shared bit is set. Safe from any goroutine.
func (c *Conn) has(bit uint32) bool { return c.shared.Load()&bit != 0 }

// setLocked sets shared bits; c.mu must be held.
func (c *Conn) setLocked(bits uint32) { c.shared.Or(bits) }

// clearLocked clears shared bits; c.mu must be held.
func (c *Conn) clearLocked(bits uint32) { c.shared.And(^bits) }

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

// RemoteAddr returns the peer's address: a *net.TCPAddr, or for a
// connection over a Unix domain socket a *net.UnixAddr. A Unix client's
// socket is usually unnamed (it did not bind one): Name is then empty, as
// it is once the connection has closed. (Package net reports an unnamed
// peer as "@", which is also how it writes abstract names.)
//
// A TCP connection keeps its peer's address from accept(2). A Unix
// connection keeps nothing, so that accepting one leaves no memory behind
// for an address that is almost always empty: RemoteAddr asks the kernel
// (getpeername(2)) each time.
func (c *Conn) RemoteAddr() net.Addr {
	if a := c.proxyAddr(true); a != nil {
		return a
	}
	if c.ch.unix {
		if a := c.sockAddr(true); a != nil {
			return a
		}
		return &net.UnixAddr{Net: "unix"}
	}
	return net.TCPAddrFromAddrPort(c.peer())
}

// LocalAddr returns the local address of the connection: a *net.TCPAddr,
// or a *net.UnixAddr for a connection over a Unix domain socket (the path
// or "@name" its server listens on). Once an accepted connection has closed
// it is the server's address; once a dialled one has, an empty address.
func (c *Conn) LocalAddr() net.Addr {
	if a := c.proxyAddr(false); a != nil {
		return a
	}
	if a := c.sockAddr(false); a != nil {
		return a
	}
	if c.loop.srv != nil && !c.has(sharedDialled) {
		return c.loop.srv.Addr()
	}
	if c.ch.unix {
		return &net.UnixAddr{Net: "unix"}
	}
	return &net.TCPAddr{}
}

// sockAddr asks the kernel for the connection's local address, or its
// peer's if peer is set. It returns nil once the descriptor is closed, or
// if the kernel cannot say.
func (c *Conn) sockAddr(peer bool) net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Under mu the descriptor cannot be closed (and its number reused by
	// another connection) between the check and the system call: closeNow
	// sets sharedFDClosed under mu before it closes the descriptor.
	if c.has(sharedFDClosed) {
		return nil
	}
	var sa unix.Sockaddr
	var err error
	if peer {
		sa, err = c.loop.k.Getpeername(c.ch.fd)
	} else {
		sa, err = c.loop.k.Getsockname(c.ch.fd)
	}
	if err != nil {
		return nil
	}
	return sockaddrToNetAddr(sa)
}

// Buffered returns how many bytes of output are waiting to be taken by the
// kernel. Safe from any goroutine.
func (c *Conn) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	if c.out != nil {
		n = c.out.Len()
	}
	if c.loop.writing == c { // guarded by c.mu (see writeUnlocked)
		n += c.loop.writingLen
	}
	if x := c.x; x != nil && x.tls != nil { // both guarded by c.mu (see ext, flushTLS)
		n += x.tls.rawLen
	}
	return n
}

// Write copies p to the connection's output and returns len(p). It never
// drops what it accepted: the bytes are flushed in order, or, if the
// connection fails first, OnClose reports the error. It fails only with
// ErrConnClosed, once Close or CloseWrite has been called or the connection
// has ended. Bytes from one goroutine's successive Writes arrive in that
// order. Safe from any goroutine.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	s := c.shared.Load()
	if s&sharedWClosed != 0 {
		c.mu.Unlock()
		return 0, ErrConnClosed
	}
	if len(p) == 0 {
		c.mu.Unlock()
		return 0, nil
	}
	if c.out == nil {
		c.out = c.outBuffer(s)
	}
	_, _ = c.out.Write(p) // pooled buffers have no limit: cannot fail
	if s&(sharedFlushQueued|sharedInline) != 0 {
		// On the flush list already, or about to be flushed by the loop
		// right after the OnMessage that is running.
		c.mu.Unlock()
		return len(p), nil
	}
	c.queueLocked()
	return len(p), nil
}

// outBuffer returns an empty Buffer for c.out, which is nil; s is c.shared,
// and c.mu is held. While the loop delivers input to c (sharedInline) it
// is the loop's spare, the output buffer its last inline flush emptied
// (see flush): a connection that answers every message takes and gives
// back the same buffer, without sync.Pool's per-P bookkeeping. The spare
// is touched only with the mutex of the connection marked inline held, and
// the loop marks one connection at a time, so that the mutexes order every
// use of it, whichever goroutine writes.
func (c *Conn) outBuffer(s uint32) *Buffer {
	if l := c.loop; s&sharedInline != 0 && l.spare != nil {
		b := l.spare
		l.spare = nil
		return b
	}
	return getBuffer()
}

// Close closes the connection once its pending output has been flushed. No
// OnMessage follows a Close made on the connection's loop (in a callback, a
// task or a timer), and none follows one made elsewhere once the loop has
// seen it. The close is lingering: after the flush the connection sends FIN,
// then reads and discards what the peer still sends until the peer's EOF or
// the linger ends (see WithLingerTimeout), and only then closes the socket
// and runs OnClose, so that unread input cannot make the kernel reset the
// connection and drop output still on its way. It returns ErrConnClosed if
// the connection is already closed or closing. Safe from any goroutine.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.has(sharedCloseReq) {
		c.mu.Unlock()
		return ErrConnClosed
	}
	c.setLocked(sharedWClosed | sharedCloseReq)
	c.queueLocked()
	return nil
}

// CloseWrite half-closes the connection: once the pending output has been
// flushed it sends FIN (shutdown(SHUT_WR)), and it keeps reading until the
// peer closes its side. Later Writes fail with ErrConnClosed. Safe from any
// goroutine.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	if c.has(sharedWClosed) {
		c.mu.Unlock()
		return ErrConnClosed
	}
	c.setLocked(sharedWClosed | sharedShutReq)
	c.queueLocked()
	return nil
}

// queueLocked puts c on its loop's flush list unless it is there already,
// and unlocks mu.
func (c *Conn) queueLocked() {
	queue := !c.has(sharedFlushQueued | sharedInline)
	if queue {
		c.setLocked(sharedFlushQueued)
	}
	c.mu.Unlock()
	if queue {
		c.loop.queueFlush(c)
	}
}

// requestClose asks for a close once the output is flushed, as Close does,
// without failing when one was asked for already. Loop goroutine.
func (c *Conn) requestClose() {
	c.mu.Lock()
	c.setLocked(sharedWClosed | sharedCloseReq)
	c.queueLocked()
}

// register adds the connection to its loop and runs OnOpen. Loop goroutine.
func (c *Conn) register() {
	l := c.loop
	if err := l.d.Add(c.ch.fd, EventRead); err != nil {
		l.log.Error("reactor: registering connection", "loop", l.name, "fd", c.ch.fd, "err", err)
		_ = l.k.Close(c.ch.fd) // never registered: nothing else refers to it
		c.state = connClosed
		l.numConns.Add(-1)
		if l.g != nil {
			l.g.connGone()
		}
		return
	}
	c.ch.interest = EventRead
	c.open()
}

// open makes a connection whose descriptor is registered for EventRead
// live: it enters the loop's channel map and its timeouts start; over
// TLS its handshake begins (OnOpen follows the handshake), otherwise it is
// ready and OnOpen runs at once. An accepted connection comes here from
// register, a dialled one once its connect has completed. Loop goroutine.
func (c *Conn) open() {
	l := c.loop
	l.channels.set(c.ch.fd, c)
	l.conns++
	if l.g.cfg.proxyProtocol {
		c.startProxy() // afterProxy follows the header
		return
	}
	c.afterProxy()
}

// afterProxy opens an accepted connection once its PROXY header, if it
// needed one, has come: over TLS its handshake begins, otherwise it is
// ready at once. Loop goroutine.
func (c *Conn) afterProxy() {
	if cfg := c.loop.g.cfg.tlsConfig; cfg != nil {
		c.startTLS(cfg, false, nil)
		return
	}
	c.ready()
}

// ready opens the connection: its timeouts start and OnOpen runs. Loop
// goroutine.
func (c *Conn) ready() {
	l := c.loop
	c.state = connOpen
	if d := l.g.cfg.idleTimeout; d > 0 {
		c.setTimeout(idleTimeout, d)
	}
	if d := l.g.cfg.writeTimeout; d > 0 {
		c.setTimeout(writeTimeout, d)
	}
	if l.tracing {
		l.trace("OnOpen fd=%d peer=%v", c.ch.fd, c.peer())
	}
	l.current = c
	c.h.OnOpen(c)
	l.current = nil
	if l.draining && c.state == connOpen {
		// Accepted just before the server began shutting down: it opens,
		// and then closes (or its handler is told) like the others, so
		// that OnOpen and OnClose still pair.
		c.drain()
	}
}

// handleEvent is called by the loop when the descriptor is ready.
func (c *Conn) handleEvent(ev Events) {
	switch c.state {
	case connOpen:
	case connLinger:
		c.lingerRead()
		return
	case connHandshake:
		if c.proxyPending() {
			if ev&EventRead != 0 {
				c.readProxyHeader()
			}
			return
		}
		c.handshakeEvent(ev)
		return
	default:
		return
	}
	if ev&EventRead != 0 {
		switch {
		case c.canRead():
			c.handleRead()
		case c.eof && c.ch.interest&EventRead == 0:
			// After the peer's EOF, readiness for reading that was not
			// asked for is a failure (EPOLLERR, EPOLLHUP). With no
			// output to write nothing else would notice it, and a
			// level-triggered backend would report it forever.
			c.readFailure()
		case c.readOff && c.ch.interest&EventRead == 0 && !c.waitW:
			c.pausedFailure()
		}
	}
	if ev&EventWrite != 0 && c.state == connOpen {
		c.waitW = false
		c.flush(false)
	}
}

// canRead reports whether the connection reads: it is open, the peer has
// not finished, and neither backpressure, a drain nor a requested Close
// stops it. The last is read atomically, so that a Close made anywhere stops
// OnMessage as soon as the loop sees it, before the close is carried out.
func (c *Conn) canRead() bool {
	return c.state == connOpen && !c.eof && !c.stopRead && !c.paused && !c.readOff && !c.has(sharedCloseReq)
}

// PauseRead stops reading from the connection until ResumeRead: no
// OnMessage runs meanwhile, and what the peer sends waits in the kernel,
// whose receive window, once full, stops the peer from sending more (TCP's
// own flow control). A proxy pauses the side it reads from while the other
// side's output is above its high-water mark (see WatermarkHandler), so
// that a fast sender cannot fill the memory of a slow receiver.
//
// It composes with the high-water-mark pause: the connection reads only
// when neither pauses it. A paused connection still writes, still closes
// (Close, CloseWrite, timeouts), and still learns of a reset by its peer
// (OnClose with the error); the peer's end of file, arriving behind bytes
// not yet read, is seen once reading resumes. Repeated calls are harmless.
//
// Loop goroutine only: call it from a callback of any connection of the
// same loop (a proxy's pair shares a loop), or from a task or timer of
// that loop; from another goroutine, c.Loop().Submit(c.PauseRead).
func (c *Conn) PauseRead() {
	c.readOff = true
	c.updateInterest()
}

// ResumeRead lets a connection paused with PauseRead read again. Input
// left unconsumed in its Buffer before the pause is handed to OnMessage
// with the next bytes that arrive, not at once. Loop goroutine only, as
// PauseRead.
func (c *Conn) ResumeRead() {
	if !c.readOff {
		return
	}
	c.readOff = false
	c.updateInterest()
}

// eventDetached is set in a channel's interest while its descriptor is
// not registered with the Dispatcher at all (see pausedFailure): a Modify
// would then fail, and an Add is due instead.
const eventDetached Events = 1 << 30

// pausedFailure handles readiness for reading that a connection paused by
// its handler did not ask for. The Dispatcher contract reports it only for
// a socket that failed (EPOLLERR: a reset) or is finished in both
// directions (EPOLLHUP: our FIN sent, by CloseWrite, and the peer's
// received), whatever the interest, and a level-triggered backend reports
// it on every Wait. A pending error ends the connection now, as a read
// would; it is taken with SO_ERROR, which leaves the unread bytes alone.
// A hang-up without one leaves those bytes and the peer's end of file to be
// read when the handler resumes; until then the descriptor is taken out of
// the Dispatcher, so that the loop does not spin on it.
func (c *Conn) pausedFailure() {
	l := c.loop
	soerr, err := l.k.GetsockoptInt(c.ch.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soerr != 0 {
		err = unix.Errno(soerr)
	}
	if err != nil {
		c.closeNow(c.opError("read", err))
		return
	}
	if err := l.d.Delete(c.ch.fd); err != nil {
		c.closeNow(c.opError("epoll_ctl", err))
		return
	}
	c.ch.interest = eventDetached
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
//
// WithMaxInputSize is enforced here, by count, not through the Buffer's
// limit: a handler may call SetLimit on the Buffer it is given, and that
// must neither lift the server's limit nor stay on the loop's shared buffer
// for the next connection.
func (c *Conn) handleRead() {
	if x := c.x; x != nil && x.tls != nil {
		c.readTLS(x.tls) // the seam: records in, plaintext to OnMessage
		return
	}
	l := c.loop
	maxIn := l.g.cfg.maxInputSize
	var n int
	var err error
	if c.in == nil {
		n, err = l.k.Read(c.ch.fd, l.readBuf)
		if n > 0 {
			// Counted first: the handler may panic, or the input be too
			// large, and the bytes were read all the same.
			l.bytesRead(n)
			l.inView.borrow(l.readBuf[:n])
			c.shared.Or(sharedInline)
			c.deliver(&l.inView)
			rest := l.inView.Len()
			if rest > 0 && c.state == connOpen {
				if maxIn > 0 && rest > maxIn {
					l.resetInView()
					c.closeNow(fmt.Errorf("%w: %d bytes unconsumed", ErrInputTooLarge, rest))
					return
				}
				c.in = getBuffer()
				_, _ = c.in.Write(l.inView.Bytes()) // a pooled buffer has no limit
			}
			l.resetInView()
		}
	} else {
		c.in.SetLimit(maxIn) // whatever the handler set
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
			c.shared.Or(sharedInline)
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
		// message of the C server at 4 KiB x 1000 connections). While the
		// callback ran, c was marked inline (sharedInline), so its Writes,
		// and Close or CloseWrite from anywhere, did not put it on the flush
		// list: this flush, which clears the mark, serves them. (Measured
		// with callgrind: the list's push, and the second flush at the end
		// of the iteration that found nothing left, were nearly a fifth of
		// the loop's instructions per 64 B echo.)
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

// resetInView lets go of the bytes lent to the loop's input view and of any
// limit a handler set on it.
func (l *EventLoop) resetInView() {
	l.inView.borrow(nil)
	l.inView.SetLimit(0)
}

// readFailure learns why a connection whose peer has finished was reported
// readable: a read after EOF returns the pending error (a reset), or 0 when
// both directions are finished. Either way the connection ends.
func (c *Conn) readFailure() {
	l := c.loop
	_, err := l.k.Read(c.ch.fd, l.readBuf[:1])
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
	case err != nil:
		c.closeNow(c.opError("read", err))
	default:
		c.closeNow(nil)
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
	c.h.OnMessage(c, in)
	l.current = nil
}

// peerEOF handles the peer's FIN: no more input will come. Output written
// before and during the last OnMessage is still flushed; then the
// connection closes and OnClose(c, nil) runs, unless a HalfCloseHandler
// keeps it open for writing.
func (c *Conn) peerEOF() {
	c.eof = true
	l := c.loop
	if hh, ok := c.h.(HalfCloseHandler); ok && !c.has(sharedWClosed) {
		c.keepOpen = true
		c.updateInterest()
		if c.state != connOpen {
			return
		}
		if l.tracing {
			l.trace("OnHalfClose fd=%d", c.ch.fd)
		}
		l.current = c
		hh.OnHalfClose(c)
		l.current = nil
		return
	}
	c.requestClose()
	c.updateInterest()
}

// flush writes the pending output with one write(2), then acts on what is
// left: registers EventWrite while output remains, applies backpressure,
// and carries out a requested CloseWrite or Close once the output is empty.
// Loop goroutine.
//
// listed says the caller took c off the loop's flush list (flushAll): only
// then may sharedFlushQueued be cleared. A flush for EventWrite must leave
// it alone, because c may still be on the list: clearing it would let the
// next Write push c a second time, overwriting its link and losing every
// connection queued before it (found by the simulation's property tests).
// The inline mark (sharedInline) needs no such care: only handleRead sets
// it, just before OnMessage, and the flush right after clears it, whichever
// way it is called.
func (c *Conn) flush(listed bool) {
	l := c.loop
	c.mu.Lock()
	if listed {
		c.clearLocked(sharedFlushQueued)
	}
	inline := c.has(sharedInline)
	if inline {
		// handleRead's flush after OnMessage: from here on a Write
		// must queue c again.
		c.clearLocked(sharedInline)
	}
	if c.state != connOpen {
		c.mu.Unlock()
		return
	}
	var n, pending int
	var err error
	var complete bool // the handler's output has all been taken: OnWriteComplete is due
	if x := c.x; x != nil && x.tls != nil {
		n, pending, complete, err = c.flushTLS(x.tls) // the seam: plaintext sealed into records
	} else {
		if out := c.out; out != nil && !c.waitW && out.Len() > 0 {
			n, err = c.writeUnlocked(out)
		}
		if out := c.out; out != nil {
			pending = out.Len()
			if pending == 0 {
				if inline && l.spare == nil {
					if out.recycle() {
						l.spare = out // see outBuffer
					}
				} else {
					putBuffer(out)
				}
				c.out = nil
			}
		}
		complete = n > 0
	}
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
		c.checkHighWater(pending)
		c.updateInterest()
		return
	}
	c.waitW = false
	c.writePending(false)
	if c.paused {
		c.resume(pending)
	}
	if complete && c.state == connOpen {
		if l.tracing {
			l.trace("OnWriteComplete fd=%d", c.ch.fd)
		}
		l.current = c
		c.h.OnWriteComplete(c)
		l.current = nil
	}
	if c.state != connOpen {
		return
	}
	c.finishFlushed()
}

// writeUnlocked writes out, which is c.out, with c.mu released during the
// system call, so that a goroutine calling Write is not held up for as long
// as the kernel takes to copy a large buffer. (Measured with the mutex
// profile: a goroutine writing 256 KiB at a time to a connection drained by
// a fast reader spent 259 ms of 5 s waiting for the loop's write(2) calls
// while they held the lock; none once they did not.) While the lock is
// released the buffer is taken off c.out and noted in the loop (Buffered
// still counts it); Writes made meanwhile go to a fresh buffer, appended
// behind what the kernel did not take. c.mu is held on entry and on return.
func (c *Conn) writeUnlocked(out *Buffer) (int, error) {
	l := c.loop
	c.out = nil
	l.writing, l.writingLen = c, out.Len()
	c.mu.Unlock()
	n, err := out.writeFD(l.k, c.ch.fd)
	c.mu.Lock()
	l.writing, l.writingLen = nil, 0
	switch later := c.out; {
	case later == nil:
		c.out = out
	case out.Len() == 0:
		putBuffer(out) // later holds all that is left
	default:
		_, _ = out.Write(later.Bytes()) // pooled: no limit
		putBuffer(later)
		c.out = out
	}
	return n, err
}

// finishFlushed carries out a CloseWrite or Close once the output is empty.
// The requests are read after the callbacks that flush runs, which may make
// them (a Close in OnWriteComplete or OnLowWater is carried out now, before
// the next read); if a callback wrote more, it is flushed first, by the
// flush that its Write queued.
func (c *Conn) finishFlushed() {
	if !c.has(sharedShutReq | sharedCloseReq) {
		// Nothing to carry out, whether or not a callback wrote more:
		// without a request both ways end in updateInterest. The bits
		// are read atomically; one set by another goroutine after this
		// load comes with a flush that its queueLocked asked for.
		c.updateInterest()
		return
	}
	l := c.loop
	c.mu.Lock()
	s := c.shared.Load()
	empty := c.out == nil
	c.mu.Unlock()
	if !empty {
		c.updateInterest()
		return
	}
	if s&(sharedShutReq|sharedCloseReq) != 0 && !c.shutDone && c.closeNotifyDue() {
		// Over TLS the FIN follows a close_notify (see flushTLS), which
		// a Close made in a callback that flush ran has not sent yet.
		c.flush(false)
		return
	}
	if s&sharedShutReq != 0 && !c.shutDone {
		c.shutDone = true
		if err := l.k.Shutdown(c.ch.fd, unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
			c.closeNow(c.opError("shutdown", err))
			return
		}
		if c.eof {
			// Both directions are finished: nothing is left to read or
			// write.
			c.closeNow(nil)
			return
		}
	}
	if s&sharedCloseReq != 0 {
		c.closeFlushed()
		return
	}
	c.updateInterest()
}

// checkHighWater pauses reading when the output passes the high-water mark.
func (c *Conn) checkHighWater(pending int) {
	hwm := c.loop.g.cfg.highWaterMark
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
	if wh, ok := c.h.(WatermarkHandler); ok {
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
	if wh, ok := c.h.(WatermarkHandler); ok {
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
	c.setInterest(want)
}

// setInterest changes the interest registered with the Dispatcher, ending
// the connection if that fails.
func (c *Conn) setInterest(want Events) {
	if want != c.ch.interest { // the check inlines: most calls change nothing
		c.changeInterest(want)
	}
}

func (c *Conn) changeInterest(want Events) {
	var err error
	switch {
	case c.ch.interest&eventDetached == 0:
		err = c.loop.d.Modify(c.ch.fd, want)
	case want == 0:
		return // stays out of the Dispatcher until it waits for something
	default:
		err = c.loop.d.Add(c.ch.fd, want)
	}
	if err != nil {
		c.closeNow(c.opError("epoll_ctl", err))
		return
	}
	c.ch.interest = want
}

// closeFlushed ends a connection whose Close was asked for, now that its
// output has been flushed. After the peer's EOF nothing more can arrive, so
// it closes at once; otherwise it lingers (see linger).
func (c *Conn) closeFlushed() {
	if c.eof || c.loop.g.cfg.lingerTimeout == 0 {
		c.closeNow(nil)
		return
	}
	c.linger()
}

// linger starts the lingering close that every orderly close by our side
// ends with, as nginx's lingering_close and net/http's closeWriteAndWait
// do. Closing a socket that still has unread input makes Linux send RST
// instead of FIN (RFC 2525, section 2.17; tcp_close in net/ipv4/tcp.c), and
// the RST makes the peer's kernel drop whatever of our output it has not yet
// received: a client that pipelined its next request behind the one we
// answered, or that is still sending when we close, would lose the end of
// the reply. So the connection sends FIN (shutdown(SHUT_WR)) once its output
// is flushed, then reads and discards what the peer still sends until the
// peer's EOF, which says it has read everything up to our FIN, and only then
// closes the descriptor and runs OnClose.
//
// The linger is bounded: by the server's linger timeout (WithLingerTimeout),
// after which the connection is closed as it stands, and by LingerMaxBytes
// of discarded input, beyond which the peer is taken to be flooding and the
// connection is reset (ErrInputTooLarge). While it lingers a connection
// holds no buffer, only its descriptor and its place in the linger list; it
// still counts as open (WithMaxConns, Stats.Open), Server.Close closes it at
// once, and Shutdown waits for it within its context.
func (c *Conn) linger() {
	l := c.loop
	if !c.shutDone {
		c.shutDone = true
		// ENOTCONN: the connection was reset meanwhile; the read below
		// reports the reset.
		if err := l.k.Shutdown(c.ch.fd, unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
			c.closeNow(c.opError("shutdown", err))
			return
		}
	}
	if c.in != nil {
		putBuffer(c.in) // the handler asked to close: its unread input goes
		c.in = nil
	}
	c.untrack()
	c.setInterest(EventRead)
	if c.state != connOpen {
		return
	}
	c.state = connLinger
	c.startLinger(c.loop.g.cfg.lingerTimeout)
	if l.tracing {
		l.trace("linger fd=%d", c.ch.fd)
	}
}

// lingerRead reads and discards what a lingering connection's peer sends,
// and closes the connection at the peer's EOF or on an error.
func (c *Conn) lingerRead() {
	l := c.loop
	n, err := l.k.Read(c.ch.fd, l.readBuf)
	switch {
	case n > 0:
		c.lingerCount(n)
	case err == nil: // the peer's EOF: it has read up to our FIN
		c.closeNow(nil)
	case err == unix.EAGAIN || err == unix.EINTR:
	default:
		c.closeNow(c.opError("read", err))
	}
}

// lingerExpired closes a connection whose linger timed out without the
// peer's EOF. It first reads what has arrived (a close with unread input
// would reset the connection and drop output the peer has not yet
// received), then closes: output still queued in the kernel is then sent
// by the kernel, after the close.
func (c *Conn) lingerExpired() {
	l := c.loop
	bump(&l.stats.lingerExpired, 1)
	for c.state == connLinger {
		n, err := l.k.Read(c.ch.fd, l.readBuf)
		if n > 0 {
			c.lingerCount(n)
			continue
		}
		switch {
		case err == nil:
			c.closeNow(nil)
		case err == unix.EAGAIN || err == unix.EINTR:
			c.closeNow(nil)
		default:
			c.closeNow(c.opError("read", err))
		}
	}
}

// lingerCount counts n discarded bytes, resetting a peer that sends more
// than LingerMaxBytes after our close.
func (c *Conn) lingerCount(n int) {
	c.loop.bytesRead(n)
	if c.x.lingered += n; c.x.lingered > LingerMaxBytes {
		c.closeNow(fmt.Errorf("%w: more than %d bytes read while lingering", ErrInputTooLarge, LingerMaxBytes))
	}
}

// closeNow ends the connection at once: its buffers are released, it leaves
// the loop, OnClose runs with err, and the descriptor is closed. Output not
// yet flushed is lost; callers pass an error saying why unless the output is
// known to be empty. Loop goroutine; a no-op on a closed connection.
func (c *Conn) closeNow(err error) {
	if c.state == connClosed {
		return
	}
	was := c.state
	opened := was == connOpen || was == connLinger
	registered := opened || was == connHandshake
	c.state = connClosed
	l := c.loop
	c.mu.Lock()
	c.setLocked(sharedWClosed | sharedCloseReq)
	c.clearLocked(sharedInline) // ended during OnMessage: no flush follows
	if out := c.out; out != nil {
		if out.Len() > 0 && err == nil {
			err = fmt.Errorf("%w: %d bytes of output not flushed", l.closedErr(), out.Len())
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
	if was == connHandshake && c.proxyPending() {
		c.proxyFailed(err)
	}
	if t := c.tlsOf(); t != nil {
		if report := c.releaseTLS(t, was == connHandshake, err); report != nil {
			defer report(nil, err) // last, after the descriptor is closed (deferred below)
		}
	}
	fd := c.ch.fd
	if registered {
		// A detached descriptor (see pausedFailure) is not in the
		// Dispatcher: nothing to delete.
		if c.ch.interest&eventDetached == 0 {
			if derr := l.d.Delete(fd); derr != nil && !errors.Is(derr, ErrDispatcherClosed) {
				l.log.Error("reactor: deregistering connection", "loop", l.name, "fd", fd, "err", derr)
			}
		}
		l.channels.del(fd)
		l.conns--
		l.numConns.Add(-1)
	}
	// The descriptor is closed after OnClose, so LocalAddr still works there;
	// deferred so a panicking OnClose cannot leak it.
	defer func() {
		c.mu.Lock()
		c.setLocked(sharedFDClosed)
		c.mu.Unlock()
		_ = l.k.Close(fd) // nothing useful to do if close fails: the fd is gone either way
		if l.g != nil {
			l.g.connGone()
		}
	}()
	if opened {
		l.countClose(c, err)
		l.current = nil
		c.callOnClose(err)
	}
}

// abort ends the connection with a reset: SO_LINGER with a zero timeout
// makes close(2) send RST instead of FIN and drop whatever output is still
// queued, so the peer sees "connection reset", not an orderly end. It is how
// a connection whose handler panicked ends: a FIN after the output written
// so far would pass a reply cut short for a complete one. (No FIN may go
// before it: a peer that has read our FIN is no longer told of the reset.)
func (c *Conn) abort(err error) {
	if c.state == connOpen && !c.shutDone {
		if lerr := c.loop.k.SetLinger(c.ch.fd, 0); lerr != nil {
			c.loop.log.Debug("reactor: SO_LINGER", "fd", c.ch.fd, "err", lerr)
		}
	}
	c.closeNow(err)
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
	c.h.OnClose(c, err)
}

// opError wraps a syscall error as net.OpError does, with the connection's
// two addresses. An error that is already a *os.SyscallError (the
// Dispatcher wraps its own) is not wrapped twice.
func (c *Conn) opError(op string, err error) error {
	var se *os.SyscallError
	if !errors.As(err, &se) {
		err = os.NewSyscallError(op, err)
	}
	network := "tcp"
	if c.ch.unix {
		network = "unix"
	}
	return &net.OpError{
		Op:     op,
		Net:    network,
		Source: c.LocalAddr(),
		Addr:   c.RemoteAddr(),
		Err:    err,
	}
}

// sockaddrToNetAddr converts a socket address to a *net.TCPAddr or a
// *net.UnixAddr (nil for another family).
func sockaddrToNetAddr(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		return net.TCPAddrFromAddrPort(sockaddrToAddrPort(a))
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	return nil
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
