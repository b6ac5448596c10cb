package sim

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// sa4 returns the socket address of an IPv4 "host:port".
func sa4(t *testing.T, addr string) unix.Sockaddr {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	require.NoError(t, err)
	return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
}

// soError reads and clears fd's SO_ERROR.
func soError(t *testing.T, k *Kernel, fd int) unix.Errno {
	t.Helper()
	v, err := k.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	require.NoError(t, err)
	return unix.Errno(v)
}

func TestConnectToATestListener(t *testing.T) {
	k := New(Config{})
	ln, err := k.NewListener("127.0.0.1:0")
	require.NoError(t, err)
	assert.Equal(t, "l1", ln.String())
	fd, err := k.Connect(sa4(t, ln.Addr().String()))
	require.Equal(t, unix.EINPROGRESS, err)
	assert.Equal(t, Write, events(t, k, fd, Read|Write), "established: writable, nothing to read")
	assert.Zero(t, soError(t, k, fd))
	established, inProgress := ln.Pending()
	assert.Equal(t, 1, established)
	assert.Zero(t, inProgress)

	// Bytes written before the test accepts wait in the accepted end.
	n, err := k.Write(fd, []byte("hello"))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	up, err := ln.Accept()
	require.NoError(t, err)
	assert.Equal(t, "c1", up.String())
	assert.Equal(t, []byte("hello"), up.ReadAll())
	_, err = up.Write([]byte("world"))
	require.NoError(t, err)
	buf := make([]byte, 16)
	n, err = k.Read(fd, buf)
	require.NoError(t, err)
	assert.Equal(t, "world", string(buf[:n]))

	// Addresses: the descriptor's local end is a loopback address with an
	// ephemeral port; the test's end sees it as its peer.
	local, err := k.Getsockname(fd)
	require.NoError(t, err)
	l4 := local.(*unix.SockaddrInet4)
	assert.Equal(t, [4]byte{127, 0, 0, 1}, l4.Addr)
	assert.Equal(t, firstEphemeralPort, l4.Port)
	assert.Equal(t, "127.0.0.1:32768", up.RemoteAddr().String())
	assert.Equal(t, ln.Addr().String(), up.LocalAddr().String())

	// The test's end closes: the descriptor reads EOF.
	require.NoError(t, up.Close())
	n, err = k.Read(fd, buf)
	require.NoError(t, err)
	assert.Zero(t, n, "EOF")
	require.NoError(t, k.Close(fd))
	_, err = ln.Accept()
	assert.ErrorIs(t, err, unix.EAGAIN)
	require.NoError(t, ln.Close())
	_, err = ln.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, ln.Close(), net.ErrClosed)
}

func TestConnectRefused(t *testing.T) {
	k := New(Config{})
	fd, err := k.Connect(sa4(t, "127.0.0.1:9"))
	require.Equal(t, unix.EINPROGRESS, err)
	assert.Equal(t, Read|Write, events(t, k, fd, Write), "a failed connect reports a failure whatever the interest")
	assert.Equal(t, unix.ECONNREFUSED, soError(t, k, fd))
	assert.Zero(t, soError(t, k, fd), "SO_ERROR is cleared by reading it")
	_, err = k.Write(fd, []byte("x"))
	assert.ErrorIs(t, err, unix.EPIPE)
	_, err = k.Getpeername(fd)
	assert.ErrorIs(t, err, unix.ENOTCONN)
	require.NoError(t, k.Close(fd))
	assert.Empty(t, k.OpenFDs())
	assert.Contains(t, k.TraceText(), "connect fd=3 ECONNREFUSED failed")
}

func TestConnectHeldWhileTheAcceptQueueIsFull(t *testing.T) {
	k := New(Config{})
	ln, err := k.NewListener("127.0.0.1:0")
	require.NoError(t, err)
	ln.SetBacklog(1)
	addr := sa4(t, ln.Addr().String())
	first, err := k.Connect(addr)
	require.Equal(t, unix.EINPROGRESS, err)
	second, err := k.Connect(addr)
	require.Equal(t, unix.EINPROGRESS, err)
	third, err := k.Connect(addr)
	require.Equal(t, unix.EINPROGRESS, err)
	assert.Equal(t, Write, events(t, k, first, Write))
	assert.Zero(t, events(t, k, second, Read|Write), "in progress: no readiness at all")
	_, err = k.Write(second, []byte("x"))
	assert.ErrorIs(t, err, unix.EAGAIN)
	_, err = k.Read(second, make([]byte, 1))
	assert.ErrorIs(t, err, unix.EAGAIN)
	established, inProgress := ln.Pending()
	assert.Equal(t, []int{1, 2}, []int{established, inProgress})

	// Accepting makes room: the oldest connect in progress completes.
	_, err = ln.Accept()
	require.NoError(t, err)
	assert.Equal(t, Write, events(t, k, second, Write))
	assert.Zero(t, events(t, k, third, Write))

	// Closing a descriptor whose connect is in progress abandons it.
	require.NoError(t, k.Close(third))
	established, inProgress = ln.Pending()
	assert.Equal(t, []int{1, 0}, []int{established, inProgress})

	// Backlog 0: nothing waits established; Accept completes the oldest
	// connect in progress itself.
	ln.SetBacklog(0)
	fourth, err := k.Connect(addr)
	require.Equal(t, unix.EINPROGRESS, err)
	assert.Zero(t, events(t, k, fourth, Write))
	_, err = ln.Accept() // the second, queued before the backlog went down
	require.NoError(t, err)
	assert.Zero(t, events(t, k, fourth, Write))
	c4, err := ln.Accept()
	require.NoError(t, err)
	assert.Equal(t, Write, events(t, k, fourth, Write))
	_, err = k.Write(fourth, []byte("4"))
	require.NoError(t, err)
	assert.Equal(t, []byte("4"), c4.ReadAll())

	// Closing the listener refuses what is still in progress.
	fifth, err := k.Connect(addr)
	require.Equal(t, unix.EINPROGRESS, err)
	require.NoError(t, ln.Close())
	assert.Equal(t, Read|Write, events(t, k, fifth, Write))
	assert.Equal(t, unix.ECONNREFUSED, soError(t, k, fifth))
}

func TestConnectFaults(t *testing.T) {
	k := New(Config{})
	ln, err := k.NewListener("127.0.0.1:0")
	require.NoError(t, err)
	addr := sa4(t, ln.Addr().String())

	id := k.Inject(Fault{Op: OpConnect, Err: unix.EHOSTUNREACH, Times: 1})
	fd, err := k.Connect(addr)
	require.Equal(t, unix.EINPROGRESS, err)
	assert.Equal(t, Read|Write, events(t, k, fd, Write))
	assert.Equal(t, unix.EHOSTUNREACH, soError(t, k, fd))
	assert.Equal(t, 1, k.FaultHits(id))

	k.Inject(Fault{Op: OpConnect, Err: unix.ETIMEDOUT, Times: 1})
	lost, err := k.Connect(addr)
	require.Equal(t, unix.EINPROGRESS, err)
	assert.Zero(t, events(t, k, lost, Read|Write), "a lost SYN: the connect never ends")
	established, inProgress := ln.Pending()
	assert.Equal(t, []int{0, 0}, []int{established, inProgress}, "the listener never saw it")
	assert.Zero(t, soError(t, k, lost))

	assert.Panics(t, func() { k.Inject(Fault{Op: OpConnect, Short: true}) })
	c, err := k.Dial(ln.Addr().String())
	assert.Nil(t, c, "a test client does not reach a test's listener")
	assert.ErrorIs(t, err, unix.ECONNREFUSED)
}

func TestConnectBetweenTwoDescriptors(t *testing.T) {
	// A descriptor connects to a descriptor's listener, as a client and a
	// server in one simulated process do.
	k := New(Config{})
	lfd, addr := listen(t, k)
	fd, err := k.Connect(sa4(t, addr))
	require.Equal(t, unix.EINPROGRESS, err)
	assert.Equal(t, Read, events(t, k, lfd, Read))
	sfd, peer, err := k.Accept(lfd)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:32768", peer.String())
	_, err = k.Write(fd, []byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 8)
	n, err := k.Read(sfd, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf[:n]))
	require.NoError(t, k.Shutdown(sfd, unix.SHUT_WR))
	n, err = k.Read(fd, buf)
	require.NoError(t, err)
	assert.Zero(t, n)
	for _, d := range []int{fd, sfd, lfd} {
		require.NoError(t, k.Close(d))
	}
	assert.Empty(t, k.OpenFDs())
}

func TestConnectAddresses(t *testing.T) {
	k := New(Config{})
	for _, tt := range []struct {
		to   unix.Sockaddr
		from string
	}{
		{&unix.SockaddrInet4{Addr: [4]byte{10, 0, 0, 1}, Port: 80}, "198.51.100.1:32768"},
		{&unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16(), Port: 80}, "[::1]:32769"},
		{&unix.SockaddrInet6{Addr: netip.MustParseAddr("2001:db8::9").As16(), Port: 80}, "[2001:db8:1::1]:32770"},
	} {
		fd, err := k.Connect(tt.to)
		require.Equal(t, unix.EINPROGRESS, err)
		sa, err := k.Getsockname(fd)
		require.NoError(t, err)
		var got netip.AddrPort
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			got = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			got = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		}
		assert.Equal(t, tt.from, got.String())
	}
	_, err := k.Connect(&unix.SockaddrUnix{Name: "/x"})
	assert.ErrorIs(t, err, unix.EAFNOSUPPORT)

	ln, err := k.NewListener("127.0.0.1:0")
	require.NoError(t, err)
	_, _, err = k.Listen("tcp", ln.Addr().String(), false, 0)
	assert.ErrorIs(t, err, unix.EADDRINUSE, "a test's listener holds its port")
	_, err = k.NewListener(ln.Addr().String())
	assert.ErrorIs(t, err, unix.EADDRINUSE)
	up, err := ln.Accept()
	assert.Nil(t, up)
	assert.ErrorIs(t, err, unix.EAGAIN, "nothing to accept")
}
