package sim

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// server is a listener with one accepted connection from a client.
type server struct {
	k   *Kernel
	lfd int    // listener
	fd  int    // accepted server end
	c   *Conn  // client end
	adr string // listener address
}

func listen(t *testing.T, k *Kernel) (int, string) {
	t.Helper()
	fd, sa, err := k.Listen("tcp4", "127.0.0.1:0", false, 0)
	require.NoError(t, err)
	sa4, ok := sa.(*unix.SockaddrInet4)
	require.True(t, ok)
	return fd, net.JoinHostPort("127.0.0.1", itoa(sa4.Port))
}

func itoa(n int) string { return (&net.TCPAddr{Port: n}).String()[1:] }

func newServer(t *testing.T, cfg Config) *server {
	t.Helper()
	k := New(cfg)
	lfd, addr := listen(t, k)
	c, err := k.Dial(addr)
	require.NoError(t, err)
	fd, _, err := k.Accept(lfd)
	require.NoError(t, err)
	return &server{k: k, lfd: lfd, fd: fd, c: c, adr: addr}
}

// readAll reads the server end until EAGAIN, EOF or an error.
func (s *server) readAll(t *testing.T) ([]byte, error) {
	t.Helper()
	var out []byte
	buf := make([]byte, 7) // small, to exercise partial reads
	for {
		n, err := s.k.Read(s.fd, buf)
		out = append(out, buf[:n]...)
		if err != nil || n == 0 {
			return out, err
		}
	}
}

// events registers fd with interest on a new free-mode poller and returns
// what a Wait(0) reports for it.
func events(t *testing.T, k *Kernel, fd int, interest uint32) uint32 {
	t.Helper()
	p, err := k.NewPoller()
	require.NoError(t, err)
	defer func() { assert.NoError(t, p.Close()) }()
	require.NoError(t, p.Add(fd, interest))
	ev := make([]Ready, 4)
	n, err := p.Wait(ev, 0)
	require.NoError(t, err)
	if n == 0 {
		return 0
	}
	require.Equal(t, 1, n)
	require.Equal(t, fd, ev[0].FD)
	return ev[0].Events
}

func TestReadRules(t *testing.T) {
	s := newServer(t, Config{})
	k, fd, c := s.k, s.fd, s.c
	buf := make([]byte, 64)

	n, err := k.Read(fd, buf)
	assert.Equal(t, unix.EAGAIN, err, "nothing buffered")
	assert.Zero(t, n)

	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	n, err = k.Read(fd, buf[:3])
	assert.NoError(t, err)
	assert.Equal(t, "hel", string(buf[:n]))

	require.NoError(t, c.CloseWrite())
	n, err = k.Read(fd, buf)
	assert.NoError(t, err)
	assert.Equal(t, "lo", string(buf[:n]), "bytes before the FIN come first")
	for range 2 {
		n, err = k.Read(fd, buf)
		assert.NoError(t, err, "EOF is (0, nil), and stays")
		assert.Zero(t, n)
	}
	// The server can still write after the client's half-close.
	n, err = k.Write(fd, []byte("bye"))
	assert.NoError(t, err)
	assert.Equal(t, 3, n)
	assert.Equal(t, []byte("bye"), c.ReadAll())
}

func TestCloseWithUnreadDataResetsPeer(t *testing.T) {
	t.Run("server closes", func(t *testing.T) {
		s := newServer(t, Config{})
		_, err := s.c.Write([]byte("unread"))
		require.NoError(t, err)
		_, err = s.k.Write(s.fd, []byte("reply"))
		require.NoError(t, err)
		require.NoError(t, s.k.Close(s.fd))
		assert.True(t, s.c.WasReset())
		buf := make([]byte, 8)
		n, err := s.c.Read(buf)
		assert.NoError(t, err, "what arrived before the RST is read first")
		assert.Equal(t, "reply", string(buf[:n]))
		n, err = s.c.Read(buf)
		assert.Equal(t, unix.ECONNRESET, err, "then the RST")
		assert.Zero(t, n)
		_, err = s.c.Read(buf)
		assert.Equal(t, io.EOF, err)
		_, err = s.c.Write([]byte("x"))
		assert.Equal(t, unix.EPIPE, err)
	})
	t.Run("server closes without unread data: FIN", func(t *testing.T) {
		s := newServer(t, Config{})
		_, err := s.k.Write(s.fd, []byte("reply"))
		require.NoError(t, err)
		require.NoError(t, s.k.Close(s.fd))
		buf := make([]byte, 8)
		n, err := s.c.Read(buf)
		assert.NoError(t, err)
		assert.Equal(t, "reply", string(buf[:n]))
		_, err = s.c.Read(buf)
		assert.Equal(t, io.EOF, err)
	})
	t.Run("client closes", func(t *testing.T) {
		s := newServer(t, Config{})
		_, err := s.k.Write(s.fd, []byte("unread"))
		require.NoError(t, err)
		_, err = s.c.Write([]byte("request"))
		require.NoError(t, err)
		require.NoError(t, s.c.Close())
		assert.Equal(t, Read|Write, events(t, s.k, s.fd, 0), "a reset is reported whatever the interest")
		got, err := s.readAll(t)
		assert.Equal(t, unix.ECONNRESET, err)
		assert.Equal(t, "request", string(got), "what arrived before the RST is read first")
		n, err := s.k.Read(s.fd, make([]byte, 4))
		assert.NoError(t, err, "then EOF")
		assert.Zero(t, n)
		_, err = s.k.Write(s.fd, []byte("x"))
		assert.Equal(t, unix.EPIPE, err)
		assert.Equal(t, net.ErrClosed, s.c.Close())
	})
	t.Run("client reset", func(t *testing.T) {
		s := newServer(t, Config{})
		_, err := s.c.Write([]byte("request"))
		require.NoError(t, err)
		require.NoError(t, s.c.Reset())
		_, err = s.k.Write(s.fd, []byte("x"))
		assert.Equal(t, unix.ECONNRESET, err, "the first operation reports the reset")
		_, err = s.k.Write(s.fd, []byte("x"))
		assert.Equal(t, unix.EPIPE, err)
		got, err := s.readAll(t)
		assert.NoError(t, err, "reported once: the reads see the bytes, then EOF")
		assert.Equal(t, "request", string(got))
		_, err = s.c.Write([]byte("x"))
		assert.Equal(t, net.ErrClosed, err)
	})
}

// TestWriteToClosedPeer: the client's FIN arrives before the RST that
// answers the server's write, so, as on Linux (CLOSE_WAIT), the reset
// shows as EPIPE on writes only; reads return what the client sent, then
// EOF.
func TestWriteToClosedPeer(t *testing.T) {
	for _, first := range []string{"read", "write"} {
		t.Run(first+" first", func(t *testing.T) {
			s := newServer(t, Config{})
			_, err := s.c.Write([]byte("unread"))
			require.NoError(t, err)
			require.NoError(t, s.c.Close())
			assert.Equal(t, Read|Write, events(t, s.k, s.fd, Read|Write))
			assert.Zero(t, events(t, s.k, s.fd, 0), "a half-close is not a failure")

			n, err := s.k.Write(s.fd, []byte("dropped"))
			assert.NoError(t, err, "the bytes are accepted")
			assert.Equal(t, 7, n)
			assert.Equal(t, Read|Write, events(t, s.k, s.fd, 0), "and answered with RST")
			assert.True(t, s.c.WasReset())

			if first == "write" {
				_, err = s.k.Write(s.fd, []byte("x"))
				assert.Equal(t, unix.EPIPE, err)
			}
			got, err := s.readAll(t)
			assert.NoError(t, err, "EOF, not ECONNRESET")
			assert.Equal(t, "unread", string(got))
			_, err = s.k.Write(s.fd, []byte("x"))
			assert.Equal(t, unix.EPIPE, err)
		})
	}
}

func TestShortWritesAtTheReceiveWindow(t *testing.T) {
	s := newServer(t, Config{SendBuffer: -1}) // nothing in flight
	s.c.SetReceiveWindow(10)
	data := []byte("0123456789abcdefghijklmno")
	assert.Equal(t, Write, events(t, s.k, s.fd, Write))

	n, err := s.k.Write(s.fd, data)
	assert.NoError(t, err)
	assert.Equal(t, 10, n, "short count: the window")
	assert.Zero(t, events(t, s.k, s.fd, Write), "full: not writable")
	_, err = s.k.Write(s.fd, data[10:])
	assert.Equal(t, unix.EAGAIN, err)

	got := make([]byte, 4)
	n, err = s.c.Read(got)
	require.NoError(t, err)
	assert.Equal(t, "0123", string(got[:n]))
	assert.Equal(t, Write, events(t, s.k, s.fd, Write))
	n, err = s.k.Writev(s.fd, [][]byte{data[10:12], data[12:]})
	assert.NoError(t, err)
	assert.Equal(t, 4, n)
	assert.Equal(t, "456789abcd", string(s.c.ReadAll()))
}

func TestClientSendQueueDrainsAsRoomAppears(t *testing.T) {
	s := newServer(t, Config{ReceiveBuffer: 1000})
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	n, err := s.c.Write(data)
	require.NoError(t, err)
	require.Equal(t, len(data), n, "a client write accepts everything")
	assert.Equal(t, 4000, s.c.Pending(), "what does not fit waits")
	require.NoError(t, s.c.CloseWrite())

	var got []byte
	buf := make([]byte, 300)
	for {
		n, err := s.k.Read(s.fd, buf)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		got = append(got, buf[:n]...)
	}
	assert.Equal(t, data, got, "all bytes, in order, then EOF after the send queue drained")
	assert.Zero(t, s.c.Pending())
}

func TestReadvWritev(t *testing.T) {
	s := newServer(t, Config{})
	_, err := s.c.Write([]byte("abcdefgh"))
	require.NoError(t, err)
	a, b := make([]byte, 3), make([]byte, 10)
	n, err := s.k.Readv(s.fd, [][]byte{a, nil, b})
	assert.NoError(t, err)
	assert.Equal(t, 8, n)
	assert.Equal(t, "abc", string(a))
	assert.Equal(t, "defgh", string(b[:5]))
	n, err = s.k.Writev(s.fd, [][]byte{[]byte("12"), nil, []byte("345")})
	assert.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.Equal(t, "12345", string(s.c.ReadAll()))
}

func TestShutdown(t *testing.T) {
	t.Run("SHUT_WR", func(t *testing.T) {
		s := newServer(t, Config{})
		_, err := s.k.Write(s.fd, []byte("last"))
		require.NoError(t, err)
		require.NoError(t, s.k.Shutdown(s.fd, unix.SHUT_WR))
		_, err = s.k.Write(s.fd, []byte("x"))
		assert.Equal(t, unix.EPIPE, err)
		assert.Equal(t, Write, events(t, s.k, s.fd, Read|Write), "writable: a write would not block")
		buf := make([]byte, 8)
		n, err := s.c.Read(buf)
		assert.NoError(t, err)
		assert.Equal(t, "last", string(buf[:n]))
		_, err = s.c.Read(buf)
		assert.Equal(t, io.EOF, err)
		// The client can still send; once it finishes too, both directions
		// are done: reported as a failure whatever the interest.
		_, err = s.c.Write([]byte("more"))
		require.NoError(t, err)
		require.NoError(t, s.c.CloseWrite())
		assert.Equal(t, Read|Write, events(t, s.k, s.fd, 0))
		got, err := s.readAll(t)
		assert.NoError(t, err)
		assert.Equal(t, "more", string(got))
	})
	t.Run("SHUT_RD", func(t *testing.T) {
		s := newServer(t, Config{})
		_, err := s.c.Write([]byte("abc"))
		require.NoError(t, err)
		require.NoError(t, s.k.Shutdown(s.fd, unix.SHUT_RD))
		got, err := s.readAll(t)
		assert.NoError(t, err)
		assert.Equal(t, "abc", string(got), "buffered bytes, then EOF instead of EAGAIN")
		assert.Equal(t, Read, events(t, s.k, s.fd, Read))
		_, err = s.c.Write([]byte("de"))
		assert.NoError(t, err, "the peer is not told")
		got, err = s.readAll(t)
		assert.NoError(t, err)
		assert.Equal(t, "de", string(got))
		_, err = s.k.Write(s.fd, []byte("ok"))
		assert.NoError(t, err, "writing still works")
	})
	t.Run("SHUT_RDWR and errors", func(t *testing.T) {
		s := newServer(t, Config{})
		assert.Equal(t, unix.EINVAL, s.k.Shutdown(s.fd, 7))
		require.NoError(t, s.k.Shutdown(s.fd, unix.SHUT_RDWR))
		assert.Equal(t, Read|Write, events(t, s.k, s.fd, 0))
		assert.Equal(t, unix.ENOTCONN, s.k.Shutdown(s.lfd, unix.SHUT_WR))
		assert.Equal(t, unix.EBADF, s.k.Shutdown(99, unix.SHUT_WR))
		require.NoError(t, s.c.Reset())
		assert.Equal(t, unix.ENOTCONN, s.k.Shutdown(s.fd, unix.SHUT_WR))
	})
}

func TestBacklogRefusal(t *testing.T) {
	k := New(Config{})
	lfd, _, err := k.Listen("tcp", "127.0.0.1:8080", false, 2)
	require.NoError(t, err)
	for range 2 {
		_, err := k.Dial("127.0.0.1:8080")
		require.NoError(t, err)
	}
	_, err = k.Dial("127.0.0.1:8080")
	assert.ErrorIs(t, err, unix.ECONNREFUSED, "backlog full")
	_, _, err = k.Accept(lfd)
	require.NoError(t, err)
	_, err = k.Dial("127.0.0.1:8080")
	assert.NoError(t, err, "room again after an accept")
	_, err = k.Dial("127.0.0.1:8081")
	assert.ErrorIs(t, err, unix.ECONNREFUSED, "no listener")
}

func TestEMFILEOnAcceptKeepsTheConnectionQueued(t *testing.T) {
	k := New(Config{})
	lfd, addr := listen(t, k) // fd 3
	p, err := k.NewPoller()   // fd 4
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, p.Add(lfd, Read))
	ev := make([]Ready, 1)
	k.SetFDLimit(5)
	c, err := k.Dial(addr)
	require.NoError(t, err)
	_, err = c.Write([]byte("hi"))
	require.NoError(t, err)

	for range 2 {
		_, _, err = k.Accept(lfd)
		assert.Equal(t, unix.EMFILE, err)
		n, err := p.Wait(ev, 0)
		require.NoError(t, err)
		assert.Equal(t, []Ready{{lfd, Read}}, ev[:n], "the listener stays readable")
	}
	_, err = k.Socketpair()
	assert.Equal(t, unix.EMFILE, err)
	_, err = k.NewPoller()
	assert.Equal(t, unix.EMFILE, err)
	_, _, err = k.Listen("tcp", ":0", false, 0)
	assert.Equal(t, unix.EMFILE, err)

	k.SetFDLimit(0)
	fd, sa, err := k.Accept(lfd)
	require.NoError(t, err)
	assert.Equal(t, 5, fd)
	assert.Equal(t, netip.MustParseAddrPort("192.0.2.1:40000"), sa)
	buf := make([]byte, 4)
	n, err := k.Read(fd, buf)
	assert.NoError(t, err)
	assert.Equal(t, "hi", string(buf[:n]), "the same connection, data intact")
	assert.Equal(t, c.ServerFD(), fd)
	_, _, err = k.Accept(lfd)
	assert.Equal(t, unix.EAGAIN, err)
}

func TestSetMaxOpenCountsDescriptors(t *testing.T) {
	k := New(Config{})
	lfd, addr := listen(t, k) // fd 3
	var conns []*Conn
	for range 4 {
		c, err := k.Dial(addr)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	fd4, _, err := k.Accept(lfd)
	require.NoError(t, err)
	fd5, _, err := k.Accept(lfd)
	require.NoError(t, err)
	require.Equal(t, []int{3, 4, 5}, k.OpenFDs())
	require.NoError(t, k.Close(fd4)) // a hole below the highest open descriptor

	k.SetMaxOpen(len(k.OpenFDs()) + 1) // one more
	fd, _, err := k.Accept(lfd)
	require.NoError(t, err)
	assert.Equal(t, fd4, fd, "the lowest free number, as ever")
	_, _, err = k.Accept(lfd)
	assert.Equal(t, unix.EMFILE, err, "three open: the limit")
	_, err = k.NewPoller()
	assert.Equal(t, unix.EMFILE, err)
	_, err = k.Socketpair()
	assert.Equal(t, unix.EMFILE, err)

	require.NoError(t, k.Close(fd5))
	fd, _, err = k.Accept(lfd)
	require.NoError(t, err, "a descriptor freed: room for one")
	assert.Equal(t, fd5, fd)
	assert.Equal(t, conns[3].ServerFD(), fd, "the connection that waited in the queue")

	_, err = k.Dial(addr)
	require.NoError(t, err)
	_, _, err = k.Accept(lfd)
	assert.Equal(t, unix.EMFILE, err)
	k.SetMaxOpen(0)
	_, _, err = k.Accept(lfd)
	assert.NoError(t, err, "no limit")
}

func TestConnEOFAndWasReset(t *testing.T) {
	s := newServer(t, Config{})
	assert.False(t, s.c.EOF())
	assert.False(t, s.c.WasReset())
	_, err := s.k.Write(s.fd, []byte("bye"))
	require.NoError(t, err)
	require.NoError(t, s.k.Shutdown(s.fd, unix.SHUT_WR))
	assert.True(t, s.c.EOF(), "FIN arrived, bytes still buffered")
	assert.Equal(t, 3, s.c.Buffered())
	assert.False(t, s.c.WasReset())

	s = newServer(t, Config{})
	require.NoError(t, s.c.Reset())
	assert.True(t, s.c.WasReset())
	assert.False(t, s.c.EOF(), "a reset is not an orderly end")

	s = newServer(t, Config{})
	s.k.Inject(Fault{Op: OpRead, Conn: s.c, Err: unix.ECONNRESET, Times: 1})
	_, err = s.k.Read(s.fd, make([]byte, 1))
	require.Equal(t, unix.ECONNRESET, err)
	assert.True(t, s.c.WasReset(), "an injected reset reaches the client")
	require.NoError(t, s.k.Close(s.fd))
	assert.False(t, s.c.EOF(), "the server's close after a reset sends no FIN")
}

func TestFDReuseLowestFirst(t *testing.T) {
	k := New(Config{})
	fds, err := k.Socketpair()
	require.NoError(t, err)
	assert.Equal(t, [2]int{3, 4}, fds)
	more, err := k.Socketpair()
	require.NoError(t, err)
	assert.Equal(t, [2]int{5, 6}, more)
	require.NoError(t, k.Close(5))
	require.NoError(t, k.Close(3))
	again, err := k.Socketpair()
	require.NoError(t, err)
	assert.Equal(t, [2]int{3, 5}, again, "lowest free numbers first")
	lfd, _, err := k.Listen("tcp", ":0", false, 0)
	require.NoError(t, err)
	assert.Equal(t, 7, lfd)
	assert.Equal(t, []int{3, 4, 5, 6, 7}, k.OpenFDs())
	assert.Equal(t, unix.EBADF, k.Close(99))
	assert.Equal(t, unix.EBADF, k.Close(3-1))
}

func TestListenerReadiness(t *testing.T) {
	k := New(Config{})
	p, err := k.NewPoller()
	require.NoError(t, err)
	defer p.Close()
	lfd, addr := listen(t, k)
	require.NoError(t, p.Add(lfd, Read|Write))
	ev := make([]Ready, 4)
	n, err := p.Wait(ev, 0)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing pending; a listener is never writable")
	_, err = k.Dial(addr)
	require.NoError(t, err)
	n, err = p.Wait(ev, 0)
	require.NoError(t, err)
	assert.Equal(t, []Ready{{lfd, Read}}, ev[:n])
	_, _, err = k.Accept(lfd)
	require.NoError(t, err)
	n, err = p.Wait(ev, 0)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestReadinessByInterest(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *server)
		want  map[uint32]uint32 // interest -> reported
	}{
		{"idle", func(*testing.T, *server) {},
			map[uint32]uint32{0: 0, Read: 0, Write: Write, Read | Write: Write}},
		{"bytes buffered", func(t *testing.T, s *server) {
			_, err := s.c.Write([]byte("x"))
			require.NoError(t, err)
		}, map[uint32]uint32{0: 0, Read: Read, Write: Write, Read | Write: Read | Write}},
		{"peer half-closed", func(t *testing.T, s *server) { require.NoError(t, s.c.CloseWrite()) },
			map[uint32]uint32{0: 0, Read: Read, Write: Write, Read | Write: Read | Write}},
		{"peer window and send buffer full", func(t *testing.T, s *server) {
			s.c.SetReceiveWindow(0)
			n, err := s.k.Write(s.fd, make([]byte, DefaultSendBuffer+1))
			require.NoError(t, err)
			require.Equal(t, DefaultSendBuffer, n)
		}, map[uint32]uint32{0: 0, Read: 0, Write: 0, Read | Write: 0}},
		{"reset", func(t *testing.T, s *server) { require.NoError(t, s.c.Reset()) },
			map[uint32]uint32{0: Read | Write, Read: Read | Write, Write: Read | Write, Read | Write: Read | Write}},
		{"reset reported, still failed", func(t *testing.T, s *server) {
			require.NoError(t, s.c.Reset())
			_, err := s.k.Read(s.fd, make([]byte, 1))
			require.Equal(t, unix.ECONNRESET, err)
		}, map[uint32]uint32{0: Read | Write, Write: Read | Write}},
		{"both directions finished", func(t *testing.T, s *server) {
			require.NoError(t, s.c.CloseWrite())
			require.NoError(t, s.k.Shutdown(s.fd, unix.SHUT_WR))
		}, map[uint32]uint32{0: Read | Write, Read: Read | Write}},
		{"FIN still behind queued bytes", func(t *testing.T, s *server) {
			require.NoError(t, s.k.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1))
			_, err := s.c.Write([]byte("abc"))
			require.NoError(t, err)
			require.NoError(t, s.c.CloseWrite())
			require.NoError(t, s.k.Shutdown(s.fd, unix.SHUT_WR))
		}, map[uint32]uint32{0: 0, Read: Read, Write: Write}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, Config{})
			tt.setup(t, s)
			for interest, want := range tt.want {
				assert.Equal(t, evString(want), evString(events(t, s.k, s.fd, interest)), "interest %s", evString(interest))
			}
		})
	}
}

func TestSocketpair(t *testing.T) {
	k := New(Config{ReceiveBuffer: 4})
	fds, err := k.Socketpair()
	require.NoError(t, err)
	a, b := fds[0], fds[1]
	n, err := k.Write(a, []byte("hello"))
	assert.NoError(t, err)
	assert.Equal(t, 4, n, "bounded like TCP")
	assert.Equal(t, Read, events(t, k, b, Read))
	buf := make([]byte, 8)
	n, err = k.Read(b, buf)
	assert.NoError(t, err)
	assert.Equal(t, "hell", string(buf[:n]))

	require.NoError(t, k.Close(b))
	assert.Equal(t, Read|Write, events(t, k, a, Write), "a socketpair peer's close is EPOLLHUP")
	_, err = k.Write(a, []byte("x"))
	assert.Equal(t, unix.EPIPE, err, "unix sockets answer EPIPE, not RST")
	n, err = k.Read(a, buf)
	assert.NoError(t, err)
	assert.Zero(t, n)
	sa, err := k.Getsockname(a)
	assert.NoError(t, err)
	assert.Equal(t, &unix.SockaddrUnix{}, sa)

	// Close with unread data resets a unix socket too, with ECONNRESET
	// even after a shutdown (AF_UNIX has no CLOSE_WAIT), which only reads
	// report: a write finds the peer gone first (EPIPE). What had arrived
	// is read first. (Checked on Linux: read 1, ECONNRESET, EOF; writes
	// EPIPE before and after.)
	for _, writeFirst := range []bool{false, true} {
		fds, err = k.Socketpair()
		require.NoError(t, err)
		_, err = k.Write(fds[0], []byte("x"))
		require.NoError(t, err)
		_, err = k.Write(fds[1], []byte("y"))
		require.NoError(t, err)
		require.NoError(t, k.Shutdown(fds[1], unix.SHUT_WR))
		require.NoError(t, k.Close(fds[1]))
		if writeFirst {
			_, err = k.Write(fds[0], []byte("z"))
			assert.Equal(t, unix.EPIPE, err)
		}
		n, err = k.Read(fds[0], buf)
		assert.NoError(t, err)
		assert.Equal(t, "y", string(buf[:n]))
		_, err = k.Read(fds[0], buf)
		assert.Equal(t, unix.ECONNRESET, err)
		n, err = k.Read(fds[0], buf)
		assert.NoError(t, err, "then EOF")
		assert.Zero(t, n)
		_, err = k.Write(fds[0], []byte("z"))
		assert.Equal(t, unix.EPIPE, err)
	}
}

func TestListenAddresses(t *testing.T) {
	k := New(Config{})
	tests := []struct {
		network, addr string
		reuse         bool
		want          string // bound address, or the error
	}{
		{"tcp", "127.0.0.1:0", false, "127.0.0.1:20000"},
		{"tcp", "127.0.0.1:0", false, "127.0.0.1:20001"},
		{"tcp4", ":0", false, "0.0.0.0:20002"},
		{"tcp", ":0", false, "[::]:20003"},
		{"tcp6", "localhost:0", false, "[::1]:20004"},
		{"tcp", "localhost:20000", false, "address already in use"},
		{"tcp", "198.51.100.3:20000", false, "198.51.100.3:20000"},
		{"tcp4", "0.0.0.0:20000", false, "address already in use"},
		{"tcp", "[::]:20002", false, "address already in use"},
		{"tcp", ":7000", true, "[::]:7000"},
		{"tcp", ":7000", true, "[::]:7000"},
		{"tcp", ":7000", false, "address already in use"},
		{"tcp", "example.com:80", false, "no DNS"},
		{"tcp4", "[::1]:80", false, "not tcp4"},
		{"udp", ":80", false, "unknown network"},
		{"tcp", "127.0.0.1:99999", false, "bad port"},
	}
	for _, tt := range tests {
		fd, sa, err := k.Listen(tt.network, tt.addr, tt.reuse, 0)
		if err != nil {
			assert.ErrorContains(t, err, tt.want, "%s %s", tt.network, tt.addr)
			continue
		}
		assert.Equal(t, tt.want, sockaddrString(sa), "%s %s", tt.network, tt.addr)
		got, err := k.Getsockname(fd)
		assert.NoError(t, err)
		assert.Equal(t, sa, got)
	}
}

func sockaddrString(sa unix.Sockaddr) string {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return (&net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}).String()
	case *unix.SockaddrInet6:
		return (&net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}).String()
	}
	return "?"
}

func TestDialRoutingAndAddresses(t *testing.T) {
	k := New(Config{})
	// Linux lets a specific address share a port with a wildcard only
	// with SO_REUSEPORT on both.
	wild, _, err := k.Listen("tcp", ":9000", true, 0) // dual stack
	require.NoError(t, err)
	_, _, err = k.Listen("tcp", "127.0.0.2:9000", false, 0)
	require.ErrorIs(t, err, unix.EADDRINUSE)
	exact, _, err := k.Listen("tcp", "127.0.0.2:9000", true, 0)
	require.NoError(t, err)

	tests := []struct {
		from, to   string
		listener   int
		local, rem string // the server end's addresses
	}{
		{"", "127.0.0.1:9000", wild, "127.0.0.1:9000", "192.0.2.1:40000"},
		{"", "127.0.0.2:9000", exact, "127.0.0.2:9000", "192.0.2.1:40001"},
		{"", "[::1]:9000", wild, "[::1]:9000", "[2001:db8::1]:40002"},
		{"", "localhost:9000", wild, "127.0.0.1:9000", "192.0.2.1:40003"},
		{"", "0.0.0.0:9000", wild, "127.0.0.1:9000", "192.0.2.1:40004"},
		{"198.51.100.7:0", "127.0.0.1:9000", wild, "127.0.0.1:9000", "198.51.100.7:40005"},
		{"198.51.100.7:5555", "127.0.0.1:9000", wild, "127.0.0.1:9000", "198.51.100.7:5555"},
	}
	for _, tt := range tests {
		c, err := k.DialFrom(tt.from, tt.to)
		require.NoError(t, err, tt.to)
		fd, sa, err := k.Accept(tt.listener)
		require.NoError(t, err, tt.to)
		assert.Equal(t, tt.rem, sa.String())
		assert.Equal(t, tt.rem, c.LocalAddr().String())
		assert.Equal(t, tt.local, c.RemoteAddr().String())
		got, err := k.Getsockname(fd)
		assert.NoError(t, err)
		assert.Equal(t, tt.local, sockaddrString(got))
		got, err = k.Getpeername(fd)
		assert.NoError(t, err)
		assert.Equal(t, tt.rem, sockaddrString(got))
	}
	_, err = k.DialFrom("[2001:db8::5]:0", "127.0.0.1:9000")
	assert.ErrorIs(t, err, unix.EAFNOSUPPORT)
	_, err = k.Dial("127.0.0.1:0")
	assert.Error(t, err)
}

func TestReusePortSpreadsConnections(t *testing.T) {
	k := New(Config{Seed: 3})
	var lfds []int
	for range 3 {
		fd, _, err := k.Listen("tcp", "127.0.0.1:9000", true, 1000)
		require.NoError(t, err)
		lfds = append(lfds, fd)
	}
	for range 60 {
		_, err := k.Dial("127.0.0.1:9000")
		require.NoError(t, err)
	}
	total := 0
	for _, lfd := range lfds {
		got := 0
		for {
			if _, _, err := k.Accept(lfd); err != nil {
				require.Equal(t, unix.EAGAIN, err)
				break
			}
			got++
		}
		assert.Greater(t, got, 5, "each listener takes a share")
		total += got
	}
	assert.Equal(t, 60, total)
}

func TestClosingAListenerResetsPendingConnections(t *testing.T) {
	k := New(Config{})
	lfd, addr := listen(t, k)
	c, err := k.Dial(addr)
	require.NoError(t, err)
	require.NoError(t, k.Close(lfd))
	_, err = c.Read(make([]byte, 1))
	assert.Equal(t, unix.ECONNRESET, err)
	_, err = k.Dial(addr)
	assert.ErrorIs(t, err, unix.ECONNREFUSED)
	_, _, err = k.Listen("tcp4", addr, false, 0)
	assert.NoError(t, err, "the port is free again")
}

func TestConnectionResetWhileQueued(t *testing.T) {
	k := New(Config{})
	lfd, addr := listen(t, k)
	c, err := k.Dial(addr)
	require.NoError(t, err)
	require.NoError(t, c.Reset())
	fd, _, err := k.Accept(lfd)
	require.NoError(t, err, "accept still returns it")
	_, err = k.Getpeername(fd)
	assert.Equal(t, unix.ENOTCONN, err)
	_, err = k.Read(fd, make([]byte, 1))
	assert.Equal(t, unix.ECONNRESET, err)
}

func TestCloseRemovesFromEveryPoller(t *testing.T) {
	k := New(Config{})
	p1, err := k.NewPoller()
	require.NoError(t, err)
	defer p1.Close()
	p2, err := k.NewPoller()
	require.NoError(t, err)
	defer p2.Close()
	fds, err := k.Socketpair()
	require.NoError(t, err)
	require.NoError(t, p1.Add(fds[0], Write))
	require.NoError(t, p2.Add(fds[0], Write))
	require.NoError(t, k.Close(fds[0]))
	assert.Equal(t, unix.ENOENT, p1.Delete(fds[0]))
	assert.Equal(t, unix.ENOENT, p2.Modify(fds[0], Read))
	// The number is reused; the new descriptor is not registered.
	again, err := k.Socketpair()
	require.NoError(t, err)
	assert.Equal(t, fds[0], again[0])
	ev := make([]Ready, 4)
	n, err := p1.Wait(ev, 0)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestSockopt(t *testing.T) {
	s := newServer(t, Config{})
	require.NoError(t, s.k.SetsockoptInt(s.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1))
	v, ok := s.k.Sockopt(s.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	assert.True(t, ok)
	assert.Equal(t, 1, v)
	_, ok = s.k.Sockopt(s.fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	assert.False(t, ok)
	assert.Equal(t, unix.EBADF, s.k.SetsockoptInt(99, 0, 0, 0))

	// SO_RCVBUF bounds the server end's receive buffer; growing it lets the
	// client's queue drain into it.
	require.NoError(t, s.k.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 2))
	_, err := s.c.Write([]byte("abcdef"))
	require.NoError(t, err)
	assert.Equal(t, 4, s.c.Pending())
	require.NoError(t, s.k.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 100))
	assert.Zero(t, s.c.Pending())
}

func TestBadDescriptors(t *testing.T) {
	k := New(Config{})
	lfd, _ := listen(t, k)
	p, err := k.NewPoller()
	require.NoError(t, err)
	buf := make([]byte, 1)
	tests := []struct {
		name string
		err  error
		want unix.Errno
	}{
		{"read unknown", second(k.Read(42, buf)), unix.EBADF},
		{"write unknown", second(k.Write(-1, buf)), unix.EBADF},
		{"read listener", second(k.Read(lfd, buf)), unix.ENOTCONN},
		{"read poller", second(k.Read(p.FD(), buf)), unix.EINVAL},
		{"accept non-listener", third(k.Accept(p.FD())), unix.EINVAL},
		{"getpeername listener", second(k.Getpeername(lfd)), unix.ENOTCONN},
		{"add poller to itself", p.Add(p.FD(), Read), unix.EINVAL},
		{"add unknown", p.Add(42, Read), unix.EBADF},
		{"add bad bits", p.Add(lfd, 4), unix.EINVAL},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.err, tt.name)
	}
	require.NoError(t, k.Close(p.FD()), "closing a poller's descriptor closes the poller")
	assert.ErrorIs(t, p.Wake(), ErrPollerClosed)
	assert.NoError(t, p.Close())
}

func second[T any](_ T, err error) error { return err }

func third[T, U any](_ T, _ U, err error) error { return err }

func TestSendBuffer(t *testing.T) {
	s := newServer(t, Config{})
	s.c.SetReceiveWindow(10)
	require.NoError(t, s.k.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 20))
	data := pattern(0, 50)

	n, err := s.k.Write(s.fd, data)
	require.NoError(t, err)
	assert.Equal(t, 30, n, "the peer's window plus the send buffer")
	assert.Equal(t, 10, s.c.Buffered())
	assert.Equal(t, 20, s.c.InFlight())
	assert.Zero(t, events(t, s.k, s.fd, Write), "both full: not writable")
	_, err = s.k.Write(s.fd, data[n:])
	assert.Equal(t, unix.EAGAIN, err)

	got := make([]byte, 4)
	m, err := s.c.Read(got)
	require.NoError(t, err)
	assert.Equal(t, data[:4], got[:m])
	assert.Equal(t, 10, s.c.Buffered(), "reading lets bytes in flight in")
	assert.Equal(t, 16, s.c.InFlight())
	assert.Equal(t, Write, events(t, s.k, s.fd, Write), "room in the send buffer: writable")
	m, err = s.k.Writev(s.fd, [][]byte{data[30:32], data[32:]})
	require.NoError(t, err)
	assert.Equal(t, 4, m)

	s.c.SetReceiveWindow(100)
	assert.Zero(t, s.c.InFlight(), "a wider window lets everything in")
	assert.Equal(t, data[4:34], s.c.ReadAll(), "in order")

	// Bytes in flight when the server shuts down (or closes) are still
	// delivered, then the FIN.
	s.c.SetReceiveWindow(5)
	_, err = s.k.Write(s.fd, data[34:])
	require.NoError(t, err)
	require.NoError(t, s.k.Close(s.fd))
	assert.False(t, s.c.EOF(), "the FIN is behind the bytes in flight")
	var rest []byte
	for {
		b := s.c.ReadAll()
		if b == nil {
			break
		}
		rest = append(rest, b...)
	}
	assert.Equal(t, data[34:], rest)
	assert.True(t, s.c.EOF())
	assert.False(t, s.c.WasReset())
}

func TestSendBufferConfig(t *testing.T) {
	for _, tt := range []struct {
		cfg  int
		want int // bytes a write takes with the peer's window 0
	}{{0, DefaultSendBuffer}, {-1, 0}, {100, 100}} {
		s := newServer(t, Config{SendBuffer: tt.cfg})
		s.c.SetReceiveWindow(0)
		n, err := s.k.Write(s.fd, make([]byte, DefaultSendBuffer+1))
		if tt.want == 0 {
			assert.Equal(t, unix.EAGAIN, err, "SendBuffer %d", tt.cfg)
		} else {
			assert.NoError(t, err)
		}
		assert.Equal(t, tt.want, n, "SendBuffer %d", tt.cfg)
	}
	// A socketpair has no send buffer, as AF_UNIX has none apart from the
	// peer's queue; SO_SNDBUF is only recorded there.
	k := New(Config{ReceiveBuffer: 10})
	fds, err := k.Socketpair()
	require.NoError(t, err)
	require.NoError(t, k.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 100))
	n, err := k.Write(fds[0], make([]byte, 50))
	require.NoError(t, err)
	assert.Equal(t, 10, n)
}

// TestResetLosesBytesInFlight: the receiver of an RST keeps what it had
// received; the bytes still in flight towards it are lost.
func TestResetLosesBytesInFlight(t *testing.T) {
	tests := []struct {
		name  string
		reset func(t *testing.T, s *server)
		cause string
	}{
		{"close with unread input", func(t *testing.T, s *server) {
			_, err := s.c.Write([]byte("unread"))
			require.NoError(t, err)
			require.NoError(t, s.k.Close(s.fd))
		}, "close with unread data"},
		{"SO_LINGER 0", func(t *testing.T, s *server) {
			require.NoError(t, s.k.SetLinger(s.fd, 0))
			require.NoError(t, s.k.Close(s.fd))
		}, "close with SO_LINGER 0"},
		{"injected write ECONNRESET", func(t *testing.T, s *server) {
			s.k.Inject(Fault{Op: OpWrite, Conn: s.c, Err: unix.ECONNRESET, Times: 1})
			_, err := s.k.Write(s.fd, []byte("x"))
			require.Equal(t, unix.ECONNRESET, err)
		}, "injected ECONNRESET on write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, Config{SendBuffer: 100})
			s.c.SetReceiveWindow(10)
			data := pattern(0, 200)
			n, err := s.k.Write(s.fd, data)
			require.NoError(t, err)
			require.Equal(t, 110, n)
			tt.reset(t, s)
			assert.True(t, s.c.WasReset())
			assert.Zero(t, s.c.InFlight())
			assert.Contains(t, s.k.TraceText(), "reset c1 fd=4 "+tt.cause+", 100 bytes in flight lost\n")

			buf := make([]byte, 64)
			n, err = s.c.Read(buf)
			require.NoError(t, err)
			assert.Equal(t, data[:10], buf[:n], "the window's worth had arrived")
			_, err = s.c.Read(buf)
			assert.Equal(t, unix.ECONNRESET, err)
			_, err = s.c.Read(buf)
			assert.Equal(t, io.EOF, err)
			_, err = s.c.Write([]byte("x"))
			assert.Equal(t, unix.EPIPE, err)
		})
	}
}

func TestLinger(t *testing.T) {
	s := newServer(t, Config{})
	v, ok := s.k.Sockopt(s.fd, unix.SOL_SOCKET, unix.SO_LINGER)
	assert.False(t, ok)
	assert.Zero(t, v)
	require.NoError(t, s.k.SetLinger(s.fd, 0))
	require.NoError(t, s.k.SetLinger(s.fd, -7))
	v, _ = s.k.Sockopt(s.fd, unix.SOL_SOCKET, unix.SO_LINGER)
	assert.Equal(t, -1, v, "off")
	require.NoError(t, s.k.SetLinger(s.fd, 5))
	v, _ = s.k.Sockopt(s.fd, unix.SOL_SOCKET, unix.SO_LINGER)
	assert.Equal(t, 5, v)
	_, err := s.k.Write(s.fd, []byte("bye"))
	require.NoError(t, err)
	require.NoError(t, s.k.Close(s.fd))
	assert.False(t, s.c.WasReset(), "a timeout above 0 closes with FIN")
	assert.Equal(t, []byte("bye"), s.c.ReadAll())
	assert.True(t, s.c.EOF())

	assert.Equal(t, unix.EBADF, s.k.SetLinger(99, 0))
	p, err := s.k.NewPoller()
	require.NoError(t, err)
	defer p.Close()
	assert.Equal(t, unix.ENOTSOCK, s.k.SetLinger(p.FD(), 0))

	// AF_UNIX ignores SO_LINGER: the peer sees the close, not a reset.
	fds, err := s.k.Socketpair()
	require.NoError(t, err)
	require.NoError(t, s.k.SetLinger(fds[0], 0))
	require.NoError(t, s.k.Close(fds[0]))
	n, err := s.k.Read(fds[1], make([]byte, 1))
	assert.NoError(t, err, "EOF")
	assert.Zero(t, n)
}

// TestResetAfterFIN: an RST that follows the peer's FIN (CLOSE_WAIT) is
// EPIPE on Linux, reported to writes only; reads return EOF.
func TestResetAfterFIN(t *testing.T) {
	t.Run("server shut down, then closed with unread input", func(t *testing.T) {
		s := newServer(t, Config{})
		_, err := s.c.Write([]byte("unread"))
		require.NoError(t, err)
		_, err = s.k.Write(s.fd, []byte("bye"))
		require.NoError(t, err)
		require.NoError(t, s.k.Shutdown(s.fd, unix.SHUT_WR))
		require.NoError(t, s.k.Close(s.fd))
		assert.True(t, s.c.WasReset())
		buf := make([]byte, 8)
		n, err := s.c.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "bye", string(buf[:n]))
		for range 2 {
			_, err = s.c.Read(buf)
			assert.Equal(t, io.EOF, err)
		}
		for range 2 {
			_, err = s.c.Write([]byte("x"))
			assert.Equal(t, unix.EPIPE, err)
		}
	})
	t.Run("client shut down, then reset", func(t *testing.T) {
		s := newServer(t, Config{})
		_, err := s.c.Write([]byte("request"))
		require.NoError(t, err)
		require.NoError(t, s.c.CloseWrite())
		require.NoError(t, s.c.Reset())
		got, err := s.readAll(t)
		assert.NoError(t, err, "EOF, not ECONNRESET")
		assert.Equal(t, "request", string(got))
		_, err = s.k.Write(s.fd, []byte("x"))
		assert.Equal(t, unix.EPIPE, err)
	})
	t.Run("FIN still behind bytes in flight: ECONNRESET", func(t *testing.T) {
		s := newServer(t, Config{})
		s.c.SetReceiveWindow(2)
		_, err := s.c.Write([]byte("unread"))
		require.NoError(t, err)
		_, err = s.k.Write(s.fd, []byte("bye"))
		require.NoError(t, err)
		require.NoError(t, s.k.Shutdown(s.fd, unix.SHUT_WR))
		require.NoError(t, s.k.Close(s.fd))
		buf := make([]byte, 8)
		n, err := s.c.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "by", string(buf[:n]))
		_, err = s.c.Read(buf)
		assert.Equal(t, unix.ECONNRESET, err, "the FIN was lost with the last byte")
	})
}

// TestClientCloseWithBytesInFlight: bytes in flight towards a client count
// as unread when it closes, even with its receive buffer empty.
func TestClientCloseWithBytesInFlight(t *testing.T) {
	s := newServer(t, Config{})
	s.c.SetReceiveWindow(0)
	_, err := s.k.Write(s.fd, []byte("reply"))
	require.NoError(t, err)
	require.Equal(t, 5, s.c.InFlight())
	require.NoError(t, s.c.Close())
	_, err = s.k.Read(s.fd, make([]byte, 8))
	assert.Equal(t, unix.ECONNRESET, err)
	assert.Contains(t, s.k.TraceText(), "close with unread data, 5 bytes in flight lost")
}

func TestInjectedReadResetDropsUnreadBytes(t *testing.T) {
	s := newServer(t, Config{})
	_, err := s.c.Write([]byte("request"))
	require.NoError(t, err)
	_, err = s.k.Write(s.fd, []byte("reply"))
	require.NoError(t, err)
	s.k.Inject(Fault{Op: OpRead, Conn: s.c, Err: unix.ECONNRESET, Times: 1})
	_, err = s.k.Read(s.fd, make([]byte, 8))
	require.Equal(t, unix.ECONNRESET, err)
	got, err := s.readAll(t)
	assert.NoError(t, err, "EOF")
	assert.Empty(t, got, "a read reports a reset only once the queue is empty")
	assert.Equal(t, []byte("reply"), s.c.ReadAll(), "the client keeps what it received")
	_, err = s.c.Read(make([]byte, 1))
	assert.Equal(t, unix.ECONNRESET, err)
}

// TestPeek: as recv(MSG_PEEK) on Linux: the bytes stay queued for Read
// (and still count for readiness), EAGAIN with none, 0 at EOF; the trace
// says peek.
func TestPeek(t *testing.T) {
	k := New(Config{})
	fds, err := k.Socketpair()
	require.NoError(t, err)
	a, b := fds[0], fds[1]
	buf := make([]byte, 16)
	_, err = k.Peek(b, buf)
	assert.Equal(t, unix.EAGAIN, err)
	_, err = k.Write(a, []byte("hello"))
	require.NoError(t, err)
	n, err := k.Peek(b, buf[:3])
	require.NoError(t, err)
	assert.Equal(t, "hel", string(buf[:n]))
	assert.Equal(t, Read, events(t, k, b, Read), "still readable")
	n, err = k.Read(b, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]))
	require.NoError(t, k.Shutdown(a, unix.SHUT_WR))
	n, err = k.Peek(b, buf)
	assert.NoError(t, err)
	assert.Zero(t, n, "EOF")
	assert.Contains(t, k.TraceText(), "peek fd="+strconv.Itoa(b)+" n=3")
}
