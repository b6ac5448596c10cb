package sim

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestFaultReachesTheCaller injects each error into each operation and
// checks that the call returns exactly that error, and that only
// ECONNRESET and EPIPE change the connection.
func TestFaultReachesTheCaller(t *testing.T) {
	errs := []unix.Errno{unix.EAGAIN, unix.EINTR, unix.ECONNRESET, unix.EPIPE, unix.EMFILE, unix.ECONNABORTED}
	for _, op := range []Op{OpRead, OpWrite, OpAccept} {
		for _, errno := range errs {
			t.Run(fmt.Sprintf("%v/%s", op, unix.ErrnoName(errno)), func(t *testing.T) {
				s := newServer(t, Config{})
				_, err := s.c.Write([]byte("data"))
				require.NoError(t, err)
				c2, err := s.k.Dial(s.adr) // pending, for accept
				require.NoError(t, err)
				id := s.k.Inject(Fault{Op: op, Err: errno, Times: 1})

				buf := make([]byte, 8)
				switch op {
				case OpRead:
					_, err = s.k.Read(s.fd, buf)
				case OpWrite:
					_, err = s.k.Write(s.fd, []byte("reply"))
				case OpAccept:
					_, _, err = s.k.Accept(s.lfd)
				}
				assert.Equal(t, errno, err)
				assert.Equal(t, 1, s.k.FaultHits(id))
				assert.Contains(t, s.k.TraceText(), fmt.Sprintf("fault fd=%d #1 %s %v", map[Op]int{OpRead: s.fd, OpWrite: s.fd, OpAccept: s.lfd}[op], unix.ErrnoName(errno), op))

				resets := op != OpAccept && (errno == unix.ECONNRESET || errno == unix.EPIPE)
				if resets {
					_, err = s.c.Read(buf)
					assert.Equal(t, unix.ECONNRESET, err, "the peer sees the reset")
					n, err := s.k.Read(s.fd, buf)
					assert.NoError(t, err)
					if op == OpWrite {
						// As on Linux, where a write can report the reset
						// first: what had arrived is still read.
						assert.Equal(t, "data", string(buf[:n]))
						n, err = s.k.Read(s.fd, buf)
						assert.NoError(t, err)
					}
					assert.Zero(t, n, "this end has reported the reset: EOF")
					_, err = s.k.Write(s.fd, []byte("x"))
					assert.Equal(t, unix.EPIPE, err)
					return
				}
				// Transient: nothing changed.
				n, err := s.k.Read(s.fd, buf)
				assert.NoError(t, err)
				assert.Equal(t, "data", string(buf[:n]))
				_, err = s.k.Write(s.fd, []byte("reply"))
				assert.NoError(t, err)
				assert.Equal(t, "reply", string(s.c.ReadAll()))
				fd, _, err := s.k.Accept(s.lfd)
				assert.NoError(t, err, "the connection stayed queued")
				assert.Equal(t, fd, c2.ServerFD())
			})
		}
	}
}

func TestShortFault(t *testing.T) {
	for _, op := range []Op{OpRead, OpWrite} {
		t.Run(op.String(), func(t *testing.T) {
			seen := map[int]bool{}
			for seed := range int64(40) {
				s := newServer(t, Config{Seed: seed})
				data := []byte("0123456789")
				s.k.Inject(Fault{Op: op, FD: s.fd, Short: true, Times: 1})
				var n int
				var err error
				if op == OpRead {
					_, err = s.c.Write(data)
					require.NoError(t, err)
					buf := make([]byte, 64)
					n, err = s.k.Read(s.fd, buf)
					require.NoError(t, err)
					assert.Equal(t, data[:n], buf[:n])
					rest, err := s.readAll(t)
					assert.Equal(t, unix.EAGAIN, err)
					assert.Equal(t, data[n:], rest, "nothing lost")
				} else {
					n, err = s.k.Write(s.fd, data)
					require.NoError(t, err)
					assert.Equal(t, data[:n], s.c.ReadAll())
				}
				require.True(t, n >= 1 && n < len(data), "short count %d", n)
				seen[n] = true
			}
			assert.Greater(t, len(seen), 3, "counts are drawn from the seed")
		})
	}
	t.Run("one byte cannot be short", func(t *testing.T) {
		s := newServer(t, Config{})
		id := s.k.Inject(Fault{Op: OpWrite, Short: true})
		n, err := s.k.Write(s.fd, []byte("x"))
		assert.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Zero(t, s.k.FaultHits(id), "not applicable, not counted")
		n, err = s.k.Write(s.fd, []byte("xy"))
		assert.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Equal(t, 1, s.k.FaultHits(id))
	})
}

func TestFaultTimesAndProbability(t *testing.T) {
	t.Run("Times", func(t *testing.T) {
		s := newServer(t, Config{})
		id := s.k.Inject(Fault{Op: OpWrite, Err: unix.EINTR, Times: 3})
		var got []error
		for range 5 {
			_, err := s.k.Write(s.fd, []byte("x"))
			got = append(got, err)
		}
		assert.Equal(t, []error{unix.EINTR, unix.EINTR, unix.EINTR, nil, nil}, got)
		assert.Equal(t, 3, s.k.FaultHits(id))
	})
	t.Run("until removed", func(t *testing.T) {
		s := newServer(t, Config{})
		id := s.k.Inject(Fault{Op: OpRead, Err: unix.EAGAIN})
		_, err := s.c.Write([]byte("x"))
		require.NoError(t, err)
		for range 10 {
			_, err := s.k.Read(s.fd, make([]byte, 1))
			assert.Equal(t, unix.EAGAIN, err)
		}
		s.k.RemoveFault(id)
		n, err := s.k.Read(s.fd, make([]byte, 1))
		assert.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Equal(t, 10, s.k.FaultHits(id))
	})
	t.Run("Probability", func(t *testing.T) {
		hits := func(seed int64) int {
			s := newServer(t, Config{Seed: seed})
			id := s.k.Inject(Fault{Op: OpWrite, Err: unix.EAGAIN, Probability: 0.25})
			s.k.SetTrace(false)
			fails := 0
			for range 2000 {
				if _, err := s.k.Write(s.fd, []byte("x")); err != nil {
					require.Equal(t, unix.EAGAIN, err)
					fails++
				}
				s.c.ReadAll()
			}
			assert.Equal(t, fails, s.k.FaultHits(id))
			return fails
		}
		h := hits(1)
		assert.InDelta(t, 500, h, 100, "about a quarter")
		assert.Equal(t, h, hits(1), "the same seed draws the same")
		assert.NotEqual(t, h, hits(2))
	})
}

func TestFaultTargets(t *testing.T) {
	k := New(Config{})
	lfd, addr := listen(t, k)
	c1, err := k.Dial(addr)
	require.NoError(t, err)
	c2, err := k.Dial(addr)
	require.NoError(t, err)
	// Targeting a client's connection works before it is accepted.
	k.Inject(Fault{Op: OpWrite, Conn: c2, Err: unix.EPIPE})
	fd1, _, err := k.Accept(lfd)
	require.NoError(t, err)
	fd2, _, err := k.Accept(lfd)
	require.NoError(t, err)
	k.Inject(Fault{Op: OpRead, FD: fd1, Err: unix.EINTR})

	_, err = k.Write(fd1, []byte("x"))
	assert.NoError(t, err)
	_, err = k.Write(fd2, []byte("x"))
	assert.Equal(t, unix.EPIPE, err)
	_, err = c1.Write([]byte("y"))
	require.NoError(t, err)
	_, err = k.Read(fd1, make([]byte, 1))
	assert.Equal(t, unix.EINTR, err)
	_, err = k.Read(fd2, make([]byte, 1))
	assert.NoError(t, err, "reset reported by the injected EPIPE: EOF")

	k.ClearFaults()
	n, err := k.Read(fd1, make([]byte, 1))
	assert.NoError(t, err)
	assert.Equal(t, 1, n)
}

func TestFaultOnCloseAndShutdown(t *testing.T) {
	s := newServer(t, Config{})
	s.k.Inject(Fault{Op: OpShutdown, Err: unix.EINTR, Times: 1})
	assert.Equal(t, unix.EINTR, s.k.Shutdown(s.fd, unix.SHUT_WR))
	_, err := s.k.Write(s.fd, []byte("x"))
	assert.NoError(t, err, "transient: the write side is still open")

	s.k.Inject(Fault{Op: OpClose, FD: s.fd, Err: unix.EINTR})
	assert.Equal(t, unix.EINTR, s.k.Close(s.fd))
	assert.Equal(t, []int{s.lfd}, s.k.OpenFDs(), "closed anyway: never retry close")
	assert.Equal(t, unix.EBADF, s.k.Close(s.fd))
}

func TestInjectRejectsMalformedFaults(t *testing.T) {
	k := New(Config{})
	other := New(Config{})
	_, addr := listen(t, other)
	c, err := other.Dial(addr)
	require.NoError(t, err)
	tests := []struct {
		name string
		f    Fault
		want string
	}{
		{"no op", Fault{Err: unix.EINTR}, "unknown Op"},
		{"no effect", Fault{Op: OpRead}, "exactly one"},
		{"both effects", Fault{Op: OpRead, Err: unix.EINTR, Short: true}, "exactly one"},
		{"short accept", Fault{Op: OpAccept, Short: true}, "Short applies"},
		{"fd and conn", Fault{Op: OpRead, Err: unix.EINTR, FD: 5, Conn: c}, "not both"},
		{"probability", Fault{Op: OpRead, Err: unix.EINTR, Probability: 1.5}, "out of range"},
		{"times", Fault{Op: OpRead, Err: unix.EINTR, Times: -1}, "out of range"},
		{"other kernel", Fault{Op: OpRead, Err: unix.EINTR, Conn: c}, "another kernel"},
	}
	for _, tt := range tests {
		assert.Contains(t, panicMessage(func() { k.Inject(tt.f) }), tt.want, tt.name)
	}
}

// panicMessage runs f and returns the string it panicked with ("" if it
// did not panic).
func panicMessage(f func()) (msg string) {
	defer func() { msg, _ = recover().(string) }()
	f()
	return ""
}
