package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// ioTimeout bounds every wait in these tests; none should come near it.
const ioTimeout = 10 * time.Second

// skipWithoutIPv6 skips a test on a host where [::1] cannot be bound.
func skipWithoutIPv6(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("IPv6 loopback unavailable: %v", err)
	}
	require.NoError(t, l.Close())
}

// waitReadable blocks in poll(2) until fd is readable (or has an error or a
// hang-up pending), failing the test after ioTimeout.
func waitReadable(t testing.TB, fd int) {
	t.Helper()
	waitPoll(t, fd, unix.POLLIN, "readable")
}

// waitWritable blocks in poll(2) until fd is writable (or failed), failing
// the test after ioTimeout.
func waitWritable(t *testing.T, fd int) {
	t.Helper()
	waitPoll(t, fd, unix.POLLOUT, "writable")
}

func waitPoll(t testing.TB, fd int, events int16, what string) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	deadline := time.Now().Add(ioTimeout)
	for {
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		require.NoError(t, err)
		require.Equal(t, 1, n, "fd %d not %s within %v", fd, what, ioTimeout)
		return
	}
}

// closeFD closes fd at the end of the test.
func closeFD(t testing.TB, fd int) {
	t.Cleanup(func() { assert.NoError(t, OS{}.Close(fd)) })
}

// socketpair returns a socketpair closed at the end of the test.
func socketpair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := OS{}.Socketpair()
	require.NoError(t, err)
	closeFD(t, fds[0])
	closeFD(t, fds[1])
	return fds[0], fds[1]
}

// assertNonblockCloexec checks the flags every descriptor OS creates has.
func assertNonblockCloexec(t testing.TB, fd int) {
	t.Helper()
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.NotZero(t, fl&unix.O_NONBLOCK, "fd %d is blocking", fd)
	fdfl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	require.NoError(t, err)
	assert.NotZero(t, fdfl&unix.FD_CLOEXEC, "fd %d lacks close-on-exec", fd)
}

// sockaddrAddrPort converts an inet Sockaddr for comparisons.
func sockaddrAddrPort(t testing.TB, sa unix.Sockaddr) netip.AddrPort {
	t.Helper()
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	require.Failf(t, "not an inet address", "%T", sa)
	return netip.AddrPort{}
}

// connected is one accepted TCP connection: fd is the server side (ours),
// c the client side (package net's).
type connected struct {
	lfd, fd int
	c       *net.TCPConn
}

// listenAndAccept listens with OS on address, dials it with package net and
// accepts with OS. Everything is closed at the end of the test.
func listenAndAccept(t testing.TB, network, address string) connected {
	t.Helper()
	k := OS{}
	lfd, lsa, err := k.Listen(network, address, false, 0)
	require.NoError(t, err)
	closeFD(t, lfd)
	assertNonblockCloexec(t, lfd)

	laddr := sockaddrAddrPort(t, lsa)
	require.NotZero(t, laddr.Port(), "getsockname should report the chosen port")
	c, err := net.DialTimeout("tcp", laddr.String(), ioTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() }) // some tests close it themselves

	waitReadable(t, lfd)
	fd, peer, err := k.Accept(lfd)
	require.NoError(t, err)
	closeFD(t, fd)
	assertNonblockCloexec(t, fd)
	want := c.LocalAddr().(*net.TCPAddr).AddrPort()
	assert.Equal(t, netip.AddrPortFrom(want.Addr().Unmap(), want.Port()), peer)

	_, _, err = k.Accept(lfd)
	assert.Equal(t, unix.EAGAIN, err, "a second accept has nothing pending")
	return connected{lfd: lfd, fd: fd, c: c.(*net.TCPConn)}
}

// readFull reads exactly n bytes from c, with a deadline.
func readFull(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(ioTimeout)))
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	require.NoError(t, err)
	return b
}

func TestListenAddress(t *testing.T) {
	tests := []struct {
		network, address string
		ipv6             bool   // needs an IPv6 stack
		want             string // the bound address without the port
	}{
		{"tcp4", "127.0.0.1:0", false, "127.0.0.1"},
		{"tcp", "127.0.0.1:0", false, "127.0.0.1"},
		{"tcp", "localhost:0", false, "127.0.0.1"},
		{"tcp4", "LocalHost:0", false, "127.0.0.1"},
		{"tcp4", ":0", false, "0.0.0.0"},
		{"tcp", "[::ffff:127.0.0.1]:0", false, "127.0.0.1"},
		{"tcp", "127.0.0.1:", false, "127.0.0.1"},
		{"tcp6", "[::1]:0", true, "::1"},
		{"tcp", "[::1]:0", true, "::1"},
		{"tcp6", "localhost:0", true, "::1"},
		{"tcp", ":0", true, "::"},
		{"tcp6", ":0", true, "::"},
	}
	for _, tt := range tests {
		t.Run(tt.network+" "+tt.address, func(t *testing.T) {
			if tt.ipv6 {
				skipWithoutIPv6(t)
			}
			fd, sa, err := OS{}.Listen(tt.network, tt.address, false, 0)
			require.NoError(t, err)
			closeFD(t, fd)
			assertNonblockCloexec(t, fd)
			ap := sockaddrAddrPort(t, sa)
			assert.Equal(t, tt.want, ap.Addr().String())
			assert.NotZero(t, ap.Port())

			typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
			require.NoError(t, err)
			assert.Equal(t, unix.SOCK_STREAM, typ)
			acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
			require.NoError(t, err)
			assert.Equal(t, 1, acc, "socket is listening")
			reuse, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR)
			require.NoError(t, err)
			assert.Equal(t, 1, reuse, "SO_REUSEADDR")
		})
	}
}

// TestListenDualStack checks that the all-addresses listener of "tcp" and
// "tcp6" accepts IPv4 clients too (IPV6_V6ONLY cleared).
func TestListenDualStack(t *testing.T) {
	skipWithoutIPv6(t)
	for _, network := range []string{"tcp", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			fd, sa, err := OS{}.Listen(network, ":0", false, 0)
			require.NoError(t, err)
			closeFD(t, fd)
			v6only, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
			require.NoError(t, err)
			assert.Equal(t, 0, v6only)

			port := strconv.Itoa(int(sockaddrAddrPort(t, sa).Port()))
			for _, host := range []string{"127.0.0.1", "::1"} {
				c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), ioTimeout)
				require.NoError(t, err, "dial %s", host)
				waitReadable(t, fd)
				nfd, _, err := OS{}.Accept(fd)
				require.NoError(t, err)
				assert.NoError(t, OS{}.Close(nfd))
				assert.NoError(t, c.Close())
			}
		})
	}
}

func TestListenErrors(t *testing.T) {
	tests := []struct {
		network, address string
		want             string // in the error text
	}{
		{"udp", "127.0.0.1:0", "unsupported network"},
		{"sctp", "127.0.0.1:0", "unsupported network"},
		{"unix", "", "empty Unix socket path"},
		{"unix", "/nonexistent-reactor-dir/s.sock", "bind: no such file or directory"},
		{"tcp", "127.0.0.1", "missing port"},
		{"tcp", "example.com:80", "not an IP address"},
		{"tcp", "127.0.0.1:http", "not a number"},
		{"tcp", "127.0.0.1:65536", "not a number"},
		{"tcp", "127.0.0.1:-1", "not a number"},
		{"tcp4", "[::1]:0", "not a tcp4 address"},
		{"tcp6", "127.0.0.1:0", "not a tcp6 address"},
		{"tcp6", "[fe80::1%no-such-interface-x]:0", "no-such-interface-x"},
		{"tcp4", "192.0.2.1:0", "bind: cannot assign requested address"}, // TEST-NET-1: not ours
	}
	for _, tt := range tests {
		t.Run(tt.network+" "+tt.address, func(t *testing.T) {
			fd, sa, err := OS{}.Listen(tt.network, tt.address, false, 0)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, -1, fd)
			assert.Nil(t, sa)
		})
	}
}

// lowestFreeFD returns the lowest descriptor number not in use: a test
// that it is the same before and after a call shows the call leaked none.
func lowestFreeFD(t *testing.T) int {
	t.Helper()
	fd, err := unix.Dup(0)
	require.NoError(t, err)
	require.NoError(t, unix.Close(fd))
	return fd
}

// TestListenNoLeakOnError checks that a failing Listen (here bind, after
// socket and setsockopt succeeded) closes its socket: the lowest free
// descriptor number is the same before and after.
func TestListenNoLeakOnError(t *testing.T) {
	before := lowestFreeFD(t)
	_, _, err := OS{}.Listen("tcp4", "192.0.2.1:0", true, 0)
	require.ErrorIs(t, err, unix.EADDRNOTAVAIL)
	assert.Equal(t, before, lowestFreeFD(t))
}

func TestListenReusePort(t *testing.T) {
	k := OS{}
	fd1, sa, err := k.Listen("tcp4", "127.0.0.1:0", true, 16)
	require.NoError(t, err)
	closeFD(t, fd1)
	on, err := unix.GetsockoptInt(fd1, unix.SOL_SOCKET, unix.SO_REUSEPORT)
	require.NoError(t, err)
	assert.Equal(t, 1, on)
	addr := sockaddrAddrPort(t, sa).String()

	fd2, _, err := k.Listen("tcp4", addr, true, 16)
	require.NoError(t, err, "a second SO_REUSEPORT listener on the same port")
	closeFD(t, fd2)

	fd3, _, err := k.Listen("tcp4", addr, false, 16)
	assert.ErrorIs(t, err, unix.EADDRINUSE, "without SO_REUSEPORT the port is taken")
	assert.Equal(t, -1, fd3)
}

func TestMaxBacklog(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		assert.Equal(t, unix.SOMAXCONN, maxBacklog())
		return
	}
	want, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	assert.Equal(t, want, maxBacklog())
}

func TestTCPRoundTrip(t *testing.T) {
	tests := []struct {
		network, address string
		ipv6             bool
	}{
		{"tcp4", "127.0.0.1:0", false},
		{"tcp6", "[::1]:0", true},
	}
	for _, tt := range tests {
		t.Run(tt.network, func(t *testing.T) {
			if tt.ipv6 {
				skipWithoutIPv6(t)
			}
			k := OS{}
			cn := listenAndAccept(t, tt.network, tt.address)
			buf := make([]byte, 64)

			// Nothing sent yet: EAGAIN, raw, with a zero count.
			n, err := k.Read(cn.fd, buf)
			assert.Equal(t, 0, n)
			assert.Equal(t, unix.EAGAIN, err)
			_, isErrno := err.(unix.Errno)
			assert.True(t, isErrno, "error is a raw unix.Errno, got %T", err)
			n, err = k.Readv(cn.fd, [][]byte{buf[:3], buf[3:]})
			assert.Equal(t, 0, n)
			assert.Equal(t, unix.EAGAIN, err)

			// read
			_, err = cn.c.Write([]byte("hello"))
			require.NoError(t, err)
			waitReadable(t, cn.fd)
			n, err = k.Read(cn.fd, buf)
			require.NoError(t, err)
			assert.Equal(t, "hello", string(buf[:n]))

			// write
			n, err = k.Write(cn.fd, []byte("world"))
			require.NoError(t, err)
			assert.Equal(t, 5, n)
			assert.Equal(t, "world", string(readFull(t, cn.c, 5)))

			// writev, with an empty buffer in the middle
			n, err = k.Writev(cn.fd, [][]byte{[]byte("ab"), nil, []byte("cde")})
			require.NoError(t, err)
			assert.Equal(t, 5, n)
			assert.Equal(t, "abcde", string(readFull(t, cn.c, 5)))

			// readv scatters in order
			_, err = cn.c.Write([]byte("0123456789"))
			require.NoError(t, err)
			waitReadable(t, cn.fd)
			a, b, c := make([]byte, 3), make([]byte, 4), make([]byte, 8)
			got := 0
			for got < 10 { // TCP may deliver the 10 bytes in pieces
				n, err = k.Readv(cn.fd, [][]byte{a, b, c})
				if err == unix.EAGAIN {
					waitReadable(t, cn.fd)
					continue
				}
				require.NoError(t, err)
				got += n
				a, b, c = shift(a, b, c, n)
			}
			assert.Equal(t, 10, got)

			// shutdown(SHUT_WR) sends FIN: the peer reads EOF
			require.NoError(t, k.Shutdown(cn.fd, unix.SHUT_WR))
			require.NoError(t, cn.c.SetReadDeadline(time.Now().Add(ioTimeout)))
			_, err = cn.c.Read(buf)
			assert.ErrorIs(t, err, io.EOF)

			// the peer closes: readable, then read returns (0, nil), and
			// so does every later read, vectored or not
			require.NoError(t, cn.c.Close())
			waitReadable(t, cn.fd)
			n, err = k.Read(cn.fd, buf)
			assert.Equal(t, 0, n)
			assert.NoError(t, err, "EOF is (0, nil)")
			n, err = k.Readv(cn.fd, [][]byte{buf[:3], buf[3:]})
			assert.Equal(t, 0, n)
			assert.NoError(t, err, "EOF is (0, nil) for Readv too")
			n, err = k.Read(cn.fd, buf)
			assert.Equal(t, 0, n)
			assert.NoError(t, err, "EOF stays")
		})
	}
}

// shift drops n read bytes from the front of the readv buffers a, b, c.
func shift(a, b, c []byte, n int) ([]byte, []byte, []byte) {
	bufs := [][]byte{a, b, c}
	for i := range bufs {
		m := min(n, len(bufs[i]))
		bufs[i] = bufs[i][m:]
		n -= m
	}
	return bufs[0], bufs[1], bufs[2]
}

// TestPeerReset: after the peer resets the connection (close with
// SO_LINGER 0), the first read, vectored or not, reports ECONNRESET, reads
// after it see EOF, and writes fail with EPIPE, without a SIGPIPE (which
// under go test would be ignored anyway, but the write must fail cleanly).
func TestPeerReset(t *testing.T) {
	k := OS{}
	buf := make([]byte, 16)
	reads := []struct {
		name string
		read func(fd int) (int, error)
	}{
		{"Read", func(fd int) (int, error) { return k.Read(fd, buf) }},
		{"Readv", func(fd int) (int, error) { return k.Readv(fd, [][]byte{buf[:4], buf[4:]}) }},
	}
	for _, tt := range reads {
		t.Run(tt.name, func(t *testing.T) {
			cn := listenAndAccept(t, "tcp4", "127.0.0.1:0")
			require.NoError(t, cn.c.SetLinger(0))
			require.NoError(t, cn.c.Close())
			waitReadable(t, cn.fd)

			n, err := tt.read(cn.fd)
			assert.Equal(t, 0, n)
			assert.Equal(t, unix.ECONNRESET, err)
			n, err = tt.read(cn.fd)
			assert.Equal(t, 0, n)
			assert.NoError(t, err, "after the reset is reported, reads see EOF")

			n, err = k.Write(cn.fd, []byte("x"))
			assert.Equal(t, 0, n)
			assert.Equal(t, unix.EPIPE, err)
			n, err = k.Writev(cn.fd, [][]byte{[]byte("x"), []byte("y")})
			assert.Equal(t, 0, n)
			assert.Equal(t, unix.EPIPE, err)
		})
	}
}

// TestReadNeedsSocket: Read and Readv are recvfrom(2) and recvmsg(2), not
// read(2) and readv(2) (see Read for why), so like Write and Writev they
// fail with ENOTSOCK on a descriptor that is not a socket, here a pipe with
// a byte waiting, which read(2) would have returned.
func TestReadNeedsSocket(t *testing.T) {
	k := OS{}
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	closeFD(t, p[0])
	closeFD(t, p[1])
	_, err := unix.Write(p[1], []byte("x"))
	require.NoError(t, err)
	buf := make([]byte, 4)

	n, err := k.Read(p[0], buf)
	assert.Equal(t, 0, n)
	assert.Equal(t, unix.ENOTSOCK, err)
	n, err = k.Readv(p[0], [][]byte{buf[:2], buf[2:]})
	assert.Equal(t, 0, n)
	assert.Equal(t, unix.ENOTSOCK, err)
	_, err = k.Write(p[1], []byte("y"))
	assert.Equal(t, unix.ENOTSOCK, err)

	n, err = unix.Read(p[0], buf)
	require.NoError(t, err)
	assert.Equal(t, "x", string(buf[:n]), "the byte is still there for read(2)")
}

// TestWriteResetFirst: when the first call after the reset is a write, it
// is the write that reports ECONNRESET.
func TestWriteResetFirst(t *testing.T) {
	k := OS{}
	cn := listenAndAccept(t, "tcp4", "127.0.0.1:0")
	require.NoError(t, cn.c.SetLinger(0))
	require.NoError(t, cn.c.Close())
	waitReadable(t, cn.fd)

	_, err := k.Write(cn.fd, []byte("x"))
	assert.Equal(t, unix.ECONNRESET, err)
	_, err = k.Write(cn.fd, []byte("x"))
	assert.Equal(t, unix.EPIPE, err)
}

func TestSocketpair(t *testing.T) {
	k := OS{}
	a, b := socketpair(t)
	assertNonblockCloexec(t, a)
	assertNonblockCloexec(t, b)

	n, err := k.Write(a, []byte("ping"))
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	buf := make([]byte, 8)
	n, err = k.Read(b, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf[:n]))

	// The peer closed: EOF for the reader, EPIPE (no SIGPIPE) for the writer.
	require.NoError(t, k.Shutdown(a, unix.SHUT_RDWR))
	n, err = k.Read(b, buf)
	assert.Equal(t, 0, n)
	assert.NoError(t, err)
	n, err = k.Readv(b, [][]byte{buf[:1], buf[1:]})
	assert.Equal(t, 0, n)
	assert.NoError(t, err)
	_, err = k.Write(b, []byte("x"))
	assert.Equal(t, unix.EPIPE, err)
}

// TestEmptyBuffers: empty reads and writes return (0, nil) without a
// system call, so even a closed descriptor reports nothing.
func TestEmptyBuffers(t *testing.T) {
	k := OS{}
	const bad = -1
	tests := []struct {
		name string
		call func() (int, error)
	}{
		{"Read", func() (int, error) { return k.Read(bad, nil) }},
		{"Write", func() (int, error) { return k.Write(bad, []byte{}) }},
		{"Readv nil", func() (int, error) { return k.Readv(bad, nil) }},
		{"Readv empties", func() (int, error) { return k.Readv(bad, [][]byte{nil, {}}) }},
		{"Writev", func() (int, error) { return k.Writev(bad, [][]byte{{}}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.call()
			assert.Equal(t, 0, n)
			assert.NoError(t, err)
		})
	}
	_, err := k.Read(bad, make([]byte, 1))
	assert.Equal(t, unix.EBADF, err, "a non-empty read does reach the kernel")
}

// TestIovecLimit: more than MaxIovecs non-empty buffers give a short count
// covering exactly the first MaxIovecs.
func TestIovecLimit(t *testing.T) {
	k := OS{}
	a, b := socketpair(t)
	const nbufs = MaxIovecs + 4
	out := make([][]byte, 0, nbufs+1)
	out = append(out, nil) // empties don't take a slot
	for i := range nbufs {
		out = append(out, []byte{byte('a' + i)})
	}
	n, err := k.Writev(a, out)
	require.NoError(t, err)
	assert.Equal(t, MaxIovecs, n)

	// Send the rest, then read everything back with too many buffers.
	n, err = k.Write(a, []byte("ABCD"))
	require.NoError(t, err)
	require.Equal(t, 4, n)
	in := make([][]byte, nbufs)
	for i := range in {
		in[i] = make([]byte, 1)
	}
	n, err = k.Readv(b, in)
	require.NoError(t, err)
	assert.Equal(t, MaxIovecs, n)
	assert.Equal(t, "abcdefghijklmnop", string(bytes.Join(in[:MaxIovecs], nil)))
	for _, p := range in[MaxIovecs:] {
		assert.Equal(t, byte(0), p[0], "buffers past MaxIovecs are untouched")
	}
	rest := make([]byte, 8)
	n, err = k.Read(b, rest)
	require.NoError(t, err)
	assert.Equal(t, "ABCD", string(rest[:n]))
}

func TestSockopts(t *testing.T) {
	k := OS{}
	cn := listenAndAccept(t, "tcp4", "127.0.0.1:0")
	require.NoError(t, k.SetsockoptInt(cn.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1))
	v, err := unix.GetsockoptInt(cn.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	require.NoError(t, err)
	assert.Equal(t, 1, v)

	local, err := k.Getsockname(cn.fd)
	require.NoError(t, err)
	assert.Equal(t, cn.c.RemoteAddr().(*net.TCPAddr).AddrPort(), sockaddrAddrPort(t, local))
	peer, err := k.Getpeername(cn.fd)
	require.NoError(t, err)
	assert.Equal(t, cn.c.LocalAddr().(*net.TCPAddr).AddrPort(), sockaddrAddrPort(t, peer))

	assert.ErrorIs(t, k.SetsockoptInt(-1, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1), unix.EBADF)
	assert.ErrorIs(t, k.Close(-1), unix.EBADF)
}

func TestSetLinger(t *testing.T) {
	k := OS{}
	cn := listenAndAccept(t, "tcp4", "127.0.0.1:0")
	for _, tt := range []struct {
		sec  int
		want unix.Linger
	}{
		{0, unix.Linger{Onoff: 1, Linger: 0}},
		{5, unix.Linger{Onoff: 1, Linger: 5}},
		{-1, unix.Linger{}},
		{-9, unix.Linger{}},
	} {
		require.NoError(t, k.SetLinger(cn.fd, tt.sec))
		l, err := unix.GetsockoptLinger(cn.fd, unix.SOL_SOCKET, unix.SO_LINGER)
		require.NoError(t, err)
		if tt.want.Onoff == 0 {
			l.Linger = 0 // off: Linux keeps the last timeout, unused
		}
		assert.Equal(t, tt.want, *l, "SetLinger(%d)", tt.sec)
	}
	assert.ErrorIs(t, k.SetLinger(-1, 0), unix.EBADF)

	// With 0 seconds, close sends RST: the peer reads what had arrived,
	// then ECONNRESET. (This test closes the accepted descriptor itself.)
	c, err := net.DialTimeout("tcp", cn.c.RemoteAddr().String(), ioTimeout)
	require.NoError(t, err)
	defer c.Close()
	waitReadable(t, cn.lfd)
	fd, _, err := k.Accept(cn.lfd)
	require.NoError(t, err)
	require.NoError(t, k.SetLinger(fd, 0))
	_, err = k.Write(fd, []byte("bye"))
	require.NoError(t, err)
	assert.Equal(t, []byte("bye"), readFull(t, c, 3))
	require.NoError(t, k.Close(fd))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, unix.ECONNRESET)
}

func TestNow(t *testing.T) {
	k := OS{}
	wall := time.Now()
	t0 := k.Now()
	// Spin (not sleep) until the clock has visibly advanced.
	var t1 time.Duration
	for t1 = k.Now(); t1 <= t0; t1 = k.Now() {
	}
	elapsed := time.Since(wall)
	assert.Greater(t, t1, t0)
	assert.GreaterOrEqual(t, t0, time.Duration(0))
	// Both read the same monotonic clock, and [t0, t1] lies inside
	// [wall, wall+elapsed].
	assert.LessOrEqual(t, t1-t0, elapsed)
}

// TestNoAllocs: the hot-path calls allocate nothing, on the data path and
// on the EAGAIN path (the boxed unix.Errno must not allocate either).
func TestNoAllocs(t *testing.T) {
	k := OS{}
	a, b := socketpair(t)
	one := []byte{'x'}
	buf := make([]byte, 16)
	iovOut := [][]byte{one, one}
	iovIn := [][]byte{buf[:1], buf[1:]}

	// A socket whose send buffer is full, for the write EAGAIN path: fill
	// it with big writes, then with one-byte writes until even those fail.
	full, _ := socketpair(t)
	for _, size := range []int{64 << 10, 1} {
		chunk := make([]byte, size)
		for {
			_, err := k.Write(full, chunk)
			if err == unix.EAGAIN {
				break
			}
			require.NoError(t, err)
		}
	}

	// A socket at EOF, for the (0, nil) path.
	eof, closed := socketpair(t)
	require.NoError(t, k.Shutdown(closed, unix.SHUT_WR))
	expectEOF := func(n int, err error) error {
		if n != 0 || err != nil {
			return fmt.Errorf("expected EOF, got (%d, %v)", n, err)
		}
		return nil
	}

	tests := []struct {
		name string
		fn   func() error
	}{
		{"Read EAGAIN", func() error { return expectEAGAIN(k.Read(a, buf)) }},
		{"Read EOF", func() error { return expectEOF(k.Read(eof, buf)) }},
		{"Readv EOF", func() error { return expectEOF(k.Readv(eof, iovIn)) }},
		{"Readv EAGAIN", func() error { return expectEAGAIN(k.Readv(a, iovIn)) }},
		{"Write EAGAIN", func() error { return expectEAGAIN(k.Write(full, one)) }},
		{"Writev EAGAIN", func() error { return expectEAGAIN(k.Writev(full, iovOut)) }},
		{"Write+Read", func() error {
			if _, err := k.Write(b, one); err != nil {
				return err
			}
			_, err := k.Read(a, buf)
			return err
		}},
		{"Writev+Readv", func() error {
			if _, err := k.Writev(b, iovOut); err != nil {
				return err
			}
			_, err := k.Readv(a, iovIn)
			return err
		}},
		{"Now", func() error { _ = k.Now(); return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			allocs := testing.AllocsPerRun(100, func() {
				if e := tt.fn(); e != nil && err == nil {
					err = e
				}
			})
			require.NoError(t, err)
			assert.Zero(t, allocs)
		})
	}
}

// expectEAGAIN turns an expected EAGAIN into nil and anything else into an error.
func expectEAGAIN(_ int, err error) error {
	if err == unix.EAGAIN {
		return nil
	}
	if err == nil {
		return errors.New("expected EAGAIN, got success")
	}
	return err
}

// TestAcceptAllocatesNothing: accepting leaves no garbage behind, the peer's
// address included. A server accepting many connections would otherwise
// carry that garbage in its resident memory.
func TestAcceptAllocatesNothing(t *testing.T) {
	var k OS
	const pending = 101 // AllocsPerRun's warm-up run plus 100
	lfd, lsa, err := k.Listen("tcp4", "127.0.0.1:0", false, 256)
	require.NoError(t, err)
	closeFD(t, lfd)
	sa := lsa.(*unix.SockaddrInet4)
	for range pending {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		closeFD(t, fd)
		require.NoError(t, unix.Connect(fd, sa))
	}
	waitReadable(t, lfd)
	var failed error
	allocs := testing.AllocsPerRun(pending-1, func() {
		fd, peer, err := k.Accept(lfd)
		if err != nil || !peer.Addr().Is4() {
			failed = fmt.Errorf("accept: fd %d, peer %v, err %v", fd, peer, err)
			return
		}
		_ = unix.Close(fd) // accepted only to be counted
	})
	require.NoError(t, failed)
	assert.Zero(t, allocs)
}

// BenchmarkReadPath compares the system calls Read and Readv make
// (recvfrom, recvmsg) with read(2) and readv(2), which they replaced, on one
// loopback TCP connection: once on the EAGAIN path, which walks the whole
// path down to tcp_recvmsg and back without moving a byte, and once reading
// a 64-byte message the peer has just sent. Run the sub-benchmarks
// interleaved (-count 1, several times) on a shared machine.
func BenchmarkReadPath(b *testing.B) {
	k := OS{}
	cn := listenAndAccept(b, "tcp4", "127.0.0.1:0")
	raw, err := cn.c.SyscallConn()
	require.NoError(b, err)
	var peer int
	require.NoError(b, raw.Control(func(fd uintptr) { peer = int(fd) }))
	buf := make([]byte, 64<<10)
	iov := [][]byte{buf[:32<<10], buf[32<<10:]}
	msg := make([]byte, 64)

	readv := func(fd int, bufs [][]byte) (int, error) {
		var vec [2]unix.Iovec
		for i, p := range bufs {
			vec[i].Base = &p[0]
			vec[i].SetLen(len(p))
		}
		r, _, e := unix.RawSyscall(unix.SYS_READV, uintptr(fd), uintptr(unsafe.Pointer(&vec[0])), uintptr(len(bufs)))
		return count(r), errnoErr(e)
	}
	read := func(fd int, p []byte) (int, error) {
		r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		return count(r), errnoErr(e)
	}
	calls := []struct {
		name string
		fn   func() (int, error)
	}{
		{"read", func() (int, error) { return read(cn.fd, buf) }},
		{"recvfrom", func() (int, error) { return k.Read(cn.fd, buf) }},
		{"readv", func() (int, error) { return readv(cn.fd, iov) }},
		{"recvmsg", func() (int, error) { return k.Readv(cn.fd, iov) }},
	}
	for _, c := range calls {
		b.Run("EAGAIN/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.fn(); err != unix.EAGAIN {
					b.Fatalf("want EAGAIN, got %v", err)
				}
			}
		})
	}
	for _, c := range calls {
		b.Run("64B/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := k.Write(peer, msg); err != nil {
					b.Fatal(err)
				}
				// Loopback delivers during the send, so the bytes are
				// there; a short count would be a bug worth seeing.
				if n, err := c.fn(); n != len(msg) || err != nil {
					b.Fatalf("read (%d, %v), want (%d, nil)", n, err, len(msg))
				}
			}
		})
	}
}

func TestConnect(t *testing.T) {
	k := OS{}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	t.Run("established", func(t *testing.T) {
		fd, err := k.Connect(&unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		if err != nil {
			require.ErrorIs(t, err, unix.EINPROGRESS)
			require.Equal(t, unix.EINPROGRESS, err, "in progress is the raw errno")
		}
		require.GreaterOrEqual(t, fd, 0)
		closeFD(t, fd)
		assertNonblockCloexec(t, fd)
		waitWritable(t, fd)
		soerr, err := k.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		require.NoError(t, err)
		assert.Zero(t, soerr)
		c, err := ln.Accept()
		require.NoError(t, err)
		defer c.Close()
		_, err = k.Write(fd, []byte("hi"))
		require.NoError(t, err)
		assert.Equal(t, []byte("hi"), readFull(t, c, 2))
		local, err := k.Getsockname(fd)
		require.NoError(t, err)
		assert.Equal(t, c.RemoteAddr().(*net.TCPAddr).AddrPort(), sockaddrAddrPort(t, local))
	})

	t.Run("refused", func(t *testing.T) {
		// A port nobody listens on: the one of a listener just closed.
		l2, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		closedPort := l2.Addr().(*net.TCPAddr).Port
		require.NoError(t, l2.Close())
		fd, err := k.Connect(&unix.SockaddrInet4{Port: closedPort, Addr: [4]byte{127, 0, 0, 1}})
		if fd < 0 {
			assert.ErrorIs(t, err, unix.ECONNREFUSED, "refused at once")
			return
		}
		closeFD(t, fd)
		require.Equal(t, unix.EINPROGRESS, err)
		waitWritable(t, fd)
		soerr, err := k.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		require.NoError(t, err)
		assert.Equal(t, unix.ECONNREFUSED, unix.Errno(soerr))
		soerr, err = k.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		require.NoError(t, err)
		assert.Zero(t, soerr, "reading SO_ERROR clears it")
	})

	t.Run("unix", func(t *testing.T) {
		path := t.TempDir() + "/s.sock"
		ul, err := net.Listen("unix", path)
		require.NoError(t, err)
		defer ul.Close()
		fd, err := k.Connect(&unix.SockaddrUnix{Name: path})
		require.NoError(t, err, "a Unix-domain connect completes at once")
		closeFD(t, fd)
		assertNonblockCloexec(t, fd)
		c, err := ul.Accept()
		require.NoError(t, err)
		defer c.Close()
		_, err = k.Write(fd, []byte("u"))
		require.NoError(t, err)
		assert.Equal(t, []byte("u"), readFull(t, c, 1))

		_, err = k.Connect(&unix.SockaddrUnix{Name: path + ".missing"})
		assert.ErrorIs(t, err, unix.ENOENT)
		var se *os.SyscallError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, "connect", se.Syscall)
	})

	t.Run("bad family", func(t *testing.T) {
		fd, err := k.Connect(&unix.SockaddrNetlink{})
		assert.Equal(t, -1, fd)
		assert.ErrorIs(t, err, unix.EAFNOSUPPORT)
	})
}

// TestPeek: MSG_PEEK copies the queued bytes and leaves them for Read;
// EAGAIN with nothing queued, 0 at the peer's end of file.
func TestPeek(t *testing.T) {
	a, b := socketpair(t)
	k := OS{}
	buf := make([]byte, 16)
	_, err := k.Peek(b, buf)
	assert.Equal(t, unix.EAGAIN, err)
	_, err = k.Write(a, []byte("hello"))
	require.NoError(t, err)
	n, err := k.Peek(b, buf[:3])
	require.NoError(t, err)
	assert.Equal(t, "hel", string(buf[:n]))
	n, err = k.Peek(b, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]), "peeking consumed nothing")
	n, err = k.Read(b, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]))
	require.NoError(t, k.Shutdown(a, unix.SHUT_WR))
	n, err = k.Peek(b, buf)
	assert.NoError(t, err)
	assert.Zero(t, n, "EOF")
}
