// This file holds the TLS layer: the one seam between a connection's socket
// and its handler that turns records into plaintext on the way in and
// plaintext into records on the way out. The standard library's crypto/tls
// does all of TLS; the layer only feeds it bytes and takes what it writes,
// on the connection's loop, as crypto/tls does for a net.Conn it wraps.
//
//	socket ──read──> [tlsLayer.Read ⇄ tls.Conn.Read] ──plaintext──> c.in ──> OnMessage
//	Write ──plaintext──> c.out ──flush: tls.Conn.Write──> [tlsLayer.Write] ──records──> raw ──write──> socket
//
// A PROXY-protocol header (proxy.go) is taken off the socket before the
// handshake begins, by reading exactly its bytes, so this layer never sees
// it; nothing else sits between the socket and TLS.
//
// What crypto/tls (Go 1.26, src/crypto/tls/conn.go) forces on the design,
// each fact read in the source:
//
//  1. The handshake cannot be resumed: handshakeContext stores its error in
//     c.handshakeErr, which every later call returns, and its state lives
//     on the handshake's own stack (serverHandshakeState and the like). So
//     it must run where a read may block: here a coroutine (iter.Pull)
//     whose Read yields to the loop when it has no bytes, and which the
//     loop resumes when bytes arrive. A goroutine per handshake would do
//     too, but would make the loop hand bytes across goroutines, run
//     handshakes in parallel with the loop's own work, and make the
//     simulation's runs depend on the scheduler; the coroutine keeps
//     everything on the loop goroutine, in order, and its stack is freed
//     when the handshake ends.
//  2. After the handshake, Read can be driven from the loop:
//     readRecordOrCCS does not make an error of the underlying Read sticky
//     when it is a net.Error whose Temporary() is true (it type-asserts
//     err.(net.Error) directly, not with errors.As), and a partial record
//     stays in c.rawInput. tlsLayer.Read returns errWouldBlock, such an
//     error, once the bytes of this event are used up.
//  3. Read may return n > 0 together with an error: after a record's data
//     it peeks at a following alert (close_notify), and reads it if whole.
//  4. Errors on the write side are sticky too (c.out.setErrorLocked), so
//     the underlying Write must never fail: tlsLayer.Write appends to the
//     connection's raw output, which the loop writes to the socket.
//  5. Conn.closeNotify sets write deadlines around the alert; they mean
//     nothing to a Write that cannot block, and are no-ops here.
//  6. With Go 1.26, crypto/ecdh and crypto/mlkem key generation ignore
//     Config.Rand (crypto/internal/rand.CustomReader: only GODEBUG
//     cryptocustomrand=1 restores it), so a deterministic handshake over
//     the simulation needs testing/cryptotest.SetGlobalRandom as well as
//     a fixed Config.Time.
//  7. Nothing allocates per record on the write side once its pools are
//     warm; on the read side readFromUntil allocates its atLeastReader
//     (it escapes through bytes.Buffer.ReadFrom's io.Reader) each time it
//     has to read from the underlying conn. Reading until errWouldBlock
//     would cost one such read more per event, so the layer frames the
//     records itself (tlsLayer.frame) and stops calling Read when every
//     whole record has been read: one allocation per read event is left,
//     which crypto/tls does not let us avoid (see the README's TLS
//     section).
//  8. Read returns one record's data at most, all of it when given room
//     for a whole record's plaintext (c.input holds one record): the
//     framing's count depends on that (see decrypt).

package reactor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// TLS record framing (RFC 8446, section 5.1; the same header since SSL 3):
// a 5-byte header whose last two bytes are the length of what follows; a
// record's plaintext is at most 16 KiB.
const (
	tlsRecordHeader = 5
	tlsMaxPlaintext = 16 << 10
)

// tlsLayer is one connection's TLS state, behind its connExt. It is owned
// by the connection's loop: crypto/tls runs only there, in the handshake's
// coroutine (which runs only while the loop waits for it) or in the loop's
// own calls. It is the net.Conn crypto/tls wraps: its Read hands over the
// bytes the loop read, its Write keeps the records for the loop to write.
type tlsLayer struct {
	c      *Conn
	cfg    *tls.Config
	client bool
	conn   *tls.Conn // nil until the handshake begins (a server's, at the peer's first bytes)

	// The handshake's coroutine: resume runs it until it needs bytes it
	// does not have (true) or has ended (false, hsErr says how); stop ends
	// it early. All nil once it has ended.
	resume func() (struct{}, bool)
	stop   func()
	yield  func(struct{}) bool // the coroutine's; set only while it runs
	hsErr  error
	done   func(*Conn, error) // told of the handshake's end, or nil (see openDialled)

	// The loop's list of handshakes in progress (EventLoop.admitHandshake).
	hsPrev, hsNext *Conn
	listed         bool

	rin  []byte // raw input lent for one event: part of the loop's read buffer
	rerr error  // returned by Read once rin is used up (io.EOF after the peer's FIN); nil: no more for now

	// The framing of the peer's records (see frame): at least as many
	// whole records have arrived and not been read as whole says.
	whole    int
	hdr      [tlsRecordHeader]byte
	hdrHave  int // header bytes of the current record seen so far
	bodyLeft int // body bytes of the current record still to come

	raw    *Buffer // records not yet taken by the kernel; nil while there are none
	rawLen int     // raw's length after the last flush; guarded by Conn.mu, for Buffered

	sealed   bool // handler output was sealed since OnWriteComplete last ran
	notified bool // close_notify has been sealed

	state atomic.Pointer[tls.ConnectionState] // Conn.TLS's, made on its first call
}

var _ net.Conn = (*tlsLayer)(nil)

// wouldBlockError is what tlsLayer.Read returns when the bytes of this
// event are used up: a net.Error with Temporary() true, which
// crypto/tls's readRecordOrCCS does not keep (fact 2 above).
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "reactor: TLS input used up for now" }
func (wouldBlockError) Timeout() bool   { return false }
func (wouldBlockError) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlockError{}

var (
	// errHandshakeStopped is what the handshake's Read returns when the
	// loop ends the handshake early (a timeout, a stop, an eviction).
	errHandshakeStopped = errors.New("reactor: TLS handshake stopped")
	// errHandshakeEvicted ends a handshake dropped for a newer one.
	errHandshakeEvicted = errors.New("reactor: TLS handshake dropped for a newer one (WithTLSMaxHandshakes)")
)

// Read gives crypto/tls the bytes the loop has read. Inside the handshake
// it yields to the loop when it has none, and continues when the loop
// resumes it with more; after the handshake it returns errWouldBlock.
func (t *tlsLayer) Read(p []byte) (int, error) {
	for len(t.rin) == 0 {
		if t.rerr != nil {
			return 0, t.rerr
		}
		if t.yield == nil {
			return 0, errWouldBlock
		}
		if !t.yield(struct{}{}) {
			t.yield = nil // stopped: yield must not be called again
			return 0, errHandshakeStopped
		}
	}
	n := copy(p, t.rin)
	t.rin = t.rin[n:]
	return n, nil
}

// Write keeps the records crypto/tls sealed for the loop to write. It
// never fails (fact 4 above).
func (t *tlsLayer) Write(p []byte) (int, error) {
	if t.raw == nil {
		t.raw = getBuffer()
	}
	_, _ = t.raw.Write(p) // a pooled buffer has no limit
	return len(p), nil
}

// Close does nothing: crypto/tls calls it only from tls.Conn.Close and
// from a cancelled handshake context, neither of which the layer uses;
// the connection closes its own socket.
func (t *tlsLayer) Close() error { return nil }

// LocalAddr and RemoteAddr are the connection's: GetConfigForClient and
// the like see them through ClientHelloInfo.Conn.
func (t *tlsLayer) LocalAddr() net.Addr  { return t.c.LocalAddr() }
func (t *tlsLayer) RemoteAddr() net.Addr { return t.c.RemoteAddr() }

// The deadlines are no-ops (fact 5 above): nothing here blocks.
func (t *tlsLayer) SetDeadline(time.Time) error      { return nil }
func (t *tlsLayer) SetReadDeadline(time.Time) error  { return nil }
func (t *tlsLayer) SetWriteDeadline(time.Time) error { return nil }

// frame follows the record framing of p, the peer's next bytes, counting
// the records they complete in whole. It only reads the lengths: a record
// that crypto/tls finds bad fails there.
func (t *tlsLayer) frame(p []byte) {
	for len(p) > 0 {
		if t.bodyLeft > 0 {
			k := min(len(p), t.bodyLeft)
			t.bodyLeft -= k
			p = p[k:]
			if t.bodyLeft == 0 {
				t.whole++
			}
			continue
		}
		k := copy(t.hdr[t.hdrHave:], p)
		t.hdrHave += k
		p = p[k:]
		if t.hdrHave == tlsRecordHeader {
			t.hdrHave = 0
			if t.bodyLeft = int(t.hdr[3])<<8 | int(t.hdr[4]); t.bodyLeft == 0 {
				t.whole++
			}
		}
	}
}

// handshake is the coroutine's body.
func (t *tlsLayer) handshake(yield func(struct{}) bool) {
	t.yield = yield
	t.hsErr = t.conn.HandshakeContext(context.Background())
	t.yield = nil
}

// TLS returns the state of the connection's TLS session (version, cipher
// suite, ALPN protocol, the SNI name, the peer's certificates, whether it
// resumed), as http.Request.TLS does, or nil on a plain connection. Its
// handshake is done by the time OnOpen runs; the state is made on the
// first call and kept, so that a connection that never asks pays nothing
// for it. Do not modify it. Safe from any goroutine.
func (c *Conn) TLS() *tls.ConnectionState {
	c.mu.Lock()
	x := c.x
	c.mu.Unlock()
	if x == nil || x.tls == nil || x.tls.conn == nil {
		return nil
	}
	t := x.tls
	if cs := t.state.Load(); cs != nil {
		return cs
	}
	cs := t.conn.ConnectionState()
	t.state.CompareAndSwap(nil, &cs)
	return t.state.Load()
}

// openDialled makes a connection this process dialled live, as open does
// for an accepted one: with cfg (not nil) it first runs the client's side
// of the TLS handshake, with cfg.ServerName, when empty, the host of
// address (the "host:port" dialled). done, if not nil, is told how it
// ended once the handshake has (right after OnOpen, even if OnOpen
// panicked, or with the error after the connection has been dropped
// without OnOpen or OnClose); without TLS, right after OnOpen. Loop
// goroutine; c's descriptor must be registered for EventRead, as open
// requires.
func (c *Conn) openDialled(address string, cfg *tls.Config, done func(*Conn, error)) {
	l := c.loop
	c.mu.Lock()
	c.setLocked(sharedDialled)
	c.mu.Unlock()
	l.channels.set(c.ch.fd, c)
	l.conns++
	if cfg == nil {
		if done != nil {
			defer done(c, nil)
		}
		c.ready()
		return
	}
	c.startTLS(clientConfig(cfg, address), true, done)
}

// clientConfig returns cfg with its ServerName taken from address when it
// has none: crypto/tls needs a name to verify the server's certificate
// against (or InsecureSkipVerify), and the name dialled is the one the
// user means, as tls.Dial takes it.
func clientConfig(cfg *tls.Config, address string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		return cfg // a Unix socket's path, say: no name to give
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
}

// startTLS makes the connection handshake before it opens: its layer is
// set up, its handshake deadline starts, and a client sends its hello at
// once; a server waits for the peer's first bytes before it spends a
// coroutine on it. Loop goroutine.
func (c *Conn) startTLS(cfg *tls.Config, client bool, done func(*Conn, error)) {
	l := c.loop
	c.ext().tls = &tlsLayer{c: c, cfg: cfg, client: client, done: done}
	if !c.beginPreface(l.g.cfg.tlsHandshakeTimeout) {
		return
	}
	if l.tracing {
		l.trace("TLS handshake fd=%d client=%v", c.ch.fd, client)
	}
	if client {
		c.beginHandshake()
	}
}

// beginHandshake creates the tls.Conn and the coroutine that runs its
// handshake, and runs it until it waits for the peer.
func (c *Conn) beginHandshake() {
	t := c.x.tls
	c.loop.admitHandshake(c)
	if t.client {
		t.conn = tls.Client(t, t.cfg)
	} else {
		t.conn = tls.Server(t, t.cfg)
	}
	t.resume, t.stop = iter.Pull(t.handshake)
	c.stepHandshake()
}

// handshakeEvent handles readiness during the handshake: it writes what
// the handshake sealed, and reads the peer's bytes and resumes the
// handshake with them.
func (c *Conn) handshakeEvent(ev Events) {
	if ev&EventWrite != 0 {
		c.handshakeFlush()
		if c.state != connHandshake {
			return
		}
	}
	if ev&EventRead == 0 {
		return
	}
	t := c.x.tls
	if !c.readRecords(t) {
		return
	}
	if t.resume == nil {
		if t.rerr != nil {
			c.closeNow(io.EOF) // closed before it said anything
			return
		}
		c.beginHandshake()
		return
	}
	c.stepHandshake()
}

// stepHandshake resumes the handshake with the bytes in t.rin (or the
// error in t.rerr) and acts on where it stopped: still waiting for the
// peer, failed, or done.
func (c *Conn) stepHandshake() {
	l := c.loop
	t := c.x.tls
	// A panic in the user's callbacks that crypto/tls runs in the
	// handshake (GetCertificate, VerifyPeerCertificate, ...) comes out of
	// resume (iter.Pull propagates it to the caller) and is recovered by
	// the loop like a handler's: it ends this connection only.
	l.current = c
	_, waiting := t.resume()
	l.current = nil
	if waiting {
		c.handshakeFlush()
		return
	}
	t.resume, t.stop = nil, nil
	l.leaveHandshake(c)
	if err := t.hsErr; err != nil {
		c.sendAlert(t)
		c.closeNow(err)
		return
	}
	c.handshaken()
}

// handshakeFlush writes what the handshake sealed, waiting for EventWrite
// while the kernel does not take it all.
func (c *Conn) handshakeFlush() {
	l := c.loop
	t := c.x.tls
	want := EventRead
	if raw := t.raw; raw != nil {
		n, err := raw.writeFD(l.k, c.ch.fd)
		if n > 0 {
			l.bytesWritten(n)
		}
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			c.closeNow(c.opError("write", err))
			return
		}
		if raw.Len() > 0 {
			want |= EventWrite
		} else {
			putBuffer(raw)
			t.raw = nil
		}
	}
	c.waitW = want&EventWrite != 0
	c.setInterest(want)
}

// handshaken opens a connection whose handshake has succeeded: OnOpen
// runs, then the application data that came with the peer's last flight
// is delivered, and what the handshake, OnOpen and OnMessage wrote is
// flushed.
func (c *Conn) handshaken() {
	l := c.loop
	t := c.x.tls
	c.endPhase()
	c.waitW = false
	bump(&l.stats.tlsDone, 1)
	if t.conn.ConnectionState().DidResume {
		bump(&l.stats.tlsResumed, 1)
	}
	if l.tracing {
		l.trace("TLS done fd=%d", c.ch.fd)
	}
	if done := t.done; done != nil {
		t.done = nil
		defer done(c, nil)
	}
	c.ready()
	if c.state != connOpen {
		return
	}
	if !c.canRead() {
		// OnOpen closed it (or the server is draining): no OnMessage
		// follows, whatever came with the handshake.
		c.flush(false)
		return
	}
	// Always: crypto/tls may have read the peer's first records along
	// with its last handshake message, into its own buffer, where no
	// readiness would ever report them. (The framing counted the
	// handshake's records too: whole is at least 1, and decrypt reads
	// until crypto/tls says it has nothing whole left.)
	c.decrypt(t)
}

// readTLS is handleRead over TLS: one read, as on a plain connection, and
// every record it completes decrypted and delivered with one OnMessage.
func (c *Conn) readTLS(t *tlsLayer) {
	if !c.readRecords(t) {
		return
	}
	if len(t.rin) > 0 {
		c.touch(false)
	}
	c.decrypt(t)
}

// readRecords reads once from the socket for crypto/tls, in the handshake
// or after it: the bytes go to t.rin, framed, and the peer's FIN to t.rerr
// as io.EOF (crypto/tls tells an end at a record boundary, an orderly end,
// as popular sites close without close_notify, from a record cut short,
// io.ErrUnexpectedEOF, and a handshake fails with it). It reports false
// when there is nothing for crypto/tls: no bytes yet, or a failed read,
// which has closed the connection.
func (c *Conn) readRecords(t *tlsLayer) bool {
	l := c.loop
	n, err := l.k.Read(c.ch.fd, l.readBuf)
	switch {
	case n > 0:
		l.bytesRead(n)
		t.rin = l.readBuf[:n]
		t.frame(t.rin)
	case err == nil:
		t.rerr = io.EOF
	case err == unix.EAGAIN || err == unix.EINTR:
		return false
	default:
		c.closeNow(c.opError("read", err))
		return false
	}
	return true
}

// sendAlert writes the alert crypto/tls sealed when the session failed, if
// any, with one write that may come up short: the connection is being
// dropped.
func (c *Conn) sendAlert(t *tlsLayer) {
	if t.raw == nil {
		return
	}
	l := c.loop
	if n, _ := t.raw.writeFD(l.k, c.ch.fd); n > 0 {
		l.bytesWritten(n)
	}
}

// decrypt has crypto/tls read the bytes in t.rin, appends the plaintext to
// the connection's input and delivers it, then acts on how the reading
// ended: everything used (flush what the handler wrote, and anything
// crypto/tls wrote, a KeyUpdate's answer), the peer's close_notify or FIN
// (as a plain connection's EOF), or a failure. WithMaxInputSize applies to
// the plaintext the handler leaves.
//
// It calls Read while bytes of t.rin are left for crypto/tls to take (a
// partial record waits in its buffer for the rest) or the framing says a
// whole record may be unread, each time with room for a whole record's
// plaintext, so that each Read that
// returns data has read at least one record (fact 8 above): whole then
// never falls below the records really unread, only above them (records
// crypto/tls reads without returning data: a KeyUpdate, an empty record),
// which costs a Read that finds nothing and puts whole right.
func (c *Conn) decrypt(t *tlsLayer) {
	l := c.loop
	in := c.in
	if in == nil {
		in = getBuffer()
		c.in = in
	}
	in.SetLimit(0) // whatever the handler set; the server's limit is applied below
	before := in.Len()
	var err error
	for err == nil && (t.whole > 0 || len(t.rin) > 0 || t.rerr != nil) {
		var m int
		m, err = in.readFrom(t.conn, tlsMaxPlaintext)
		if m > 0 && t.whole > 0 {
			t.whole--
		}
	}
	switch err {
	case nil:
		err = errWouldBlock // every whole record read
	case errWouldBlock:
		t.whole = 0 // crypto/tls holds no whole record
	}
	t.rin = nil
	if in.Len() > before {
		c.deliver(in)
		if c.state != connOpen {
			return // closeNow released c.in
		}
	}
	if rest := c.in.Len(); rest == 0 {
		putBuffer(c.in)
		c.in = nil
	} else if maxIn := l.g.cfg.maxInputSize; maxIn > 0 && rest > maxIn {
		c.closeNow(fmt.Errorf("%w: %d bytes unconsumed", ErrInputTooLarge, rest))
		return
	}
	switch {
	case err == errWouldBlock:
		c.flush(false)
	case err == io.EOF:
		c.peerEOF()
	default:
		// A bad record, a fatal alert from the peer, a cut: crypto/tls
		// has sealed the alert it answers with, if any.
		c.sendAlert(t)
		c.closeNow(err)
	}
}

// flushTLS is flush over TLS. It seals all the plaintext written since the
// last flush with one tls.Conn.Write (so an iteration's Writes share
// records), then a close_notify once Close or CloseWrite has been asked
// for, and writes the records with one write(2). c.mu is held on entry and
// on return, and released while sealing and writing; Writes made meanwhile
// wait in c.out for the next flush, which their Write queued. It returns
// the bytes the kernel took, the output still pending (records and
// plaintext), whether the handler's output has all gone (OnWriteComplete
// is due), and an error that ends the connection.
func (c *Conn) flushTLS(t *tlsLayer) (n, pending int, complete bool, err error) {
	l := c.loop
	var plain *Buffer
	var s uint32
	if !c.waitW {
		plain, c.out = c.out, nil
		s = c.shared.Load() // under mu: plain holds every byte written before a Close
		if plain != nil {
			// Off c.out while mu is released: Buffered counts it here,
			// as it does writeUnlocked's.
			l.writing, l.writingLen = c, plain.Len()
		}
	}
	c.mu.Unlock()
	if plain != nil {
		_, err = t.conn.Write(plain.Bytes()) // fails only if crypto/tls failed before
		t.sealed = true
		putBuffer(plain)
	}
	if s&(sharedCloseReq|sharedShutReq) != 0 && !t.notified && err == nil {
		t.notified = true
		err = t.conn.CloseWrite() // seals close_notify behind the data
	}
	if raw := t.raw; raw != nil && !c.waitW && err == nil {
		n, err = raw.writeFD(l.k, c.ch.fd)
	}
	left := 0
	if raw := t.raw; raw != nil {
		if left = raw.Len(); left == 0 {
			putBuffer(raw)
			t.raw = nil
		}
	}
	c.mu.Lock()
	l.writing, l.writingLen = nil, 0
	t.rawLen = left
	pending = left
	if out := c.out; out != nil {
		pending += out.Len()
	}
	if complete = pending == 0 && n > 0 && t.sealed; complete {
		t.sealed = false
	}
	return n, pending, complete, err
}

// closeNotifyDue reports whether the connection still owes its peer a
// close_notify before its FIN. Loop goroutine.
func (c *Conn) closeNotifyDue() bool {
	t := c.tlsOf()
	return t != nil && !t.notified && t.conn != nil
}

// releaseTLS lets go of what the TLS layer holds when the connection
// closes: a handshake's coroutine (stopped, so that no goroutine is left),
// its place in the loop's list, the records not written. A connection that
// ends in its handshake is counted and logged at debug level; releaseTLS
// returns the function to tell of it (see openDialled), for closeNow to
// call last. Loop goroutine.
func (c *Conn) releaseTLS(t *tlsLayer, handshaking bool, err error) (report func(*Conn, error)) {
	l := c.loop
	if stop := t.stop; stop != nil {
		t.resume, t.stop = nil, nil
		stop() // its Read returns errHandshakeStopped; crypto/tls returns
	}
	l.leaveHandshake(c)
	t.rin, t.rerr = nil, nil
	c.mu.Lock()
	if t.raw != nil {
		putBuffer(t.raw)
		t.raw = nil
	}
	t.rawLen = 0
	c.mu.Unlock()
	if !handshaking {
		return nil
	}
	bump(&l.stats.tlsFailed, 1)
	switch {
	case errors.Is(err, ErrTLSHandshakeTimeout):
		bump(&l.stats.tlsTimedOut, 1)
	case err == errHandshakeEvicted:
		bump(&l.stats.tlsEvicted, 1)
	}
	l.log.Debug("reactor: TLS handshake failed", "loop", l.name, "peer", c.peer(), "err", err)
	if l.tracing {
		l.trace("TLS failed fd=%d err=%v", c.ch.fd, err)
	}
	report, t.done = t.done, nil
	return report
}

// admitHandshake puts c, whose handshake begins, at the back of the loop's
// list of handshakes in progress, first dropping the oldest ones while the
// list is full (WithTLSMaxHandshakes). Loop goroutine.
func (l *EventLoop) admitHandshake(c *Conn) {
	for l.hsCount >= l.g.cfg.tlsMaxHandshakes && l.hsHead != nil {
		l.hsHead.closeNow(errHandshakeEvicted) // leaves the list
	}
	t := c.x.tls
	t.hsPrev, t.hsNext, t.listed = l.hsTail, nil, true
	if l.hsTail != nil {
		l.hsTail.x.tls.hsNext = c
	} else {
		l.hsHead = c
	}
	l.hsTail = c
	l.hsCount++
	l.stats.tlsInProgress.Store(int64(l.hsCount))
}

// leaveHandshake takes c off the loop's list of handshakes in progress, if
// it is there. Loop goroutine.
func (l *EventLoop) leaveHandshake(c *Conn) {
	t := c.x.tls
	if !t.listed {
		return
	}
	if t.hsPrev != nil {
		t.hsPrev.x.tls.hsNext = t.hsNext
	} else {
		l.hsHead = t.hsNext
	}
	if t.hsNext != nil {
		t.hsNext.x.tls.hsPrev = t.hsPrev
	} else {
		l.hsTail = t.hsPrev
	}
	t.hsPrev, t.hsNext, t.listed = nil, nil, false
	l.hsCount--
	l.stats.tlsInProgress.Store(int64(l.hsCount))
}
