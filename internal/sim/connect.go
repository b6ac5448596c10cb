// This file holds the other direction of a connection: a descriptor that
// connects out (Connect, as a non-blocking connect(2)), the listening
// sockets a test holds to accept such connections (Listener), and
// GetsockoptInt, through which the connecting side learns how its attempt
// ended. Guarded by the Kernel's mutex.

package sim

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Where the ports of connecting descriptors come from: Linux's default
// ip_local_port_range.
const (
	firstEphemeralPort = 32768
	lastEphemeralPort  = 60999
)

// The address a connecting descriptor sends from when its destination is
// not a loopback address: the simulated host's own, from the documentation
// ranges of RFC 5737 and RFC 3849 (and apart from the test clients').
var (
	hostIPv4 = netip.MustParseAddr("198.51.100.1")
	hostIPv6 = netip.MustParseAddr("2001:db8:1::1")
)

// Listener is a listening socket the test holds, for a server under test
// to connect to: Connect reaches it like any listener, and Accept hands the
// test its end of each connection, a *Conn, with no descriptor in the
// kernel's table. It is the upstream server of a proxy under test, say.
// Its methods are safe from any goroutine; in stepped mode they only change
// state, and the loops react when the test steps.
type Listener struct {
	k *Kernel
	l *listener // guarded by k.mu
}

// NewListener binds a listener the test holds to address ("host:port", as
// Listen takes it for network "tcp": an IP literal, "localhost" or empty for
// every address; port 0 picks the next free port from 20000 up). Its
// backlog is DefaultBacklog until SetBacklog. A second listener on an
// overlapping address fails with EADDRINUSE.
func (k *Kernel) NewListener(address string) (*Listener, error) {
	ip, port, err := parseAddr("tcp", address, true)
	if err != nil {
		return nil, fmt.Errorf("sim: listen %q: %w", address, err)
	}
	k.lock()
	defer k.unlock()
	if port == 0 {
		port = k.freePortLocked()
	} else {
		for _, l := range k.listeners {
			if int(l.addr.Port()) == port && overlaps(l.addr.Addr(), ip) {
				return nil, fmt.Errorf("sim: listen %q: %w", address, unix.EADDRINUSE)
			}
		}
	}
	k.extListeners++
	l := &listener{fd: -1, ext: k.extListeners, addr: netip.AddrPortFrom(ip, uint16(port)), backlog: DefaultBacklog}
	k.listeners = append(k.listeners, l)
	k.recordLocked(Record{Kind: KindListen, FD: -1, Text: fmt.Sprintf("%s %v backlog=%d", l.name(), l.addr, l.backlog)})
	return &Listener{k: k, l: l}, nil
}

// Addr returns the bound address (*net.TCPAddr), with the port chosen if
// port 0 was asked for.
func (ln *Listener) Addr() net.Addr { return net.TCPAddrFromAddrPort(ln.l.addr) }

// String returns the listener's name in the trace: "l1", "l2", ... in the
// order the test's listeners were made.
func (ln *Listener) String() string { return ln.l.name() }

// SetBacklog sets how many established connections may wait to be
// accepted. Connects beyond it stay in progress, as on Linux, whose
// listener drops a SYN while its accept queue is full and lets the client
// retry: the connecting side sees nothing until Accept makes room, and
// then the oldest waiting connect completes. n = 0 lets none wait: every
// connect stays in progress until Accept takes it. (Linux admits one more
// than its backlog; the simulation admits exactly n.) Lowering the backlog
// leaves the connections already waiting where they are.
func (ln *Listener) SetBacklog(n int) {
	k := ln.k
	k.lock()
	defer k.unlock()
	ln.l.backlog = max(n, 0)
	k.admitLocked(ln.l)
}

// Accept returns the test's end of the oldest established connection, or
// EAGAIN when none waits. With none established it completes the oldest
// connect that is still in progress because the queue was full (a SYN that
// finds room on its retry) and returns that. After Close it returns
// net.ErrClosed. The new Conn is numbered like the clients Dial makes
// (c1, c2, ... in the trace).
func (ln *Listener) Accept() (*Conn, error) {
	k := ln.k
	k.lock()
	defer k.unlock()
	l := ln.l
	if l.closed {
		return nil, net.ErrClosed
	}
	if len(l.queue) == 0 && len(l.synq) > 0 {
		k.establishLocked(l, l.synq[0])
		l.synq = l.synq[1:]
	}
	if len(l.queue) == 0 {
		return nil, unix.EAGAIN
	}
	e := l.queue[0]
	l.queue = l.queue[1:]
	k.clients++
	c := &Conn{k: k, id: k.clients, ep: e}
	e.client = c
	k.recordLocked(Record{Kind: KindAccept, FD: -1, Client: c.id, Text: l.name() + " " + e.remote.String()})
	k.admitLocked(l)
	return c, nil
}

// Pending returns how many connections wait to be accepted: established
// ones in the queue, and, separately, connects held in progress because
// the queue was full.
func (ln *Listener) Pending() (established, inProgress int) {
	ln.k.mu.Lock()
	defer ln.k.mu.Unlock()
	return len(ln.l.queue), len(ln.l.synq)
}

// Close stops listening: connections waiting to be accepted are reset,
// and connects in progress are refused (ECONNREFUSED), as Linux does. It
// returns net.ErrClosed when repeated.
func (ln *Listener) Close() error {
	k := ln.k
	k.lock()
	defer k.unlock()
	if ln.l.closed {
		return net.ErrClosed
	}
	k.recordLocked(Record{Kind: KindClose, FD: -1, Text: ln.l.name()})
	k.closeListenerLocked(ln.l)
	return nil
}

// name returns a test listener's name in the trace ("l1").
func (l *listener) name() string { return fmt.Sprintf("l%d", l.ext) }

// Connect is a non-blocking connect(2), as kernel.Interface has it: it
// creates a socket descriptor, starts connecting it to sa
// (*unix.SockaddrInet4 or 6; the simulation has no Unix-domain sockets:
// EAFNOSUPPORT) and returns the descriptor with EINPROGRESS. The handshake
// is not modelled: the attempt ends at once, or waits for room in a full
// accept queue, and the descriptor becomes writable when it has ended;
// GetsockoptInt(SOL_SOCKET, SO_ERROR) then says how:
//
//   - a listener (the test's, or a descriptor's) on the address with room
//     in its accept queue: established, SO_ERROR 0;
//   - one whose queue is full: still in progress (no readiness at all), as
//     on Linux, until the listener accepts and room appears;
//   - no listener: refused, ECONNREFUSED, reported as a failure (Read|Write
//     whatever the interest, as EPOLLERR|EPOLLHUP);
//   - an injected fault on OpConnect: its error in SO_ERROR (ECONNREFUSED,
//     EHOSTUNREACH, ...), except ETIMEDOUT, which loses the SYN: the
//     connect stays in progress for ever. (Linux would give up after about
//     two minutes of retries; a dialer's own timeout comes first.)
//
// The local address is the loopback address of the destination's family
// for a loopback destination, else 198.51.100.1 (2001:db8:1::1 for IPv6),
// with the next port from 32768 up. Connecting to an unspecified address
// means the loopback address, as on Linux. It fails with EMFILE when the
// descriptor would exceed the limit.
func (k *Kernel) Connect(sa unix.Sockaddr) (int, error) {
	var ip netip.Addr
	var port int
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		ip, port = netip.AddrFrom4(a.Addr), a.Port
	case *unix.SockaddrInet6:
		ip, port = netip.AddrFrom16(a.Addr).Unmap(), a.Port
	default:
		return -1, os.NewSyscallError("socket", unix.EAFNOSUPPORT)
	}
	switch {
	case ip.IsUnspecified() && ip.Is4():
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case ip.IsUnspecified():
		ip = netip.IPv6Loopback()
	}
	k.lock()
	defer k.unlock()
	lip := hostIPv4
	switch {
	case ip.IsLoopback() && ip.Is4():
		lip = ip
	case ip.IsLoopback():
		lip = netip.IPv6Loopback()
	case ip.Is6():
		lip = hostIPv6
	}
	from := netip.AddrPortFrom(lip, uint16(k.nextEphemeral()))
	to := netip.AddrPortFrom(ip, uint16(port))
	c := &connection{}
	e := &endpoint{conn: c, window: k.cfg.ReceiveBuffer, sndbuf: k.cfg.SendBuffer, local: from, remote: to, connecting: true}
	f := &file{kind: fileSocket, ep: e}
	fd, errno := k.allocFDLocked(f)
	if errno != 0 {
		return -1, os.NewSyscallError("socket", errno)
	}
	e.fd = fd
	e.peer = &endpoint{conn: c, peer: e, fd: -1, window: k.cfg.ReceiveBuffer, local: to, remote: from}
	text := from.String() + " > " + to.String()
	k.recordLocked(Record{Kind: KindConnect, FD: fd, Err: unix.EINPROGRESS, Text: text})
	if ft := k.faultLocked(OpConnect, f, false); ft != nil {
		if ft.f.Err != unix.ETIMEDOUT {
			k.refuseLocked(e, ft.f.Err)
		} else {
			k.recordLocked(Record{Kind: KindConnect, FD: fd, Text: "SYN lost"})
		}
		return fd, unix.EINPROGRESS
	}
	l := k.routeLocked(ip, port, true)
	switch {
	case l == nil:
		k.refuseLocked(e, unix.ECONNREFUSED)
	case len(l.queue) >= l.backlog:
		l.synq = append(l.synq, e)
		e.synOn = l
		k.recordLocked(Record{Kind: KindConnect, FD: fd, Text: "in progress: accept queue full"})
	default:
		k.establishLocked(l, e)
	}
	return fd, unix.EINPROGRESS
}

// nextEphemeral returns the next local port for a connecting descriptor.
func (k *Kernel) nextEphemeral() int {
	if k.ephemeral < firstEphemeralPort || k.ephemeral > lastEphemeralPort {
		k.ephemeral = firstEphemeralPort
	}
	p := k.ephemeral
	k.ephemeral++
	return p
}

// establishLocked completes e's connect to l: its peer joins l's accept
// queue (the caller has checked there is room, or is about to take it) and
// e becomes an established connection, writable.
func (k *Kernel) establishLocked(l *listener, e *endpoint) {
	e.connecting, e.synOn = false, nil
	p := e.peer
	if !l.isExt() {
		p.sndbuf = k.cfg.SendBuffer // a descriptor will own it once accepted
	}
	l.queue = append(l.queue, p)
	k.recordLocked(Record{Kind: KindConnect, FD: e.fd, Text: "established " + l.label()})
}

// refuseLocked ends e's connect with errno, as an RST (or an ICMP error)
// answering its SYN does: the descriptor reports a failure, SO_ERROR (and
// the first read or write) returns errno, later reads EOF and writes EPIPE.
func (k *Kernel) refuseLocked(e *endpoint, errno unix.Errno) {
	e.connecting, e.synOn = false, nil
	e.reset, e.err = true, errno
	e.peer.closed = true
	k.recordLocked(Record{Kind: KindConnect, FD: e.fd, Err: errno, Text: "failed"})
}

// admitLocked completes the connects held in progress on l while its
// accept queue has room.
func (k *Kernel) admitLocked(l *listener) {
	for len(l.synq) > 0 && len(l.queue) < l.backlog {
		e := l.synq[0]
		l.synq = l.synq[1:]
		k.establishLocked(l, e)
	}
}

// dropSynLocked takes e, a connect in progress that is being closed, off
// the queue of the listener it waits on.
func (k *Kernel) dropSynLocked(e *endpoint) {
	if l := e.synOn; l != nil {
		for i, x := range l.synq {
			if x == e {
				l.synq = append(l.synq[:i], l.synq[i+1:]...)
				break
			}
		}
	}
	e.connecting, e.synOn = false, nil
}

// GetsockoptInt is getsockopt(2) for an int value. SO_ERROR returns a
// socket's pending error and clears it, as Linux does: how a connect
// ended (0 once established), or a reset not yet reported. Any other
// option returns the value last set with SetsockoptInt, or 0. It fails with
// EBADF for a descriptor that is not open and ENOTSOCK for a poller's.
func (k *Kernel) GetsockoptInt(fd, level, opt int) (int, error) {
	k.lock()
	defer k.unlock()
	f, errno := k.sockoptFileLocked(fd)
	if errno != 0 {
		return 0, errno
	}
	if level == unix.SOL_SOCKET && opt == unix.SO_ERROR {
		if f.kind != fileSocket {
			return 0, nil
		}
		v := f.ep.err
		f.ep.err = 0
		return int(v), nil
	}
	return f.opts[[2]int{level, opt}], nil
}
