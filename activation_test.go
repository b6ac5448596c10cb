package reactor

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSystemdListenersEnv: the environment SystemdListeners reads. The
// descriptors are duplicates at whatever numbers the kernel gives, passed
// as the first one; TestInheritedListenerChild covers descriptor 3 in a
// process started as systemd starts one.
func TestSystemdListenersEnv(t *testing.T) {
	const pid = 4242
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	isOpen := func(fd int) bool {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		return err == nil
	}
	// dupAt duplicates fds to consecutive descriptors from 900 up, as
	// systemd passes them from 3 up, and returns the first. The numbers
	// must be free: dup3 would close what is there.
	dupAt := func(t *testing.T, fds ...int) int {
		t.Helper()
		const first = 900
		for i, fd := range fds {
			require.False(t, isOpen(first+i), "descriptor %d is taken", first+i)
			require.NoError(t, unix.Dup3(fd, first+i, 0))
		}
		return first
	}

	t.Run("not activated", func(t *testing.T) {
		for _, vars := range []map[string]string{
			{},
			{"LISTEN_FDS": "1"},
			{"LISTEN_PID": "4243", "LISTEN_FDS": "1"}, // another process's
		} {
			lns, err := listenersFromEnv(env(vars), pid, 900)
			assert.NoError(t, err)
			assert.Nil(t, lns)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for _, vars := range []map[string]string{
			{"LISTEN_PID": "x", "LISTEN_FDS": "1"},
			{"LISTEN_PID": "0", "LISTEN_FDS": "1"},
			{"LISTEN_PID": "4242"},
			{"LISTEN_PID": "4242", "LISTEN_FDS": "-1"},
			{"LISTEN_PID": "4242", "LISTEN_FDS": "one"},
		} {
			_, err := listenersFromEnv(env(vars), pid, 900)
			assert.Error(t, err, "%v", vars)
		}
	})
	t.Run("two listeners", func(t *testing.T) {
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer tcp.Close()
		dir, err := os.MkdirTemp("", "reactor")
		require.NoError(t, err)
		defer os.RemoveAll(dir)
		ux, err := net.Listen("unix", dir+"/s.sock")
		require.NoError(t, err)
		defer ux.Close()
		first := dupAt(t, fdOf(t, tcp), fdOf(t, ux))

		lns, err := listenersFromEnv(env(map[string]string{"LISTEN_PID": strconv.Itoa(pid), "LISTEN_FDS": "2"}), pid, first)
		require.NoError(t, err)
		require.Len(t, lns, 2)
		defer lns[0].Close()
		defer lns[1].Close()
		assert.Equal(t, tcp.Addr(), lns[0].Addr())
		assert.Equal(t, ux.Addr().String(), lns[1].Addr().String())
		assert.False(t, isOpen(first), "the passed descriptors are closed: the listeners hold duplicates")
		assert.False(t, isOpen(first+1))
	})
	t.Run("a datagram socket", func(t *testing.T) {
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer tcp.Close()
		udp, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		defer udp.Close()
		first := dupAt(t, fdOf(t, tcp), fdOf(t, udp))
		_, err = listenersFromEnv(env(map[string]string{"LISTEN_PID": strconv.Itoa(pid), "LISTEN_FDS": "2"}), pid, first)
		assert.ErrorContains(t, err, "descriptor 901")
		assert.False(t, isOpen(first), "the listener made before the failure is closed")
		assert.False(t, isOpen(first+1))
	})
}

// fdOf returns the descriptor of a net listener or connection, which stays
// valid while it is open.
func fdOf(t *testing.T, v any) int {
	t.Helper()
	rc, err := v.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	fd := -1
	require.NoError(t, rc.Control(func(f uintptr) { fd = int(f) }))
	return fd
}
