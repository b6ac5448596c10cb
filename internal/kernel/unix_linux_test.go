package kernel

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// shortDir returns a directory for socket files that is removed when the
// test ends; os.TempDir, because sun_path is short.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kernel")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, os.RemoveAll(dir)) })
	return dir
}

// TestListenUnix: a path and an abstract name, the address Listen reports,
// and the address an accepted connection's two ends see.
func TestListenUnix(t *testing.T) {
	for _, name := range []string{
		filepath.Join(shortDir(t), "s.sock"),
		fmt.Sprintf("@kernel-test-%d", os.Getpid()),
	} {
		t.Run(name, func(t *testing.T) {
			k := OS{}
			fd, sa, err := k.Listen("unix", name, false, 0)
			require.NoError(t, err)
			closeFD(t, fd)
			assert.Equal(t, &unix.SockaddrUnix{Name: name}, sa)
			nb, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
			require.NoError(t, err)
			assert.NotZero(t, nb&unix.O_NONBLOCK, "non-blocking")

			c, err := net.Dial("unix", name)
			require.NoError(t, err)
			defer c.Close()
			waitReadable(t, fd)
			nfd, peer, err := k.Accept(fd)
			require.NoError(t, err)
			closeFD(t, nfd)
			assert.False(t, peer.IsValid(), "a Unix peer has no IP address")

			local, err := k.Getsockname(nfd)
			require.NoError(t, err)
			assert.Equal(t, &unix.SockaddrUnix{Name: name}, local)
			remote, err := k.Getpeername(nfd)
			require.NoError(t, err)
			assert.Equal(t, &unix.SockaddrUnix{Name: ""}, remote, "an unnamed client, not \"@\"")
		})
	}
}

// TestListenUnixStale: Listen replaces a socket file nothing listens on,
// and leaves a live one and a file that is not a socket alone.
func TestListenUnixStale(t *testing.T) {
	dir := shortDir(t)
	k := OS{}

	stale := filepath.Join(dir, "stale.sock")
	fd, _, err := k.Listen("unix", stale, false, 0)
	require.NoError(t, err)
	require.NoError(t, k.Close(fd)) // the file stays, as after a crash
	fd, _, err = k.Listen("unix", stale, false, 0)
	require.NoError(t, err, "a stale file is replaced")
	closeFD(t, fd)

	fd2, _, err := k.Listen("unix", stale, false, 0)
	require.ErrorIs(t, err, unix.EADDRINUSE, "now it is live")
	assert.Equal(t, -1, fd2)

	plain := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(plain, nil, 0o600))
	_, _, err = k.Listen("unix", plain, false, 0)
	require.ErrorIs(t, err, unix.EADDRINUSE)
	assert.FileExists(t, plain)

	_, _, err = k.Listen("unix", stale, true, 0)
	assert.ErrorContains(t, err, "SO_REUSEPORT")
}

// TestListenUnixNoLeakOnError: a failing Unix Listen closes its socket,
// and so does the stale-file probe.
func TestListenUnixNoLeakOnError(t *testing.T) {
	dir := shortDir(t)
	live := filepath.Join(dir, "live.sock")
	fd, _, err := OS{}.Listen("unix", live, false, 0)
	require.NoError(t, err)
	closeFD(t, fd)
	before := lowestFreeFD(t)
	_, _, err = OS{}.Listen("unix", live, false, 0)
	require.ErrorIs(t, err, unix.EADDRINUSE)
	_, _, err = OS{}.Listen("unix", filepath.Join(dir, "no", "such"), false, 0)
	require.ErrorIs(t, err, unix.ENOENT)
	assert.Equal(t, before, lowestFreeFD(t))
}

func TestCheckUnixAddress(t *testing.T) {
	tests := []struct {
		address string
		ok      bool
	}{
		{"/" + strings.Repeat("x", MaxUnixPath-1), true},
		{"/" + strings.Repeat("x", MaxUnixPath), false},
		{"@" + strings.Repeat("x", MaxUnixPath), true},
		{"@" + strings.Repeat("x", MaxUnixPath+1), false},
		{"@a\x00b", true}, // abstract names are bytes
		{"/a\x00b", false},
		{"", false},
		{"@", false},
		{"relative.sock", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.address), func(t *testing.T) {
			err := checkUnixAddress(tt.address)
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// TestUnixName decodes sun_path as the kernel fills it in.
func TestUnixName(t *testing.T) {
	raw := func(path string) (*unix.RawSockaddrUnix, uint32) {
		var rsa unix.RawSockaddrUnix
		rsa.Family = unix.AF_UNIX
		for i := range len(path) {
			rsa.Path[i] = int8(path[i])
		}
		return &rsa, uint32(2 + len(path))
	}
	tests := []struct {
		name, path, want string
	}{
		{"unnamed", "", ""},
		{"path with its NUL", "/run/x.sock\x00", "/run/x.sock"},
		{"path without a NUL", "/run/x.sock", "/run/x.sock"},
		{"abstract", "\x00name", "@name"},
		{"abstract with a NUL inside", "\x00a\x00b", "@a\x00b"},
		{"empty abstract", "\x00", "@"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, unixName(raw(tt.path)))
		})
	}
}

// TestRemoveSocketFile removes only the socket file it was given. The
// listening sockets stay open meanwhile, as a server's does: a bound socket
// holds its file's inode, so the number cannot go to the second file (and
// once the first were closed and its file removed, it could: see
// RemoveSocketFile).
func TestRemoveSocketFile(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "s.sock")
	mk := func() SocketFile {
		fd, _, err := OS{}.Listen("unix", path, false, 0)
		require.NoError(t, err)
		closeFD(t, fd)
		f, ok := StatSocketFile(path)
		require.True(t, ok)
		return f
	}
	first := mk()
	require.NoError(t, os.Remove(path))
	mk()
	require.NoError(t, RemoveSocketFile(first))
	assert.FileExists(t, path, "another file at the same path")
	second, _ := StatSocketFile(path)
	require.NoError(t, RemoveSocketFile(second))
	assert.NoFileExists(t, path)
	require.NoError(t, RemoveSocketFile(second), "already gone")

	_, ok := StatSocketFile("@abstract")
	assert.False(t, ok)
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	_, ok = StatSocketFile(path)
	assert.False(t, ok, "not a socket")
}

// TestDupListener takes over listening sockets and refuses what is not
// one.
func TestDupListener(t *testing.T) {
	k := OS{}
	t.Run("tcp and unix listeners", func(t *testing.T) {
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer tcp.Close()
		ux, err := net.Listen("unix", filepath.Join(shortDir(t), "s.sock"))
		require.NoError(t, err)
		defer ux.Close()
		for _, ln := range []net.Listener{tcp, ux} {
			f, err := ln.(interface{ File() (*os.File, error) }).File()
			require.NoError(t, err)
			// A blocking descriptor, as a parent process may pass one.
			require.NoError(t, unix.SetNonblock(int(f.Fd()), false))
			fd, sa, err := k.DupListener(int(f.Fd()))
			require.NoError(t, err)
			closeFD(t, fd)
			require.NoError(t, f.Close(), "the original stays the caller's")
			assert.NotEqual(t, int(f.Fd()), fd)
			fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
			require.NoError(t, err)
			assert.NotZero(t, fl&unix.O_NONBLOCK, "non-blocking")
			fdfl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			require.NoError(t, err)
			assert.NotZero(t, fdfl&unix.FD_CLOEXEC, "close-on-exec")
			switch sa := sa.(type) {
			case *unix.SockaddrUnix:
				assert.Equal(t, ln.Addr().String(), sa.Name)
			default:
				assert.Equal(t, ln.Addr().String(), sockaddrAddrPort(t, sa).String())
			}
		}
	})
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer udp.Close()
	bound, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	closeFD(t, bound)
	require.NoError(t, unix.Bind(bound, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	udpFile, err := udp.(*net.UDPConn).File()
	require.NoError(t, err)
	defer udpFile.Close()
	tests := []struct {
		name string
		fd   int
		want string
	}{
		{"datagram socket", int(udpFile.Fd()), "not a stream socket"},
		{"bound, not listening", bound, "not a listening socket"},
		{"a pipe", int(r.Fd()), "socket operation on non-socket"},
		{"closed descriptor", 1 << 20, "bad file descriptor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fd, sa, err := k.DupListener(tt.fd)
			assert.ErrorContains(t, err, tt.want)
			assert.Equal(t, -1, fd)
			assert.Nil(t, sa)
		})
	}
}
