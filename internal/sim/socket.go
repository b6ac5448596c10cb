// This file holds the TCP model: endpoints with bounded receive buffers,
// read, write, shutdown and close with Linux's semantics, and the byte
// queues behind them. Guarded by the Kernel's mutex.

package sim

import (
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
// the other end's receive buffer, bounded by its window. All fields are
// guarded by the kernel's mutex.
//
// The TCP state is kept as a few flags rather than the RFC 793 state
// machine, because only what read, write and readiness report is
// observable:
//
//   - wrShut: we sent FIN (shutdown SHUT_WR or, for a client, CloseWrite).
//     The peer reads EOF once it has drained what came before. A client's
//     FIN leaves only after its send queue has drained.
//   - rdShut: shutdown(SHUT_RD). Reads return what is buffered, then EOF
//     instead of EAGAIN; data that still arrives is buffered and readable
//     (this is what Linux does for TCP; it neither discards it nor resets).
//   - closed: the descriptor (or the client Conn) is closed. For TCP, the
//     peer sees it as FIN; writing to it is answered with RST. For a
//     socketpair, the peer sees both directions finished (EPOLLHUP) and
//     writing to it fails with EPIPE, as unix(7) stream sockets do.
//   - reset, err: the connection was reset (RST sent or received, or an
//     injected ECONNRESET/EPIPE). err is reported once, by the next read or
//     write; afterwards reads return EOF and writes EPIPE, as on Linux.
//     Unread bytes at both ends are discarded: RFC 793 has the receiver of
//     a RST flush its queues; Linux still lets a reader take bytes that
//     arrived before the RST, so the simulation shows the harsher of the two,
//     which a server must survive anyway.
type endpoint struct {
	conn   *connection
	peer   *endpoint
	fd     int   // descriptor; -1 for a client, a connection not yet accepted, or after close
	client *Conn // the Conn this endpoint is, for the test's side; nil for a descriptor

	recv   byteQueue // bytes arrived, not yet read
	window int       // capacity of recv: writes to this end stop when it is full
	sendq  byteQueue // client only: bytes Written but not yet moved into peer.recv

	local, remote netip.AddrPort

	wrShut, rdShut bool
	closed         bool
	reset          bool
	err            unix.Errno
}

// room is how many more bytes this end's receive buffer accepts.
func (e *endpoint) room() int { return max(e.window-e.recv.Len(), 0) }

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
// peer, or a write that would not block because it fails or is dropped)
// filtered by interest. A mere peer half-close is therefore reported only to
// Read interest, like EPOLLIN on FIN.
func (e *endpoint) readiness(interest uint32) uint32 {
	if e.failed() {
		return Read | Write
	}
	var ev uint32
	if e.recv.Len() > 0 || e.rdShut || e.peerFinished() {
		ev |= Read
	}
	// After SHUT_WR Linux reports EPOLLOUT (write would not block: it fails
	// with EPIPE). A TCP peer that has closed swallows what is written.
	if e.wrShut || e.peer.closed || e.peer.room() > 0 {
		ev |= Write
	}
	return ev & interest
}

// resetLocked resets e's connection: both ends are marked reset, their
// queued bytes are discarded, and every end still open gets ECONNRESET as
// its pending error. The caller then adjusts err on an end that reports an
// error itself right away. cause goes into the trace.
func (k *Kernel) resetLocked(e *endpoint, cause string) {
	for _, x := range [2]*endpoint{e, e.peer} {
		x.reset = true
		x.recv.clear()
		x.sendq.clear()
		if !x.closed {
			x.err = unix.ECONNRESET
		}
	}
	k.recordLocked(Record{Kind: KindReset, FD: serverFD(e), Client: clientID(e), Text: cause})
}

// pumpLocked moves bytes from src's send queue (a client's) into its peer's
// receive buffer as far as the window allows. Called whenever either may
// have changed: after a client Write, after a read from the peer, after a
// window grows.
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
// a pending error (ECONNRESET, once); EOF after a reset; buffered bytes;
// EOF once the peer's FIN has arrived (or reading was shut down); EAGAIN.
func (k *Kernel) Read(fd int, p []byte) (int, error) {
	iov := [1][]byte{p}
	return k.Readv(fd, iov[:])
}

// Readv is readv(2): Read filling the buffers in turn.
func (k *Kernel) Readv(fd int, iov [][]byte) (int, error) {
	k.lock()
	defer k.unlock()
	n, errno := k.readLocked(fd, iov)
	return n, errOf(errno)
}

func (k *Kernel) readLocked(fd int, iov [][]byte) (int, unix.Errno) {
	f, errno := k.socketLocked(fd)
	if errno == 0 {
		if ft := k.faultLocked(OpRead, f, false); ft != nil {
			errno = k.injectErrLocked(OpRead, f, ft.f.Err)
		}
	}
	if errno != 0 {
		k.recordLocked(Record{Kind: KindRead, FD: fd, Err: errno})
		return 0, errno
	}
	e := f.ep
	if e.err != 0 {
		errno, e.err = e.err, 0
		k.recordLocked(Record{Kind: KindRead, FD: fd, Err: errno})
		return 0, errno
	}
	want := iovLen(iov)
	n := 0
	switch {
	case e.reset || want == 0:
	case e.recv.Len() > 0:
		n = min(want, e.recv.Len())
		if n >= 2 && k.faultLocked(OpRead, f, true) != nil {
			n = 1 + k.rng.IntN(n-1)
		}
		left := n
		for _, b := range iov {
			if left == 0 {
				break
			}
			left -= e.recv.read(b[:min(len(b), left)])
		}
		k.pumpLocked(e.peer)
	case !e.rdShut && !e.peerFinished():
		k.recordLocked(Record{Kind: KindRead, FD: fd, Err: unix.EAGAIN})
		return 0, unix.EAGAIN
	}
	k.recordLocked(Record{Kind: KindRead, FD: fd, N: n})
	return n, 0
}

// Write is write(2) on a simulated socket. In order: an injected fault; a
// pending error (ECONNRESET, once); EPIPE after a reset or our own SHUT_WR;
// to a TCP peer that has closed, the bytes are accepted and dropped and the
// connection is reset (Linux answers them with RST), so the next read or
// write returns ECONNRESET (to a socketpair peer that has closed: EPIPE);
// otherwise as many bytes as the peer's receive buffer has room for (a
// short count), or EAGAIN when it is full.
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
		case e.err != 0:
			errno, e.err = e.err, 0
		case e.reset || e.wrShut:
			errno = unix.EPIPE
		case e.conn.unixPair && (e.peer.closed || e.peer.rdShut):
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
		k.resetLocked(e, "write to closed peer")
		return want, 0
	}
	n := min(want, e.peer.room())
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
		e.peer.recv.write(b[:m])
		left -= m
	}
	k.recordLocked(Record{Kind: KindWrite, FD: fd, N: n})
	return n, 0
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
		case f.ep.reset:
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
// queued) resets the connection: the peer's next operation returns
// ECONNRESET. Otherwise the peer sees FIN. Closing a listener resets the
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
		k.closeEndpointLocked(f.ep)
	}
	return errOf(injected)
}

// closeEndpointLocked closes a descriptor's end of a connection (the
// descriptor itself is already freed): RST if bytes towards it are left
// unread, FIN otherwise.
func (k *Kernel) closeEndpointLocked(e *endpoint) {
	e.closed = true
	if !e.reset && (e.recv.Len() > 0 || e.peer.sendq.Len() > 0) {
		k.resetLocked(e, "close with unread data")
	}
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
	a := &endpoint{conn: c, window: k.cfg.ReceiveBuffer}
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
// SO_RCVBUF on a connected socket also sets the size of its receive buffer
// (taken as given; Linux doubles it).
func (k *Kernel) SetsockoptInt(fd, level, opt, value int) error {
	k.lock()
	defer k.unlock()
	f, errno := k.fileLocked(fd)
	if errno != 0 {
		return errno
	}
	if f.kind == filePoller {
		return unix.ENOTSOCK
	}
	if f.opts == nil {
		f.opts = make(map[[2]int]int)
	}
	f.opts[[2]int{level, opt}] = value
	if f.kind == fileSocket && level == unix.SOL_SOCKET && opt == unix.SO_RCVBUF {
		f.ep.window = max(value, 0)
		k.pumpLocked(f.ep.peer)
	}
	return nil
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
		if f.ep.reset {
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
