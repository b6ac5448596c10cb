// This file holds OS, the real kernel.Interface: raw, allocation-free
// wrappers over Linux socket calls. OS is stateless and safe from any
// goroutine; it never owns the descriptors it returns.

package kernel

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OS is the real Interface: thin wrappers over Linux system calls, through
// golang.org/x/sys/unix, or, for the raw calls, package syscall's
// RawSyscall6 (which unix.RawSyscall6 reaches only through an assembly jump
// and an ABI wrapper: about 17 instructions per call, measured with
// callgrind). It has no fields and no state; the zero value is
// ready to use and safe for concurrent use by every event loop. It never
// owns a descriptor: whoever receives one from Listen, Accept or Socketpair
// owns it and must Close it.
//
// Read, Write, Readv and Writev must only be given non-blocking descriptors
// (every descriptor OS creates is one): they are made as raw system calls,
// which do not tell the Go scheduler that the thread is in the kernel, so a
// call that blocked would hold its P (a share of GOMAXPROCS) for as long as
// it blocked.
type OS struct{}

var _ Interface = OS{}

// MaxIovecs is how many buffers Readv and Writev pass to the kernel in one
// call. Their iovec array lives on the stack so that a call allocates
// nothing; buffers past the first MaxIovecs non-empty ones are ignored, which
// is a legal short count for readv(2) and writev(2): the caller sees n
// smaller than the total and goes on from there, as it must anyway for a
// non-blocking socket.
const MaxIovecs = 16

// errnoErr returns e as an error, or nil for 0. Returning the raw Errno
// boxed in an interface does not allocate: Errno is a uintptr, and the
// runtime boxes word-sized values below 256 (every Linux errno) without
// allocating. The allocation tests in os_linux_test.go check it.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// count turns a system call's return value into a byte count: it is
// negative (-1) only when the call failed, and callers want 0 then.
func count(r uintptr) int {
	n := int(r)
	if n < 0 {
		return 0
	}
	return n
}

// Read reads from a non-blocking socket with recvfrom(2) (flags 0, no
// address), as a raw system call (see OS: it skips the scheduler's
// entersyscall/exitsyscall, which measured as the main per-call cost over a
// C server). It returns what read(2) would: the same bytes, 0 at EOF, EAGAIN,
// ECONNRESET. It is not read(2) because on a socket read(2) takes the
// generic file path, fdget_pos, vfs_read, sock_read_iter, and only then
// sock_recvmsg, while recvfrom(2) goes from fdget straight to
// __sys_recvfrom and sock_recvmsg: a profile of the echo server at 10 000
// connections had the read path at 8.4 % of the server's CPU against 2.4 %
// for a C server reading with recv(2). (On a later kernel, with system
// calls dearer all round, a call that finds nothing took 1 300 ns against
// 1 394, BenchmarkReadPath, about 1 % of the CPU per echoed message; see
// bench/RESULTS.md.) The price is that the descriptor must be a socket: on
// a pipe or a file it fails with ENOTSOCK, as Write does.
// An empty p returns (0, nil) without entering the kernel, as internal/poll
// does; callers must not take that for EOF, so they never pass one.
func (OS) Read(fd int, p []byte) (int, error) { return recvfrom(fd, p, 0) }

// Peek is recvfrom(2) with MSG_PEEK and no address. An empty p returns
// (0, nil) without a system call, as Read does.
func (OS) Peek(fd int, p []byte) (int, error) { return recvfrom(fd, p, unix.MSG_PEEK) }

// recvfrom is recvfrom(2) with flags and no address, as a raw system call;
// an empty p returns (0, nil) without one.
func recvfrom(fd int, p []byte, flags int) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		uintptr(flags), 0, 0)
	return count(r), errnoErr(e)
}

// Write is send(2) with MSG_NOSIGNAL on a non-blocking socket: a write(2)
// with the same cost, except that a write to a connection the peer has reset
// fails with EPIPE without the kernel also raising SIGPIPE. A plain Go
// program would ignore that signal, but it would still cost a signal delivery
// per failed write, reach any signal.Notify(SIGPIPE) channel of the user's,
// and in a c-archive or c-shared build be forwarded to the host program,
// whose default action kills the process. (Go's rule that EPIPE on fd 1 or 2
// kills the program lives in package os, which we bypass; with MSG_NOSIGNAL a
// socket that happens to be fd 1 or 2, as under inetd, behaves like any
// other.) The descriptor must be a socket: send fails with ENOTSOCK on a pipe
// or a file. An empty p returns (0, nil) without a system call.
func (OS) Write(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		unix.MSG_NOSIGNAL, 0, 0)
	return count(r), errnoErr(e)
}

// fillIovecs points iov at the non-empty buffers of bufs, at most len(iov) of
// them, and returns how many it used. Skipping empty buffers keeps them from
// using up the MaxIovecs slots.
func fillIovecs(iov *[MaxIovecs]unix.Iovec, bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if n == len(iov) {
			break
		}
		iov[n].Base = &b[0]
		iov[n].SetLen(len(b))
		n++
	}
	return n
}

// Readv reads from a non-blocking socket into at most the first MaxIovecs
// non-empty buffers of iov (see MaxIovecs) with recvmsg(2) (flags 0, no
// address, no control data), as a raw system call. It returns what readv(2)
// would; it is recvmsg for the reason given at Read (readv(2) on a socket
// goes through vfs_readv and sock_read_iter first), and so it too fails
// with ENOTSOCK on a descriptor that is not a socket. It allocates nothing.
// With no non-empty buffer it returns (0, nil) without a system call.
func (OS) Readv(fd int, bufs [][]byte) (int, error) {
	var iov [MaxIovecs]unix.Iovec
	cnt := fillIovecs(&iov, bufs)
	if cnt == 0 {
		return 0, nil
	}
	var msg unix.Msghdr
	msg.Iov = &iov[0]
	msg.SetIovlen(cnt)
	r, _, e := syscall.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), 0)
	return count(r), errnoErr(e)
}

// Writev is writev(2) on a non-blocking socket, made as sendmsg(2) with
// MSG_NOSIGNAL for the reason given at Write, from at most the first
// MaxIovecs non-empty buffers of iov (see MaxIovecs). It allocates nothing.
// With no non-empty buffer it returns (0, nil) without a system call.
func (OS) Writev(fd int, bufs [][]byte) (int, error) {
	var iov [MaxIovecs]unix.Iovec
	cnt := fillIovecs(&iov, bufs)
	if cnt == 0 {
		return 0, nil
	}
	var msg unix.Msghdr
	msg.Iov = &iov[0]
	msg.SetIovlen(cnt)
	r, _, e := syscall.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_NOSIGNAL)
	return count(r), errnoErr(e)
}

// Accept is accept4(2) with SOCK_NONBLOCK|SOCK_CLOEXEC, so the new descriptor
// is ready for the event loop and not inherited across exec. It is a raw
// system call into an address buffer on the stack, which unix.Accept4 is
// not (its buffer escapes, and it allocates the Sockaddr it returns): about
// 250 bytes of garbage per connection that a server holding many of them
// would see in its resident memory. Errors (EAGAIN when nothing is pending,
// EMFILE, ECONNABORTED, ...) are the raw errno.
func (OS) Accept(fd int) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	size := uint32(unix.SizeofSockaddrAny)
	r, _, e := syscall.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd),
		uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return int(r), rawAddrPort(&rsa), nil
}

// rawAddrPort decodes an IPv4 or IPv6 socket address as the kernel wrote it
// (port in network byte order), unmapping IPv4-mapped IPv6 addresses. Other
// families give the zero AddrPort.
func rawAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs converts a port from network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// Socketpair returns a connected pair of non-blocking, close-on-exec
// AF_UNIX stream sockets. They behave like a TCP connection for readiness
// (readable, writable, EOF and EPIPE after the peer closes) without using
// the network.
func (OS) Socketpair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}

// Connect creates a socket and starts a non-blocking connect(2) to sa (see
// Interface.Connect). EINTR counts as EINPROGRESS: the kernel goes on with
// the handshake after the signal, and the descriptor becomes writable when it
// ends, as connect(2) says. A Unix-domain connect never waits: it succeeds, or
// fails at once (ENOENT, ECONNREFUSED, or EAGAIN when the listener's backlog
// is full, which package net reports as an error too).
func (OS) Connect(sa unix.Sockaddr) (int, error) {
	family, proto := 0, 0
	switch sa.(type) {
	case *unix.SockaddrInet4:
		family, proto = unix.AF_INET, unix.IPPROTO_TCP
	case *unix.SockaddrInet6:
		family, proto = unix.AF_INET6, unix.IPPROTO_TCP
	case *unix.SockaddrUnix:
		family = unix.AF_UNIX
	default:
		return -1, os.NewSyscallError("socket", unix.EAFNOSUPPORT)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	switch err := unix.Connect(fd, sa); err {
	case nil:
		return fd, nil
	case unix.EINPROGRESS, unix.EINTR:
		return fd, unix.EINPROGRESS
	default:
		_ = unix.Close(fd) // already failing; err says why
		return -1, os.NewSyscallError("connect", err)
	}
}

// GetsockoptInt is getsockopt(2) for an int value.
func (OS) GetsockoptInt(fd, level, opt int) (int, error) {
	return unix.GetsockoptInt(fd, level, opt)
}

// Shutdown is shutdown(2).
func (OS) Shutdown(fd int, how int) error { return unix.Shutdown(fd, how) }

// Close is close(2), never retried (see Interface.Close).
func (OS) Close(fd int) error { return unix.Close(fd) }

// SetsockoptInt is setsockopt(2) with an int value.
func (OS) SetsockoptInt(fd, level, opt, value int) error {
	return unix.SetsockoptInt(fd, level, opt, value)
}

// SetLinger is setsockopt(2) with SO_LINGER (see Interface.SetLinger).
func (OS) SetLinger(fd int, sec int) error {
	l := unix.Linger{}
	if sec >= 0 {
		l.Onoff, l.Linger = 1, int32(min(sec, math.MaxInt32))
	}
	return unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &l)
}

// Getsockname is getsockname(2) (see Interface for AF_UNIX addresses).
func (OS) Getsockname(fd int) (unix.Sockaddr, error) { return getname(unix.SYS_GETSOCKNAME, fd) }

// Getpeername is getpeername(2) (see Interface for AF_UNIX addresses).
func (OS) Getpeername(fd int) (unix.Sockaddr, error) { return getname(unix.SYS_GETPEERNAME, fd) }

// getname makes getsockname(2) or getpeername(2) (trap) and decodes the
// address. It does not use unix.Getsockname because that drops the
// address's length, which is the only thing telling an unnamed AF_UNIX
// socket from an abstract one: it reports both as "@".
func getname(trap uintptr, fd int) (unix.Sockaddr, error) {
	var rsa unix.RawSockaddrAny
	size := uint32(unix.SizeofSockaddrAny)
	_, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)))
	if e != 0 {
		return nil, e
	}
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		return &unix.SockaddrInet4{Port: int(ntohs(sa.Port)), Addr: sa.Addr}, nil
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		return &unix.SockaddrInet6{Port: int(ntohs(sa.Port)), ZoneId: sa.Scope_id, Addr: sa.Addr}, nil
	case unix.AF_UNIX:
		return &unix.SockaddrUnix{Name: unixName((*unix.RawSockaddrUnix)(unsafe.Pointer(&rsa)), size)}, nil
	}
	return nil, unix.EAFNOSUPPORT
}

// origin is the arbitrary origin of Now, captured once when the package is
// initialised. It is a package-level variable but not global state in the
// sense of the design's rule: it is never written after init and holds no
// server's state, so two servers in one process share it without
// interfering (as they share the kernel's monotonic clock it reads).
var origin = time.Now()

// Now returns the monotonic time since origin. time.Since on a Time with a
// monotonic reading costs one vDSO clock_gettime(CLOCK_MONOTONIC) and no
// wall-clock read, which matters because every loop iteration calls it.
func (OS) Now() time.Duration { return time.Since(origin) }

// Listen creates a listening TCP socket: socket(2) with
// SOCK_NONBLOCK|SOCK_CLOEXEC, SO_REUSEADDR (so a restarted server can bind
// while old connections sit in TIME_WAIT), SO_REUSEPORT if reusePort,
// bind(2), listen(2), and getsockname(2) so that a ":0" address reports the
// port the kernel chose.
//
// network is "tcp", "tcp4" or "tcp6". address is "host:port". The host is
// an IP literal (IPv6 may carry a zone, "fe80::1%eth0"), "localhost", or
// empty. An empty host means every local address: 0.0.0.0 for "tcp4", and
// [::] with IPV6_V6ONLY cleared (dual-stack: it accepts IPv4 clients too) for
// "tcp" and "tcp6"; for "tcp", a host without IPv6 gets 0.0.0.0 instead.
// "localhost" is 127.0.0.1 (::1 for "tcp6") without consulting /etc/hosts.
// No other name is resolved: reactor does no DNS on the listening path, so a
// name is an error. The port is a decimal number (no service names); empty
// means 0.
//
// A backlog <= 0 means the system's maximum, read from
// /proc/sys/net/core/somaxconn as package net does (unix.SOMAXCONN if that
// fails); the kernel silently caps any larger value at that maximum anyway.
//
// Errors from the system calls are wrapped with os.NewSyscallError (unlike
// the I/O calls, Listen is not on a hot path and its errors reach users);
// the raw errno stays reachable through errors.Is. Errors do not repeat the
// operation, network or address: the caller adds them at the public edge, as
// net.OpError does. No descriptor is left open when Listen fails.
//
// Network "unix" is handled by listenUnix (see there).
func (OS) Listen(network, address string, reusePort bool, backlog int) (int, unix.Sockaddr, error) {
	if backlog <= 0 {
		backlog = maxBacklog()
	}
	if network == "unix" {
		if reusePort {
			return -1, nil, errors.New("reactor: SO_REUSEPORT does not apply to Unix domain sockets")
		}
		return listenUnix(address, backlog)
	}
	sa, family, err := listenAddr(network, address)
	if err != nil {
		return -1, nil, err
	}
	fd, err := listenOn(family, sa, reusePort, backlog)
	if err != nil && network == "tcp" && family == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
		// A kernel without IPv6 (ipv6.disable=1): the all-addresses host of
		// "tcp" can only mean IPv4 there, as it does for package net.
		if sa6 := sa.(*unix.SockaddrInet6); sa6.Addr == ([16]byte{}) {
			sa, family = &unix.SockaddrInet4{Port: sa6.Port}, unix.AF_INET
			fd, err = listenOn(family, sa, reusePort, backlog)
		}
	}
	if err != nil {
		return -1, nil, err
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		_ = unix.Close(fd) // already failing; the getsockname error says why
		return -1, nil, os.NewSyscallError("getsockname", err)
	}
	return fd, bound, nil
}

// listenOn makes the socket, sets its options, binds and listens, closing
// the socket on any failure.
func listenOn(family int, sa unix.Sockaddr, reusePort bool, backlog int) (fd int, err error) {
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	defer func() {
		if err != nil {
			_ = unix.Close(fd) // already failing; err says why
			fd = -1
		}
	}()
	if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fd, os.NewSyscallError("setsockopt SO_REUSEADDR", err)
	}
	if reusePort {
		if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fd, os.NewSyscallError("setsockopt SO_REUSEPORT", err)
		}
	}
	if sa6, ok := sa.(*unix.SockaddrInet6); ok && sa6.Addr == ([16]byte{}) {
		// The wildcard address serves IPv4 clients too (as ::ffff:a.b.c.d)
		// only with IPV6_V6ONLY off; its default comes from the
		// net.ipv6.bindv6only sysctl, so set it explicitly.
		if err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fd, os.NewSyscallError("setsockopt IPV6_V6ONLY", err)
		}
	}
	if err = unix.Bind(fd, sa); err != nil {
		return fd, os.NewSyscallError("bind", err)
	}
	if err = unix.Listen(fd, backlog); err != nil {
		return fd, os.NewSyscallError("listen", err)
	}
	return fd, nil
}

// listenAddr parses network and address into a socket address and its
// address family, without any name resolution (see Listen).
func listenAddr(network, address string) (unix.Sockaddr, int, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, 0, fmt.Errorf("reactor: unsupported network %q (want tcp, tcp4, tcp6 or unix)", network)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, 0, fmt.Errorf("reactor: %w", err)
	}
	port := 0
	if portStr != "" {
		p, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			return nil, 0, fmt.Errorf("reactor: port %q is not a number from 0 to 65535", portStr)
		}
		port = int(p)
	}

	var ip netip.Addr
	switch {
	case host == "":
		if network == "tcp4" {
			ip = netip.IPv4Unspecified()
		} else {
			ip = netip.IPv6Unspecified()
		}
	case strings.EqualFold(host, "localhost"):
		if network == "tcp6" {
			ip = netip.IPv6Loopback()
		} else {
			ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	default:
		ip, err = netip.ParseAddr(host)
		if err != nil {
			return nil, 0, fmt.Errorf("reactor: host %q is not an IP address, \"localhost\" or empty (listening resolves no names)", host)
		}
	}
	if ip.Is4In6() && network != "tcp6" {
		ip = ip.Unmap() // ::ffff:a.b.c.d means the IPv4 address, as in package net
	}

	switch {
	case ip.Is4() && network != "tcp6":
		return &unix.SockaddrInet4{Port: port, Addr: ip.As4()}, unix.AF_INET, nil
	case ip.Is6() && network != "tcp4":
		sa := &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
		if zone := ip.Zone(); zone != "" {
			id, err := zoneIndex(zone)
			if err != nil {
				return nil, 0, fmt.Errorf("reactor: %w", err)
			}
			sa.ZoneId = id
		}
		return sa, unix.AF_INET6, nil
	}
	return nil, 0, fmt.Errorf("reactor: address %q is not a %s address", host, network)
}

// zoneIndex turns an IPv6 zone ("eth0" or "2") into an interface index.
func zoneIndex(zone string) (uint32, error) {
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, fmt.Errorf("zone %q: %w", zone, err)
	}
	return uint32(ifi.Index), nil
}

// maxBacklog is the system's largest listen backlog. Reading it, rather than
// passing a huge number, keeps the value a reader of strace sees meaningful;
// a failed read falls back to the compile-time SOMAXCONN (4096 since Linux
// 5.4).
func maxBacklog() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return unix.SOMAXCONN
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return unix.SOMAXCONN
	}
	return n
}
