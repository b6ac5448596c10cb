// This file holds listening sockets, Accept and Dial: how simulated
// connections are made. Guarded by the Kernel's mutex.

package sim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// Where automatically chosen ports start. Listeners bound to port 0 take
// the next free port from firstServerPort up; clients dialled without a
// port take ports from firstClientPort up. Both sequences are deterministic.
const (
	firstServerPort = 20000
	firstClientPort = 40000
	lastPort        = 65535
)

// Default client addresses: from the documentation ranges of RFC 5737 and
// RFC 3849, so a trace can never be mistaken for a real network's.
var (
	defaultClientIPv4 = netip.MustParseAddr("192.0.2.1")
	defaultClientIPv6 = netip.MustParseAddr("2001:db8::1")
)

// listener is a listening socket: its bound address and its queue of
// connections that completed the handshake and wait for Accept.
type listener struct {
	fd        int            // -1 for a test's Listener
	ext       int            // a test's Listener: its number (l1, l2, ...); 0 for a descriptor
	addr      netip.AddrPort // bound address; the IP may be unspecified (all addresses)
	reusePort bool
	backlog   int
	queue     []*endpoint // server ends of pending connections, oldest first
	synq      []*endpoint // connecting descriptors held in progress while queue is full, oldest first
	closed    bool
}

// isExt reports whether the test holds l (a Listener) rather than a
// descriptor.
func (l *listener) isExt() bool { return l.ext > 0 }

// label names l in the trace: "l1" for a test's Listener, "fd=4" for a
// descriptor.
func (l *listener) label() string {
	if l.isExt() {
		return l.name()
	}
	return fmt.Sprintf("fd=%d", l.fd)
}

// accepts reports whether a connection to ip can reach l: a listener bound
// to a specific address takes that address; one bound to 0.0.0.0 takes
// IPv4; one bound to :: takes both (a dual-stack socket, as Linux creates
// by default).
func (l *listener) accepts(ip netip.Addr) bool {
	if !l.addr.Addr().IsUnspecified() {
		return l.addr.Addr() == ip
	}
	return l.addr.Addr().Is6() || ip.Is4()
}

// overlaps reports whether binding a to the same port as b would conflict
// (before SO_REUSEPORT is considered).
func overlaps(a, b netip.Addr) bool {
	covers := func(wild, x netip.Addr) bool { return wild.IsUnspecified() && (wild.Is6() || x.Is4()) }
	return a == b || covers(a, b) || covers(b, a)
}

// Listen creates a listening socket bound to address ("host:port"), as
// kernel.Interface requires. network is "tcp", "tcp4" or "tcp6". The host
// is an IP literal, "localhost" (127.0.0.1, or ::1 for tcp6), or empty for
// all addresses (0.0.0.0 for tcp4, a dual-stack :: otherwise); the
// simulation has no DNS. Port 0 picks the next free port from 20000 up.
// A second listener on an overlapping address fails with EADDRINUSE unless
// both set reusePort; connections are then spread among them by the
// kernel's random source. backlog ≤ 0 means DefaultBacklog. The
// simulation has no Unix domain sockets: network "unix" fails with
// EAFNOSUPPORT.
func (k *Kernel) Listen(network, address string, reusePort bool, backlog int) (int, unix.Sockaddr, error) {
	if network == "unix" {
		return -1, nil, fmt.Errorf("sim: listen unix %q: the simulation has no Unix domain sockets: %w", address, unix.EAFNOSUPPORT)
	}
	ip, port, err := parseAddr(network, address, true)
	if err != nil {
		return -1, nil, fmt.Errorf("sim: listen %s %q: %w", network, address, err)
	}
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	k.lock()
	defer k.unlock()
	if port == 0 {
		port = k.freePortLocked()
	} else {
		for _, l := range k.listeners {
			if int(l.addr.Port()) == port && overlaps(l.addr.Addr(), ip) && !(l.reusePort && reusePort) {
				return -1, nil, unix.EADDRINUSE
			}
		}
	}
	l := &listener{addr: netip.AddrPortFrom(ip, uint16(port)), reusePort: reusePort, backlog: backlog}
	fd, errno := k.allocFDLocked(&file{kind: fileListener, lis: l})
	if errno != 0 {
		return -1, nil, errno
	}
	l.fd = fd
	k.listeners = append(k.listeners, l)
	text := fmt.Sprintf("%v backlog=%d", l.addr, backlog)
	if reusePort {
		text += " reuseport"
	}
	k.recordLocked(Record{Kind: KindListen, FD: fd, Text: text})
	return fd, sockaddrOf(l.addr), nil
}

// DupListener fails: a listening socket opened elsewhere is a real one, and
// the simulation's descriptors are not.
func (k *Kernel) DupListener(fd int) (int, unix.Sockaddr, error) {
	return -1, nil, fmt.Errorf("sim: cannot serve a listening socket opened outside the simulation (descriptor %d): %w", fd, unix.ENOTSUP)
}

// freePortLocked returns the next port from nextPort up that no listener
// uses.
func (k *Kernel) freePortLocked() int {
	for {
		p := k.nextPort
		k.nextPort++
		if k.nextPort > lastPort {
			k.nextPort = firstServerPort
		}
		used := false
		for _, l := range k.listeners {
			used = used || int(l.addr.Port()) == p
		}
		if !used {
			return p
		}
	}
}

// closeListenerLocked unbinds l, resets the connections still in its
// queue and refuses the connects held in progress, as Linux does when a
// listening socket is closed.
func (k *Kernel) closeListenerLocked(l *listener) {
	l.closed = true
	for i, x := range k.listeners {
		if x == l {
			k.listeners = append(k.listeners[:i], k.listeners[i+1:]...)
			break
		}
	}
	for _, e := range l.queue {
		k.resetLocked(e, "listener closed")
		e.closed = true
	}
	l.queue = nil
	for _, e := range l.synq {
		k.refuseLocked(e, unix.ECONNREFUSED)
	}
	l.synq = nil
}

// Accept takes the oldest pending connection from a listener and returns
// a new descriptor for it and the client's address (*unix.SockaddrInet4 or
// 6). With none pending it returns EAGAIN. When the new descriptor would
// exceed the limit it returns EMFILE and, as Linux does, leaves the
// connection queued and the listener readable: a server that only waits for
// readiness again spins, and must do something else (close a spare
// descriptor, pause accepting). A connection reset while it waited is still
// returned; its first read reports the reset.
func (k *Kernel) Accept(fd int) (int, netip.AddrPort, error) {
	k.lock()
	defer k.unlock()
	nfd, peer, errno := k.acceptLocked(fd)
	return nfd, peer, errOf(errno)
}

func (k *Kernel) acceptLocked(fd int) (int, netip.AddrPort, unix.Errno) {
	f, errno := k.fileLocked(fd)
	if errno == 0 && f.kind != fileListener {
		errno = unix.EINVAL
	}
	if errno == 0 {
		if ft := k.faultLocked(OpAccept, f, false); ft != nil {
			errno = ft.f.Err
		}
	}
	if errno == 0 && len(f.lis.queue) == 0 {
		errno = unix.EAGAIN
	}
	var e *endpoint
	nfd := -1
	if errno == 0 {
		e = f.lis.queue[0]
		nfd, errno = k.allocFDLocked(&file{kind: fileSocket, ep: e})
	}
	if errno != 0 {
		k.recordLocked(Record{Kind: KindAccept, FD: fd, Err: errno})
		return -1, netip.AddrPort{}, errno
	}
	q := f.lis.queue
	copy(q, q[1:])
	q[len(q)-1] = nil
	f.lis.queue = q[:len(q)-1]
	e.fd = nfd
	k.recordLocked(Record{Kind: KindAccept, FD: fd, N: nfd, Client: clientID(e), Text: e.remote.String()})
	k.admitLocked(f.lis)
	return nfd, netip.AddrPortFrom(e.remote.Addr().Unmap(), e.remote.Port()), 0
}

// Dial connects a new client to addr ("host:port") from the default client
// address (192.0.2.1, or 2001:db8::1 for an IPv6 destination) and the next
// client port from 40000 up. See DialFrom.
func (k *Kernel) Dial(addr string) (*Conn, error) {
	return k.DialFrom("", addr)
}

// DialFrom connects a new client from local ("host:port"; port 0 takes the
// next client port; "" the defaults) to addr. The connection is
// established at once: it waits in the listener's accept queue, and what
// the client writes is already delivered into the server end's receive
// buffer. Connecting to "localhost" means 127.0.0.1, to an unspecified
// address the loopback address of its family, as Linux does. With no
// listener for addr, or a full accept queue, it fails with ECONNREFUSED.
// Among several SO_REUSEPORT listeners the kernel's random source picks one;
// a listener bound to the exact address is preferred to a wildcard one.
// The simulation does not check that the four-tuple is unique.
func (k *Kernel) DialFrom(local, addr string) (*Conn, error) {
	ip, port, err := parseAddr("tcp", addr, false)
	if err == nil && port == 0 {
		err = errors.New("port 0")
	}
	if err != nil {
		return nil, fmt.Errorf("sim: dial %q: %w", addr, err)
	}
	if ip.IsUnspecified() {
		if ip.Is4() {
			ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		} else {
			ip = netip.IPv6Loopback()
		}
	}
	var lip netip.Addr
	lport := 0
	if local != "" {
		if lip, lport, err = parseAddr("tcp", local, false); err != nil {
			return nil, fmt.Errorf("sim: dial from %q: %w", local, err)
		}
		if lip.Is4() != ip.Is4() {
			return nil, fmt.Errorf("sim: dial from %q to %q: %w", local, addr, unix.EAFNOSUPPORT)
		}
	} else {
		lip = defaultClientIPv4
		if ip.Is6() {
			lip = defaultClientIPv6
		}
	}
	k.lock()
	defer k.unlock()
	if lport == 0 {
		lport = k.nextClientPort
		k.nextClientPort++
		if k.nextClientPort > lastPort {
			k.nextClientPort = firstClientPort
		}
	}
	k.clients++
	id := k.clients
	remote := netip.AddrPortFrom(ip, uint16(port))
	from := netip.AddrPortFrom(lip, uint16(lport))
	l := k.routeLocked(ip, port, false)
	if l == nil || len(l.queue) >= l.backlog {
		k.recordLocked(Record{Kind: KindDial, Client: id, FD: -1, Err: unix.ECONNREFUSED, Text: from.String() + " > " + remote.String()})
		return nil, fmt.Errorf("sim: dial %q: %w", addr, unix.ECONNREFUSED)
	}
	c := &connection{}
	srv := &endpoint{conn: c, fd: -1, window: k.cfg.ReceiveBuffer, sndbuf: k.cfg.SendBuffer, local: remote, remote: from}
	cli := &endpoint{conn: c, fd: -1, window: k.cfg.ReceiveBuffer, local: from, remote: remote, peer: srv}
	srv.peer = cli
	conn := &Conn{k: k, id: id, ep: cli}
	cli.client = conn
	l.queue = append(l.queue, srv)
	k.recordLocked(Record{Kind: KindDial, Client: id, FD: l.fd, Text: from.String() + " > " + remote.String()})
	return conn, nil
}

// routeLocked returns the listener that a connection to ip:port reaches, or
// nil. A test's Listener is reached only by a descriptor's Connect
// (connect true), not by a test client's Dial.
func (k *Kernel) routeLocked(ip netip.Addr, port int, connect bool) *listener {
	var exact, wild []*listener
	for _, l := range k.listeners {
		if int(l.addr.Port()) != port || !l.accepts(ip) || (l.isExt() && !connect) {
			continue
		}
		if l.addr.Addr().IsUnspecified() {
			wild = append(wild, l)
		} else {
			exact = append(exact, l)
		}
	}
	cands := exact
	if len(cands) == 0 {
		cands = wild
	}
	switch len(cands) {
	case 0:
		return nil
	case 1:
		return cands[0]
	}
	return cands[k.rng.IntN(len(cands))]
}

// parseAddr parses "host:port" for network. An empty host is the
// unspecified address when listen is true (all addresses) and an error
// otherwise. IPv4-mapped IPv6 addresses are taken as IPv4.
func parseAddr(network, address string, listen bool) (netip.Addr, int, error) {
	var want4, want6 bool
	switch network {
	case "tcp":
	case "tcp4":
		want4 = true
	case "tcp6":
		want6 = true
	default:
		return netip.Addr{}, 0, fmt.Errorf("unknown network %q", network)
	}
	host, ps, err := net.SplitHostPort(address)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > lastPort {
		return netip.Addr{}, 0, fmt.Errorf("bad port %q", ps)
	}
	var ip netip.Addr
	switch host {
	case "":
		if !listen {
			return netip.Addr{}, 0, errors.New("missing host")
		}
		ip = netip.IPv6Unspecified()
		if want4 {
			ip = netip.IPv4Unspecified()
		}
	case "localhost":
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if want6 {
			ip = netip.IPv6Loopback()
		}
	default:
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}, 0, fmt.Errorf("host %q is not an IP address (the simulation has no DNS)", host)
		}
		ip = ip.Unmap().WithZone("")
	}
	if (want4 && !ip.Is4()) || (want6 && !ip.Is6()) {
		return netip.Addr{}, 0, fmt.Errorf("address %v is not %s: %w", ip, network, unix.EAFNOSUPPORT)
	}
	return ip, port, nil
}

// sockaddrOf converts an address to the form accept(2) and getsockname(2)
// return.
func sockaddrOf(ap netip.AddrPort) unix.Sockaddr {
	ip := ap.Addr()
	if ip.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
}
