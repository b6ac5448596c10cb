// This file holds the TCP model: endpoints with bounded receive and send
// buffers, read, write, shutdown, close and reset with Linux's semantics,
// and the byte queues behind them. Guarded by the Kernel's mutex.

package sim

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// connection is one stream between two endpoints: a TCP connection between
// a server-side descriptor and a client Conn, or an AF_UNIX socketpair
// between two descriptors.
type connection struct {
	unixPair bool // socketpair semantics where they differ from TCP (see endpoint)
}

// endpoint is one end of a connection. Bytes written at one end go into
// the other end's receive buffer, bounded by its window; what does not fit
// waits in the writer's send queue, in flight, and moves on as room
// appears (pumpLocked). A descriptor's send queue is bounded by its send
// buffer (Config.SendBuffer, SO_SNDBUF), so a write takes what the peer's
// window and our send buffer have room for; a client's is unbounded, so a
// test's Write never comes up short. A socketpair has no send buffer:
// AF_UNIX puts written bytes straight into the peer's queue. All fields are
// guarded by the kernel's mutex.
//
// The TCP state is kept as a few flags rather than the RFC 793 state
// machine, because only what read, write and readiness report is
// observable:
//
//   - wrShut: we sent FIN (shutdown SHUT_WR or, for a client, CloseWrite).
//     The peer reads EOF once it has drained what came before. The FIN
//     arrives only after our bytes in flight (peerFinished).
//   - rdShut: shutdown(SHUT_RD). Reads return what is buffered, then EOF
//     instead of EAGAIN; data that still arrives is buffered and readable
//     (this is what Linux does for TCP; it neither discards it nor resets).
//   - closed: the descriptor (or the client Conn) is closed. For TCP, the
//     peer sees it as FIN; writing to it is answered with RST. For a
//     socketpair, the peer sees both directions finished (EPOLLHUP) and
//     writing to it fails with EPIPE, as unix(7) stream sockets do.
//   - reset, err: the connection was reset. The end that sent the RST
//     (closed with unread input or SO_LINGER 0, or reached by a segment
//     after it closed) discarded everything it held, its unread bytes and
//     its bytes in flight. The end that received it keeps what is in its
//     receive buffer and loses its own bytes in flight, as Linux's
//     tcp_reset does (it purges the write queue only); err is its pending
//     error (sk_err). Reads return the buffered bytes first, because
//     tcp_recvmsg copies from the receive queue before it looks at sk_err,
//     then ECONNRESET once, then EOF; writes return the pending error once,
//     then EPIPE. One pending error serves both: whichever call comes first
//     reports it. If the peer's FIN had arrived before the RST (CLOSE_WAIT),
//     Linux sets EPIPE instead of ECONNRESET and reads return EOF without
//     reporting it (tcp_recvmsg checks the FIN's SOCK_DONE first), so only
//     a write sees it: err is then EPIPE, which reads never report. A
//     socketpair's reset (its peer closed with unread bytes) is always
//     ECONNRESET, and only reads report it: a write finds the peer gone
//     first and fails with EPIPE, as unix_stream_sendmsg does.
type endpoint struct {
	conn   *connection
	peer   *endpoint
	fd     int   // descriptor; -1 for a client, a connection not yet accepted, or after close
	client *Conn // the Conn this endpoint is, for the test's side; nil for a descriptor

	recv   byteQueue // bytes arrived, not yet read
	window int       // capacity of recv: writes to this end stop when it is full
	sendq  byteQueue // bytes written, in flight: not yet moved into peer.recv
	sndbuf int       // descriptor only: capacity of sendq (a client's is unbounded)

	local, remote netip.AddrPort

	wrShut, rdShut bool
	closed         bool
	reset          bool
	err            unix.Errno

	// A descriptor's connect (Connect) that has not ended: its SYN waits
	// for room in synOn's accept queue, or was lost (synOn nil). It reports
	// no readiness, reads and writes EAGAIN.
	connecting bool
	synOn      *listener
}

// room is how many more bytes this end's receive buffer accepts.
func (e *endpoint) room() int { return max(e.window-e.recv.Len(), 0) }

// sendRoom is how many bytes a write on this descriptor end accepts now:
// what the peer's receive buffer has room for, which arrives at once, plus
// what our send buffer has room for, which waits there in flight. (While
// bytes are in flight the peer's buffer is full: pumpLocked keeps it so.)
func (e *endpoint) sendRoom() int { return e.peer.room() + max(e.sndbuf-e.sendq.Len(), 0) }

// peerFinished reports whether the peer's FIN has arrived: it shut down its
// write side or closed, and nothing it sent is still queued behind the FIN.
// Bytes already in e.recv are read before the EOF.
func (e *endpoint) peerFinished() bool {
	p := e.peer
	return (p.closed || p.wrShut) && p.sendq.Len() == 0
}

// failed reports a connection that Linux would flag with EPOLLERR or
// EPOLLHUP: reset, or finished in both directions (our FIN sent and the
// peer's received, or reading shut down), or for a socketpair a peer that
// has closed. Such a descriptor is reported ready for Read|Write whatever
// its interest.
func (e *endpoint) failed() bool {
	if e.reset {
		return true
	}
	if e.conn.unixPair && e.peer.closed {
		return true
	}
	return e.wrShut && (e.rdShut || e.peerFinished())
}

// readiness returns the events to report for interest: a failure as
// Read|Write regardless of interest (EPOLLERR/EPOLLHUP); otherwise readable
// (bytes, the peer's FIN, or reading shut down) and writable (room at the
// peer or in our send buffer, or a write that would not block because it
// fails or is dropped) filtered by interest. A mere peer half-close is
// therefore reported only to Read interest, like EPOLLIN on FIN.
func (e *endpoint) readiness(interest uint32) uint32 {
	if e.connecting {
		return 0
	}
	if e.failed() {
		return Read | Write
	}
	var ev uint32
	if e.recv.Len() > 0 || e.rdShut || e.peerFinished() {
		ev |= Read
	}
	// After SHUT_WR Linux reports EPOLLOUT (write would not block: it fails
	// with EPIPE). A TCP peer that has closed swallows what is written.
	if e.wrShut || e.peer.closed || e.sendRoom() > 0 {
		ev |= Write
	}
	return ev & interest
}

// resetLocked resets e's connection with an RST that e sends, as Linux
// does when e is closed with unread input or with SO_LINGER 0, or when a
// segment reaches e after it has closed. e discards everything it held:
// its unread bytes and its bytes in flight. The peer receives the RST
// (receiveReset). The caller then marks e closed if it is closing. cause
// goes into the trace, with the count of bytes in flight lost, if any.
func (k *Kernel) resetLocked(e *endpoint, cause string) {
	p := e.peer
	fin := p.finArrived() // before e changes
	lost := e.sendq.Len()
	e.reset, e.err = true, 0
	e.recv.clear()
	e.sendq.clear()
	lost += p.receiveReset(fin)
	k.recordResetLocked(e, cause, lost)
}

// finArrived reports whether, for an RST arriving now, e counts as having
// received the peer's FIN (TCP's CLOSE_WAIT, where Linux makes the reset
// EPIPE; see endpoint). AF_UNIX has no such state: a socketpair's reset is
// always ECONNRESET.
func (e *endpoint) finArrived() bool { return !e.conn.unixPair && e.peerFinished() }

// receiveReset applies an RST arriving at e, as Linux's tcp_reset does: e's
// bytes in flight are dropped, what e has received stays readable, and e
// gets a pending error (see endpoint): ECONNRESET, or EPIPE if the peer's
// FIN had arrived (fin, from finArrived). A closed end keeps no error. It
// returns how many bytes in flight were dropped.
func (e *endpoint) receiveReset(fin bool) int {
	lost := e.sendq.Len()
	e.sendq.clear()
	e.reset = true
	switch {
	case e.closed:
		e.err = 0
	case fin:
		e.err = unix.EPIPE
	default:
		e.err = unix.ECONNRESET
	}
	return lost
}

// recordResetLocked traces the reset of e's connection.
func (k *Kernel) recordResetLocked(e *endpoint, cause string, lost int) {
	if lost > 0 {
		cause += fmt.Sprintf(", %d bytes in flight lost", lost)
	}
	k.recordLocked(Record{Kind: KindReset, FD: serverFD(e), Client: clientID(e), Text: cause})
}

// pumpLocked moves bytes from src's send queue into its peer's receive
// buffer as far as the window allows. Called whenever either may have
// changed: after a write, after a read from the peer, after a window
// grows. Bytes keep moving after src has closed (with FIN): the kernel
// still delivers what a closed socket had sent.
func (k *Kernel) pumpLocked(src *endpoint) {
	dst := src.peer
	if src.sendq.Len() == 0 || dst.closed || dst.reset {
		return
	}
	n := min(src.sendq.Len(), dst.room())
	if n == 0 {
		return
	}
	dst.recv.write(src.sendq.peek(n))
	src.sendq.discard(n)
}

// serverFD returns the descriptor of the connection's non-client end (for
// a socketpair, e's own), or -1.
func serverFD(e *endpoint) int {
	if e.client != nil {
		return e.peer.fd
	}
	return e.fd
}

// clientID returns the number of the connection's client, or 0.
func clientID(e *endpoint) int {
	switch {
	case e.client != nil:
		return e.client.id
	case e.peer.client != nil:
		return e.peer.client.id
	}
	return 0
}

// socketLocked returns the connected-socket file fd, or the error read(2)
// and write(2) give for other descriptors.
func (k *Kernel) socketLocked(fd int) (*file, unix.Errno) {
	f, errno := k.fileLocked(fd)
	if errno != 0 {
		return nil, errno
	}
	switch f.kind {
	case fileListener:
		return nil, unix.ENOTCONN // read/write on a listening socket
	case filePoller:
		return nil, unix.EINVAL // read on an epoll descriptor
	}
	return f, 0
}

// Read is read(2) on a simulated socket. In order: an injected fault;
// buffered bytes (also after a reset: they arrived before the RST); a
// pending ECONNRESET, once; EOF after a reset, or once the peer's FIN has
// arrived (or reading was shut down); EAGAIN.
func (k *Kernel) Read(fd int, p []byte) (int, error) {
	iov := [1][]byte{p}
	return k.Readv(fd, iov[:])
}

// Readv is readv(2): Read filling the buffers in turn.
func (k *Kernel) Readv(fd int, iov [][]byte) (int, error) {
	k.lock()
	defer k.unlock()
	n, errno := k.readLocked(fd, iov, false)
	return n, errOf(errno)
}

// Peek is recv(2) with MSG_PEEK: Read that leaves the bytes queued. It
// meets the same faults as Read (OpRead), short counts included, as a
// real peek returns only what has arrived so far.
func (k *Kernel) Peek(fd int, p []byte) (int, error) {
	k.lock()
	defer k.unlock()
	iov := [1][]byte{p}
	n, errno := k.readLocked(fd, iov[:], true)
	return n, errOf(errno)
}

func (k *Kernel) readLocked(fd int, iov [][]byte, peek bool) (int, unix.Errno) {
	kind := KindRead
	if peek {
		kind = KindPeek
	}
	f, errno := k.socketLocked(fd)
	if errno == 0 {
		if ft := k.faultLocked(OpRead, f, false); ft != nil {
			errno = k.injectErrLocked(OpRead, f, ft.f.Err)
		}
	}
	if errno != 0 {
		k.recordLocked(Record{Kind: kind, FD: fd, Err: errno})
		return 0, errno
	}
	e := f.ep
	want := iovLen(iov)
	n := 0
	switch {
	case want > 0 && e.recv.Len() > 0:
		n = min(want, e.recv.Len())
		if n >= 2 && k.faultLocked(OpRead, f, true) != nil {
			n = 1 + k.rng.IntN(n-1)
		}
		if peek {
			copy(iov[0], e.recv.peek(n))
			k.recordLocked(Record{Kind: kind, FD: fd, N: n})
			return n, 0
		}
		left := n
		for _, b := range iov {
			if left == 0 {
				break
			}
			left -= e.recv.read(b[:min(len(b), left)])
		}
		k.pumpLocked(e.peer)
	case e.err == unix.ECONNRESET: // a pending EPIPE is for write only (see endpoint)
		errno, e.err = e.err, 0
		k.recordLocked(Record{Kind: kind, FD: fd, Err: errno})
		return 0, errno
	case e.reset || want == 0:
	case !e.rdShut && !e.peerFinished():
		k.recordLocked(Record{Kind: kind, FD: fd, Err: unix.EAGAIN})
		return 0, unix.EAGAIN
	}
	k.recordLocked(Record{Kind: kind, FD: fd, N: n})
	return n, 0
}

// Write is write(2) on a simulated socket. In order: an injected fault; a
// pending error (ECONNRESET or EPIPE, once); EPIPE after a reset or our own
// SHUT_WR; to a TCP peer that has closed, the bytes are accepted and
// dropped and the connection is reset (Linux answers them with RST): since
// the peer's FIN came first, reads return what is buffered, then EOF, and
// writes EPIPE (to a socketpair peer that has closed: EPIPE at once);
// otherwise as many bytes as the peer's receive buffer and our send buffer
// have room for (a short count), or EAGAIN when both are full. Bytes that
// do not fit in the peer's receive buffer wait in our send buffer, in
// flight, until the peer reads; a reset loses them.
func (k *Kernel) Write(fd int, p []byte) (int, error) {
	iov := [1][]byte{p}
	return k.Writev(fd, iov[:])
}

// Writev is writev(2): Write taking the buffers in turn.
func (k *Kernel) Writev(fd int, iov [][]byte) (int, error) {
	k.lock()
	defer k.unlock()
	n, errno := k.writeLocked(fd, iov)
	return n, errOf(errno)
}

func (k *Kernel) writeLocked(fd int, iov [][]byte) (int, unix.Errno) {
	f, errno := k.socketLocked(fd)
	if errno == 0 {
		if ft := k.faultLocked(OpWrite, f, false); ft != nil {
			errno = k.injectErrLocked(OpWrite, f, ft.f.Err)
		}
	}
	if errno == 0 {
		e := f.ep
		switch {
		case e.connecting:
			errno = unix.EAGAIN // the connect has not ended: nothing can be sent yet
		case e.conn.unixPair && (e.peer.closed || e.peer.rdShut):
			// unix_stream_sendmsg checks the peer before any pending
			// error, which it leaves for read.
			errno = unix.EPIPE
		case e.err != 0:
			errno, e.err = e.err, 0
		case e.reset || e.wrShut:
			errno = unix.EPIPE
		}
	}
	if errno != 0 {
		k.recordLocked(Record{Kind: KindWrite, FD: fd, Err: errno})
		return 0, errno
	}
	e := f.ep
	want := iovLen(iov)
	if want == 0 {
		k.recordLocked(Record{Kind: KindWrite, FD: fd})
		return 0, 0
	}
	if e.peer.closed {
		k.recordLocked(Record{Kind: KindWrite, FD: fd, N: want, Text: "dropped: peer closed"})
		k.resetLocked(e.peer, "write to closed peer")
		return want, 0
	}
	n := min(want, e.sendRoom())
	if n == 0 {
		k.recordLocked(Record{Kind: KindWrite, FD: fd, Err: unix.EAGAIN})
		return 0, unix.EAGAIN
	}
	if n >= 2 && k.faultLocked(OpWrite, f, true) != nil {
		n = 1 + k.rng.IntN(n-1)
	}
	left := n
	for _, b := range iov {
		if left == 0 {
			break
		}
		m := min(len(b), left)
		e.sendLocked(b[:m])
		left -= m
	}
	k.recordLocked(Record{Kind: KindWrite, FD: fd, N: n})
	return n, 0
}

// sendLocked puts p, which the caller has made fit (sendRoom), on its way
// to the peer: into the peer's receive buffer as far as it has room, the
// rest into e's send queue. Bytes already in flight go first.
func (e *endpoint) sendLocked(p []byte) {
	direct := 0
	if e.sendq.Len() == 0 {
		direct = min(len(p), e.peer.room())
		e.peer.recv.write(p[:direct])
	}
	e.sendq.write(p[direct:])
}

func iovLen(iov [][]byte) int {
	n := 0
	for _, b := range iov {
		n += len(b)
	}
	return n
}

// Shutdown is shutdown(2). SHUT_WR sends FIN: the peer reads EOF once it
// has drained what was sent before, and our writes fail with EPIPE.
// SHUT_RD makes our reads return EOF once the buffer is drained instead of
// EAGAIN; the peer is not told (TCP has no way to) and may go on writing.
// SHUT_RDWR is both; with both directions finished the descriptor reports
// a failure (EPOLLHUP). On a reset connection it returns ENOTCONN, as Linux
// does once the connection is closed; on a listener ENOTCONN too (the
// simulation does not model shutting a listener down).
func (k *Kernel) Shutdown(fd int, how int) error {
	k.lock()
	defer k.unlock()
	errno := k.shutdownLocked(fd, how)
	return errOf(errno)
}

func (k *Kernel) shutdownLocked(fd int, how int) unix.Errno {
	f, errno := k.socketLocked(fd)
	if errno == 0 {
		if ft := k.faultLocked(OpShutdown, f, false); ft != nil {
			errno = k.injectErrLocked(OpShutdown, f, ft.f.Err)
		}
	}
	if errno == 0 {
		switch {
		case how != unix.SHUT_RD && how != unix.SHUT_WR && how != unix.SHUT_RDWR:
			errno = unix.EINVAL
		case f.ep.reset || f.ep.connecting:
			errno = unix.ENOTCONN
		}
	}
	if errno != 0 {
		k.recordLocked(Record{Kind: KindShutdown, FD: fd, Err: errno, Text: shutHow(how)})
		return errno
	}
	e := f.ep
	if how != unix.SHUT_WR {
		e.rdShut = true
	}
	if how != unix.SHUT_RD {
		e.wrShut = true
	}
	k.recordLocked(Record{Kind: KindShutdown, FD: fd, Text: shutHow(how)})
	return 0
}

func shutHow(how int) string {
	switch how {
	case unix.SHUT_RD:
		return "SHUT_RD"
	case unix.SHUT_WR:
		return "SHUT_WR"
	case unix.SHUT_RDWR:
		return "SHUT_RDWR"
	}
	return "SHUT_?"
}

// Close is close(2). It frees the descriptor at once, removing it from
// every poller it is registered with, as epoll does, even when it returns
// an (injected) error: Linux frees the descriptor before it can fail, which
// is why close is never retried. Closing a connected socket whose receive
// buffer holds unread bytes (or towards which a client still has bytes
// queued), or one with SO_LINGER on and 0 seconds (SetLinger), resets the
// connection: the bytes still in flight from it are lost, and the peer
// reads what had reached it, then ECONNRESET (see endpoint). Otherwise the
// peer sees FIN after the bytes in flight, which are still delivered as
// the peer reads. (SO_LINGER with a timeout above 0 changes nothing here:
// on Linux it makes close wait for the bytes in flight, but the simulation
// delivers them anyway and never blocks.) Closing a listener resets the
// connections still waiting to be accepted. Closing a poller's descriptor
// closes the poller.
func (k *Kernel) Close(fd int) error {
	k.lock()
	defer k.unlock()
	f, errno := k.fileLocked(fd)
	if errno != 0 {
		k.recordLocked(Record{Kind: KindClose, FD: fd, Err: errno})
		return errno
	}
	var injected unix.Errno
	if ft := k.faultLocked(OpClose, f, false); ft != nil {
		injected = ft.f.Err
	}
	if f.kind == filePoller {
		f.poller.closeLocked()
		return errOf(injected)
	}
	k.recordLocked(Record{Kind: KindClose, FD: fd, Err: injected})
	k.freeFDLocked(f)
	if f.kind == fileListener {
		k.closeListenerLocked(f.lis)
	} else {
		k.closeEndpointLocked(f)
	}
	return errOf(injected)
}

// closeEndpointLocked closes a descriptor's end of a connection (the
// descriptor itself is already freed): RST if bytes towards it are left
// unread or SO_LINGER says abort (TCP only: AF_UNIX ignores SO_LINGER),
// FIN otherwise.
func (k *Kernel) closeEndpointLocked(f *file) {
	e := f.ep
	if e.connecting {
		k.dropSynLocked(e) // the attempt is abandoned; no listener ever saw it
		e.peer.closed = true
	}
	if !e.reset {
		switch {
		case e.recv.Len() > 0 || e.peer.sendq.Len() > 0:
			k.resetLocked(e, "close with unread data")
		case f.abort && !e.conn.unixPair:
			k.resetLocked(e, "close with SO_LINGER 0")
		}
	}
	e.closed = true
	e.recv.clear()
	e.fd = -1
}

// Socketpair returns a connected pair of descriptors with AF_UNIX stream
// semantics (see endpoint): the same as TCP, except that a peer's close is
// reported as both directions finished and writing to it fails with EPIPE.
// It fails with EMFILE when either descriptor would exceed the limit.
func (k *Kernel) Socketpair() ([2]int, error) {
	k.lock()
	defer k.unlock()
	c := &connection{unixPair: true}
	a := &endpoint{conn: c, window: k.cfg.ReceiveBuffer} // no send buffer: see endpoint
	b := &endpoint{conn: c, window: k.cfg.ReceiveBuffer, peer: a}
	a.peer = b
	fa, fb := &file{kind: fileSocket, ep: a}, &file{kind: fileSocket, ep: b}
	var errno unix.Errno
	if a.fd, errno = k.allocFDLocked(fa); errno != 0 {
		return [2]int{-1, -1}, errno
	}
	if b.fd, errno = k.allocFDLocked(fb); errno != 0 {
		k.freeFDLocked(fa)
		return [2]int{-1, -1}, errno
	}
	k.recordLocked(Record{Kind: KindSocketpair, FD: a.fd, N: b.fd})
	return [2]int{a.fd, b.fd}, nil
}

// SetsockoptInt is setsockopt(2) with an int value. Every option is
// recorded (Sockopt reads it back) and accepted on sockets and listeners;
// on a connected socket SO_RCVBUF also sets the size of its receive buffer
// and SO_SNDBUF (TCP only) of its send buffer, taken as given (Linux
// doubles them). Options set on a listener are only recorded: accepted
// sockets do not inherit them.
func (k *Kernel) SetsockoptInt(fd, level, opt, value int) error {
	k.lock()
	defer k.unlock()
	f, errno := k.sockoptFileLocked(fd)
	if errno != 0 {
		return errno
	}
	f.setOptLocked(level, opt, value)
	if f.kind == fileSocket && level == unix.SOL_SOCKET {
		switch {
		case opt == unix.SO_RCVBUF:
			f.ep.window = max(value, 0)
			k.pumpLocked(f.ep.peer)
		case opt == unix.SO_SNDBUF && !f.ep.conn.unixPair:
			f.ep.sndbuf = max(value, 0)
		}
	}
	return nil
}

// SetLinger is setsockopt(2) with SO_LINGER, as kernel.Interface has it:
// sec < 0 turns lingering off, sec >= 0 on with that timeout. With 0
// seconds, closing a TCP socket resets its connection (see Close). It is
// recorded like an int option: Sockopt(fd, SOL_SOCKET, SO_LINGER) returns
// sec, or -1 for off.
func (k *Kernel) SetLinger(fd int, sec int) error {
	k.lock()
	defer k.unlock()
	f, errno := k.sockoptFileLocked(fd)
	if errno != 0 {
		return errno
	}
	sec = max(sec, -1)
	f.setOptLocked(unix.SOL_SOCKET, unix.SO_LINGER, sec)
	f.abort = sec == 0
	return nil
}

// sockoptFileLocked returns the file fd, whose socket options a caller
// sets: EBADF if it is not open, ENOTSOCK for a poller's descriptor.
func (k *Kernel) sockoptFileLocked(fd int) (*file, unix.Errno) {
	f, errno := k.fileLocked(fd)
	if errno == 0 && f.kind == filePoller {
		errno = unix.ENOTSOCK
	}
	return f, errno
}

// Sockopt returns the value last set with SetsockoptInt for fd, level and
// opt, and whether one was set: tests check that a server configures its
// sockets.
func (k *Kernel) Sockopt(fd, level, opt int) (int, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, errno := k.fileLocked(fd)
	if errno != 0 {
		return 0, false
	}
	v, ok := f.opts[[2]int{level, opt}]
	return v, ok
}

// Getsockname returns the local address of a socket: a listener's bound
// address, a connection's local address (*unix.SockaddrInet4 or 6), or an
// empty *unix.SockaddrUnix for a socketpair.
func (k *Kernel) Getsockname(fd int) (unix.Sockaddr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, errno := k.fileLocked(fd)
	if errno != 0 {
		return nil, errno
	}
	switch f.kind {
	case fileListener:
		return sockaddrOf(f.lis.addr), nil
	case fileSocket:
		if f.ep.conn.unixPair {
			return &unix.SockaddrUnix{}, nil
		}
		return sockaddrOf(f.ep.local), nil
	}
	return nil, unix.ENOTSOCK
}

// Getpeername returns the remote address of a connected socket. It fails
// with ENOTCONN on a listener and on a connection that has been reset, as
// Linux does once the connection is gone.
func (k *Kernel) Getpeername(fd int) (unix.Sockaddr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, errno := k.fileLocked(fd)
	if errno != 0 {
		return nil, errno
	}
	switch f.kind {
	case fileListener:
		return nil, unix.ENOTCONN
	case fileSocket:
		if f.ep.reset || f.ep.connecting {
			return nil, unix.ENOTCONN
		}
		if f.ep.conn.unixPair {
			return &unix.SockaddrUnix{}, nil
		}
		return sockaddrOf(f.ep.remote), nil
	}
	return nil, unix.ENOTSOCK
}

// byteQueue is a FIFO of bytes: appended at the back, read from the front.
// Its storage is reused, so a steady stream allocates nothing.
type byteQueue struct {
	buf []byte // buf[off:] is queued
	off int
}

// Len returns the number of queued bytes.
func (q *byteQueue) Len() int { return len(q.buf) - q.off }

// write appends p, first moving the queued bytes to the front when that
// saves growing the storage.
func (q *byteQueue) write(p []byte) {
	if q.off > 0 && len(q.buf)+len(p) > cap(q.buf) {
		n := copy(q.buf, q.buf[q.off:])
		q.buf = q.buf[:n]
		q.off = 0
	}
	q.buf = append(q.buf, p...)
}

// read moves up to len(p) bytes from the front into p.
func (q *byteQueue) read(p []byte) int {
	n := copy(p, q.buf[q.off:])
	q.discard(n)
	return n
}

// peek returns the first n queued bytes without consuming them; valid
// until the next change to q.
func (q *byteQueue) peek(n int) []byte { return q.buf[q.off : q.off+n] }

// discard drops the first n queued bytes.
func (q *byteQueue) discard(n int) {
	q.off += n
	if q.off == len(q.buf) {
		q.buf = q.buf[:0]
		q.off = 0
	}
}

// clear drops everything and the storage with it.
func (q *byteQueue) clear() { *q = byteQueue{} }
