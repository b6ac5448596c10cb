// This file holds Conn, the test's end of a simulated connection. Its
// methods are safe from any goroutine; like every kernel call they take the
// Kernel's mutex.

package sim

import (
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Conn is the client end of a simulated TCP connection: the test's side.
// It has no descriptor in the kernel's table. Its methods never block and
// are safe for concurrent use from any goroutine; they only change kernel
// state. In stepped mode nothing reacts to them (no event loop runs) until
// the test steps the simulation.
//
// Unlike a socket, Write never comes up short: what it accepts waits in an
// unbounded send queue, and the kernel moves it into the server end's
// receive buffer as room appears there, so a test script need not loop.
type Conn struct {
	k  *Kernel
	id int       // rank among Conns dialled by k, from 1; "c<id>" in the trace
	ep *endpoint // guarded by k.mu
}

// ID returns the connection's number: the Conns a kernel dials are
// numbered 1, 2, ... and appear as c1, c2, ... in its trace.
func (c *Conn) ID() int { return c.id }

// String returns "c<ID>".
func (c *Conn) String() string { return fmt.Sprintf("c%d", c.id) }

// Write queues all of p to be sent and returns len(p), nil. It fails with
// net.ErrClosed after Close or Reset; after the connection was reset, with
// its pending error once (ECONNRESET, or EPIPE if the server's FIN had
// arrived first), then EPIPE; with EPIPE after CloseWrite. Writing to a
// server end that has closed is accepted, then answered with RST: the
// connection is reset, and as the server's FIN came first, Read returns
// what is buffered, then EOF, and Write EPIPE (as on Linux), unless the
// server's bytes in flight had not all arrived: they are lost, and Read
// reports ECONNRESET after the rest.
func (c *Conn) Write(p []byte) (int, error) {
	k := c.k
	k.lock()
	defer k.unlock()
	e := c.ep
	var err error
	switch {
	case e.closed:
		return 0, net.ErrClosed
	case e.err != 0:
		err, e.err = e.err, 0
	case e.reset || e.wrShut:
		err = unix.EPIPE
	}
	if err != nil {
		k.recordLocked(Record{Kind: KindWrite, FD: -1, Client: c.id, Err: err.(unix.Errno)})
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if e.peer.closed {
		k.recordLocked(Record{Kind: KindWrite, FD: -1, Client: c.id, N: len(p), Text: "dropped: peer closed"})
		k.resetLocked(e.peer, "write to closed peer")
		return len(p), nil
	}
	e.sendq.write(p)
	k.pumpLocked(e)
	k.recordLocked(Record{Kind: KindWrite, FD: -1, Client: c.id, N: len(p)})
	return len(p), nil
}

// Read moves into p what has arrived from the server and returns how much;
// reading makes room for the server's bytes in flight, which move in. With
// nothing buffered it returns 0, nil, or io.EOF once the server's FIN has
// arrived. After a reset the bytes that arrived before it are still read
// first, then ECONNRESET is returned once (unless a Write reported the
// reset first, or the server's FIN had arrived before it: see Write), then
// io.EOF, as on Linux; after Close or Reset, net.ErrClosed.
func (c *Conn) Read(p []byte) (int, error) {
	k := c.k
	k.lock()
	defer k.unlock()
	e := c.ep
	switch {
	case e.closed:
		return 0, net.ErrClosed
	case e.recv.Len() > 0 && len(p) > 0:
		n := e.recv.read(p)
		k.pumpLocked(e.peer)
		k.recordLocked(Record{Kind: KindRead, FD: -1, Client: c.id, N: n})
		return n, nil
	case e.err == unix.ECONNRESET: // a pending EPIPE is for Write only (see endpoint)
		err := e.err
		e.err = 0
		k.recordLocked(Record{Kind: KindRead, FD: -1, Client: c.id, Err: err})
		return 0, err
	case e.reset || (len(p) > 0 && e.peerFinished()):
		return 0, io.EOF
	}
	return 0, nil
}

// ReadAll returns everything that has arrived and not been read (nil if
// nothing). It takes only what is in the receive buffer, not the bytes in
// flight that reading it lets in (call it again for those). It reports no
// error: a pending reset stays for Read to report.
func (c *Conn) ReadAll() []byte {
	k := c.k
	k.lock()
	defer k.unlock()
	e := c.ep
	if e.closed || e.recv.Len() == 0 {
		return nil
	}
	b := make([]byte, e.recv.Len())
	e.recv.read(b)
	k.pumpLocked(e.peer)
	k.recordLocked(Record{Kind: KindRead, FD: -1, Client: c.id, N: len(b)})
	return b
}

// CloseWrite shuts down the client's write side: the server reads EOF
// after everything written before. It returns net.ErrClosed after Close,
// ENOTCONN after a reset, and nil when repeated.
func (c *Conn) CloseWrite() error {
	k := c.k
	k.lock()
	defer k.unlock()
	e := c.ep
	switch {
	case e.closed:
		return net.ErrClosed
	case e.reset:
		return unix.ENOTCONN
	}
	e.wrShut = true
	k.recordLocked(Record{Kind: KindShutdown, FD: -1, Client: c.id, Text: "SHUT_WR"})
	return nil
}

// Close closes the client end. If bytes from the server are left unread
// (or in flight towards it), the connection is reset (RST), as Linux does:
// what the client had queued and not yet delivered is lost, and the server
// reads what had reached it, then ECONNRESET. Otherwise the server reads
// what is still queued, then EOF, and what it writes afterwards resets the
// connection. It returns net.ErrClosed when repeated.
func (c *Conn) Close() error {
	k := c.k
	k.lock()
	defer k.unlock()
	e := c.ep
	if e.closed {
		return net.ErrClosed
	}
	k.recordLocked(Record{Kind: KindClose, FD: -1, Client: c.id})
	if !e.reset && (e.recv.Len() > 0 || e.peer.sendq.Len() > 0) {
		k.resetLocked(e, "close with unread data")
	}
	e.closed = true
	e.recv.clear()
	return nil
}

// Reset aborts the connection now, like close with SO_LINGER 0: the
// client's unread bytes and its bytes not yet delivered are discarded, and
// so are the server end's bytes in flight; the server end reads what had
// reached it, then ECONNRESET. The Conn is closed afterwards. It returns
// net.ErrClosed after Close or Reset.
func (c *Conn) Reset() error {
	k := c.k
	k.lock()
	defer k.unlock()
	e := c.ep
	if e.closed {
		return net.ErrClosed
	}
	if !e.reset {
		k.resetLocked(e, "reset by client")
	}
	e.closed = true
	return nil
}

// SetReceiveWindow sets the size of the client's receive buffer: how many
// bytes the server can send before the rest waits in its send buffer and,
// once that is full too, its writes come up short, then fail with EAGAIN.
// A small window makes a slow peer; 0 a peer that reads nothing. Bytes
// already buffered stay; a wider window lets bytes in flight in.
func (c *Conn) SetReceiveWindow(n int) {
	k := c.k
	k.lock()
	defer k.unlock()
	c.ep.window = max(n, 0)
	k.pumpLocked(c.ep.peer)
}

// LocalAddr returns the client's address (*net.TCPAddr).
func (c *Conn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(c.ep.local) }

// RemoteAddr returns the address the client dialled (*net.TCPAddr).
func (c *Conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.ep.remote) }

// Buffered returns how many bytes have arrived from the server and not
// been read.
func (c *Conn) Buffered() int {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	return c.ep.recv.Len()
}

// Pending returns how many written bytes wait in the send queue for room
// in the server end's receive buffer.
func (c *Conn) Pending() int {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	return c.ep.sendq.Len()
}

// InFlight returns how many bytes the server end has written that wait in
// its send buffer for room in the client's receive buffer: what a reset
// now would lose.
func (c *Conn) InFlight() int {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	return c.ep.peer.sendq.Len()
}

// EOF reports whether the server's FIN has arrived, in order: the server
// closed or shut down its write side, its bytes in flight have all
// arrived, and the connection was not reset. Bytes sent before the FIN may
// still be buffered (see Buffered).
func (c *Conn) EOF() bool {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	return !c.ep.reset && c.ep.peerFinished()
}

// WasReset reports whether the connection has been reset: by the client's
// Reset, by the server (closing with unread bytes, writing after the client
// closed), or by an injected ECONNRESET or EPIPE.
func (c *Conn) WasReset() bool {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	return c.ep.reset
}

// ServerFD returns the descriptor of the server end of the connection:
// -1 until a server has accepted it, and again once it is closed.
func (c *Conn) ServerFD() int {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	return c.ep.peer.fd
}
