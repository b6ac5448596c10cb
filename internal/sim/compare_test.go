package sim

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/kernel"
)

// The comparison tests run the same script over loopback (kernel.OS and a
// real client socket) and over the simulation (Kernel and its Conn), and
// check that both give what Linux gives: the model is only as good as its
// agreement with the real kernel. A script sees one connection through
// pair: the server's descriptor on a kernel.Interface, the client through
// the small client interface, and wait, which blocks in poll(2) on the
// real network and returns at once in the simulation (where every change
// has happened by the time the call that caused it returns).

// client is the client end of a connection, as a script uses it.
type client interface {
	// Write sends p; a script writes little, so it must take all of it.
	Write(p []byte) (int, error)
	// Read is a non-blocking read: (0, EAGAIN) with nothing to read,
	// (0, nil) at EOF, or an error.
	Read(p []byte) (int, error)
	// CloseWrite is shutdown(SHUT_WR).
	CloseWrite() error
	// Close is close(2): RST if bytes are left unread, else FIN.
	Close() error
	// Abort is close(2) with SO_LINGER 0.
	Abort() error
}

// pair is one accepted connection: the server end is fd on k.
type pair struct {
	k   kernel.Interface
	fd  int
	cli client
	// cliFD is the client's descriptor on loopback, -1 in the simulation.
	cliFD int
	// closed records the server descriptor's close, so cleanup does not
	// close a number the kernel may have handed out again.
	closed bool
}

// network opens pairs; rcvbuf > 0 sizes the client's receive buffer
// (SO_RCVBUF before connect on loopback, SetReceiveWindow in the
// simulation).
type network struct {
	name string
	dial func(t *testing.T, rcvbuf int) *pair
}

var networks = []network{
	{"loopback", dialLoopback},
	{"sim", dialSim},
}

// pollTimeout bounds every wait on loopback; none comes near it, since on
// loopback a segment, an RST included, is delivered during the system
// call that sends it.
const pollTimeout = 10 * time.Second

// wait blocks until one of the descriptors is ready for its events (or
// has an error or hang-up pending), failing the test after pollTimeout.
// In the simulation it returns at once.
func (p *pair) wait(t *testing.T, fds ...unix.PollFd) {
	t.Helper()
	if p.cliFD < 0 {
		return
	}
	deadline := time.Now().Add(pollTimeout)
	for {
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		require.NoError(t, err)
		require.Positive(t, n, "nothing ready within %v: %+v", pollTimeout, fds)
		return
	}
}

// waitServer waits until the server end is readable (bytes, FIN, RST).
func (p *pair) waitServer(t *testing.T) {
	t.Helper()
	p.wait(t, unix.PollFd{Fd: int32(p.fd), Events: unix.POLLIN})
}

// waitClient waits until the client end is readable (bytes, FIN, RST).
func (p *pair) waitClient(t *testing.T) {
	t.Helper()
	p.wait(t, unix.PollFd{Fd: int32(p.cliFD), Events: unix.POLLIN})
}

// waitReset waits until the RST has reached fd: poll(2) reports POLLERR
// and POLLHUP whatever the events asked for, and a reset socket has both
// (POLLHUP stays after the error is read). Readable is not enough where
// bytes or a FIN were there before the RST: a write could come first.
func (p *pair) waitReset(t *testing.T, fd int) {
	t.Helper()
	p.wait(t, unix.PollFd{Fd: int32(fd)})
}

// closeServer closes the server end.
func (p *pair) closeServer(t *testing.T) {
	t.Helper()
	p.closed = true
	require.NoError(t, p.k.Close(p.fd))
}

// outcome is what one end got from its reads: the bytes, then the results
// of the reads that returned none, by name ("ECONNRESET", "EOF").
type outcome struct {
	data []byte
	ends []string
}

// endName names a read's result that carried no bytes.
func endName(err error) string {
	var errno unix.Errno
	switch {
	case err == nil:
		return "EOF"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// drain reads with read until EOF, waiting with wait when nothing is
// ready, then reads once more to see that EOF stays. A read that finds
// nothing right after a wait fails the test: in the simulation nothing
// more can come, and on loopback poll said it was ready.
func drain(t *testing.T, read func([]byte) (int, error), wait func()) outcome {
	t.Helper()
	var out outcome
	buf := make([]byte, 64<<10)
	waited := false
	for len(out.ends) == 0 || out.ends[len(out.ends)-1] != "EOF" {
		n, err := read(buf)
		switch {
		case n > 0:
			out.data = append(out.data, buf[:n]...)
			waited = false
		case errors.Is(err, unix.EAGAIN):
			require.False(t, waited, "nothing to read after a wait; read so far: %d bytes, %v", len(out.data), out.ends)
			wait()
			waited = true
		default:
			out.ends = append(out.ends, endName(err))
			require.Less(t, len(out.ends), 5, "no EOF")
		}
	}
	n, err := read(buf)
	require.Zero(t, n)
	out.ends = append(out.ends, endName(err))
	return out
}

func (p *pair) drainClient(t *testing.T) outcome {
	t.Helper()
	return drain(t, p.cli.Read, func() { p.waitClient(t) })
}

func (p *pair) drainServer(t *testing.T) outcome {
	t.Helper()
	return drain(t, func(b []byte) (int, error) { return p.k.Read(p.fd, b) }, func() { p.waitServer(t) })
}

// writeResults writes one byte n times on write and names the results
// ("ok" for a byte taken).
func writeResults(n int, write func([]byte) (int, error)) []string {
	var res []string
	for range n {
		if m, err := write([]byte{'x'}); err != nil {
			res = append(res, endName(err))
		} else {
			res = append(res, map[bool]string{true: "ok", false: "short"}[m == 1])
		}
	}
	return res
}

// pattern returns n bytes that differ from their neighbours, so a prefix
// is told from a wrong slice.
func pattern(off, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((off + i) % 251)
	}
	return b
}

// send has the client send p, all of it.
func (p *pair) send(t *testing.T, b []byte) {
	t.Helper()
	n, err := p.cli.Write(b)
	require.NoError(t, err)
	require.Equal(t, len(b), n)
}

// reply has the server write b, all of it at once: it must fit.
func (p *pair) reply(t *testing.T, b []byte) {
	t.Helper()
	n, err := p.k.Write(p.fd, b)
	require.NoError(t, err)
	require.Equal(t, len(b), n, "the reply must fit")
}

// fill has the server write a pattern until EAGAIN and returns what was
// taken.
func (p *pair) fill(t *testing.T) []byte {
	t.Helper()
	var written []byte
	for {
		b := pattern(len(written), 64<<10)
		n, err := p.k.Write(p.fd, b)
		if errors.Is(err, unix.EAGAIN) {
			require.NotEmpty(t, written)
			return written
		}
		require.NoError(t, err)
		written = append(written, b[:n]...)
	}
}

// writeAll has the server write b, all of it; whenever its buffers are
// full the client reads (into got) to make room, as a client that reads
// while the server writes does.
func (p *pair) writeAll(t *testing.T, b []byte, got *[]byte) {
	t.Helper()
	buf := make([]byte, 64<<10)
	for len(b) > 0 {
		n, err := p.k.Write(p.fd, b)
		if errors.Is(err, unix.EAGAIN) {
			m, rerr := p.cli.Read(buf)
			if errors.Is(rerr, unix.EAGAIN) {
				// On loopback the window update is on its way: wait for the
				// server's room or the client's bytes.
				p.wait(t, unix.PollFd{Fd: int32(p.fd), Events: unix.POLLOUT}, unix.PollFd{Fd: int32(p.cliFD), Events: unix.POLLIN})
				continue
			}
			require.NoError(t, rerr)
			require.Positive(t, m, "EOF while the server writes")
			*got = append(*got, buf[:m]...)
			continue
		}
		require.NoError(t, err)
		b = b[n:]
	}
}

func TestCompareWithLoopback(t *testing.T) {
	request := []byte("request")
	tests := []struct {
		name   string
		rcvbuf int
		run    func(t *testing.T, p *pair, sim bool)
	}{
		{
			// a) The reply fits; the request is never read; closing with
			// unread input sends RST after it. The client keeps the reply.
			name: "close with unread input after a reply that arrived",
			run: func(t *testing.T, p *pair, _ bool) {
				p.send(t, request)
				p.waitServer(t)
				reply := pattern(0, 1000)
				p.reply(t, reply)
				p.waitClient(t)
				p.closeServer(t)
				got := p.drainClient(t)
				assert.Equal(t, reply, got.data, "what arrived before the RST is read")
				assert.Equal(t, []string{"ECONNRESET", "EOF", "EOF"}, got.ends)
				assert.Equal(t, []string{"EPIPE", "EPIPE"}, writeResults(2, p.cli.Write))
			},
		},
		{
			// b) The client's window is small; the server writes until
			// EAGAIN, so bytes are in flight, then closes with unread
			// input: the bytes in flight are lost.
			name:   "close with unread input loses the bytes in flight",
			rcvbuf: 4096,
			run: func(t *testing.T, p *pair, sim bool) {
				p.send(t, request)
				p.waitServer(t)
				written := p.fill(t)
				p.closeServer(t)
				got := p.drainClient(t)
				require.Less(t, len(got.data), len(written), "a strict prefix")
				assert.True(t, bytes.Equal(written[:len(got.data)], got.data), "a prefix of what was written")
				assert.Equal(t, []string{"ECONNRESET", "EOF", "EOF"}, got.ends)
				t.Logf("written %d, received %d, lost %d", len(written), len(got.data), len(written)-len(got.data))
				if sim {
					assert.Len(t, got.data, 4096, "in the simulation the receive window arrives, exactly")
					assert.Len(t, written, 4096+DefaultSendBuffer, "the window and the send buffer")
				}
			},
		},
		{
			// c) The client closes with unread data: the server reads what
			// had arrived, then ECONNRESET, then EOF; its writes fail.
			name: "client closes with unread data, server reads first",
			run: func(t *testing.T, p *pair, _ bool) {
				p.send(t, request)
				p.reply(t, []byte("unread reply"))
				p.waitClient(t)
				p.waitServer(t)
				require.NoError(t, p.cli.Close())
				p.waitReset(t, p.fd)
				got := p.drainServer(t)
				assert.Equal(t, request, got.data)
				assert.Equal(t, []string{"ECONNRESET", "EOF", "EOF"}, got.ends)
				assert.Equal(t, []string{"EPIPE", "EPIPE"}, writeResults(2, func(b []byte) (int, error) { return p.k.Write(p.fd, b) }))
			},
		},
		{
			// c) The same with SO_LINGER 0 and nothing unread, and the
			// server writing first: the write reports the reset.
			name: "client aborts, server writes first",
			run: func(t *testing.T, p *pair, _ bool) {
				p.send(t, request)
				p.waitServer(t)
				require.NoError(t, p.cli.Abort())
				p.waitReset(t, p.fd)
				assert.Equal(t, []string{"ECONNRESET", "EPIPE"}, writeResults(2, func(b []byte) (int, error) { return p.k.Write(p.fd, b) }))
				got := p.drainServer(t)
				assert.Equal(t, request, got.data)
				assert.Equal(t, []string{"EOF", "EOF"}, got.ends, "the reset was reported once, by the write")
			},
		},
		{
			// d) The lingering close: the server writes (more than the
			// client's window, so bytes are in flight), shuts down its
			// write side, reads the client's bytes until EOF, closes. The
			// client gets everything and EOF, never a reset.
			name:   "orderly: shutdown, read to EOF, close",
			rcvbuf: 4096,
			run: func(t *testing.T, p *pair, _ bool) {
				p.send(t, request)
				p.waitServer(t)
				reply := pattern(0, 64<<10)
				var early []byte
				p.writeAll(t, reply, &early)
				require.NoError(t, p.k.Shutdown(p.fd, unix.SHUT_WR))
				got := p.drainClient(t)
				assert.Equal(t, reply, append(early, got.data...))
				assert.Equal(t, []string{"EOF", "EOF"}, got.ends)
				require.NoError(t, p.cli.CloseWrite())
				p.waitServer(t)
				srv := p.drainServer(t)
				assert.Equal(t, request, srv.data)
				assert.Equal(t, []string{"EOF", "EOF"}, srv.ends)
				p.closeServer(t)
				p.waitClient(t)
				after := p.drainClient(t)
				assert.Empty(t, after.data)
				assert.Equal(t, []string{"EOF", "EOF"}, after.ends, "no reset")
			},
		},
		{
			// The server's FIN arrives before its RST (it shut down its
			// write side, then closed with unread input): the client is in
			// CLOSE_WAIT, where Linux reports the reset as EPIPE, and only
			// to writes; reads return the reply, then EOF.
			name: "RST after FIN: reads see EOF, writes EPIPE",
			run: func(t *testing.T, p *pair, _ bool) {
				p.send(t, request)
				p.waitServer(t)
				reply := pattern(0, 1000)
				p.reply(t, reply)
				require.NoError(t, p.k.Shutdown(p.fd, unix.SHUT_WR))
				p.waitClient(t)
				p.closeServer(t)
				p.waitReset(t, p.cliFD)
				got := p.drainClient(t)
				assert.Equal(t, reply, got.data)
				assert.Equal(t, []string{"EOF", "EOF"}, got.ends)
				assert.Equal(t, []string{"EPIPE", "EPIPE"}, writeResults(2, p.cli.Write))
			},
		},
		{
			// Writing to a client that has closed (FIN, nothing unread):
			// the write is taken and answered with RST, which, after the
			// client's FIN, shows as EPIPE on writes and EOF on reads.
			name: "write to a closed peer",
			run: func(t *testing.T, p *pair, _ bool) {
				p.send(t, request)
				require.NoError(t, p.cli.Close())
				p.wait(t, unix.PollFd{Fd: int32(p.fd), Events: unix.POLLRDHUP}) // the FIN has arrived
				write := func(b []byte) (int, error) { return p.k.Write(p.fd, b) }
				assert.Equal(t, []string{"ok"}, writeResults(1, write))
				p.waitReset(t, p.fd)
				assert.Equal(t, []string{"EPIPE", "EPIPE"}, writeResults(2, write))
				got := p.drainServer(t)
				assert.Equal(t, request, got.data)
				assert.Equal(t, []string{"EOF", "EOF"}, got.ends)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, nw := range networks {
				t.Run(nw.name, func(t *testing.T) {
					tt.run(t, nw.dial(t, tt.rcvbuf), nw.name == "sim")
				})
			}
		})
	}
}

// simClient is a Conn as a client: its Read's (0, nil) for nothing yet
// becomes EAGAIN, and its io.EOF becomes (0, nil), as read(2) has them.
type simClient struct{ c *Conn }

func (s simClient) Write(p []byte) (int, error) { return s.c.Write(p) }
func (s simClient) CloseWrite() error           { return s.c.CloseWrite() }
func (s simClient) Close() error                { return s.c.Close() }
func (s simClient) Abort() error                { return s.c.Reset() }
func (s simClient) Read(p []byte) (int, error) {
	n, err := s.c.Read(p)
	switch {
	case errors.Is(err, io.EOF):
		return 0, nil
	case n == 0 && err == nil:
		return 0, unix.EAGAIN
	}
	return n, err
}

func dialSim(t *testing.T, rcvbuf int) *pair {
	k := New(Config{})
	lfd, addr := listen(t, k)
	c, err := k.Dial(addr)
	require.NoError(t, err)
	if rcvbuf > 0 {
		c.SetReceiveWindow(rcvbuf)
	}
	fd, _, err := k.Accept(lfd)
	require.NoError(t, err)
	return &pair{k: k, fd: fd, cli: simClient{c}, cliFD: -1}
}

// osClient is a real non-blocking client socket.
type osClient struct {
	fd     int
	closed *bool
}

func (c osClient) Write(p []byte) (int, error) { return kernel.OS{}.Write(c.fd, p) }
func (c osClient) Read(p []byte) (int, error)  { return kernel.OS{}.Read(c.fd, p) }
func (c osClient) CloseWrite() error           { return unix.Shutdown(c.fd, unix.SHUT_WR) }
func (c osClient) Close() error {
	*c.closed = true
	return unix.Close(c.fd)
}
func (c osClient) Abort() error {
	if err := (kernel.OS{}).SetLinger(c.fd, 0); err != nil {
		return err
	}
	return c.Close()
}

func dialLoopback(t *testing.T, rcvbuf int) *pair {
	k := kernel.OS{}
	lfd, sa, err := k.Listen("tcp4", "127.0.0.1:0", false, 1)
	require.NoError(t, err)
	defer func() { assert.NoError(t, k.Close(lfd)) }()

	cfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	cliClosed := new(bool)
	t.Cleanup(func() {
		if !*cliClosed {
			assert.NoError(t, unix.Close(cfd))
		}
	})
	if rcvbuf > 0 {
		// Before connect, so that the window scale agreed in the handshake
		// fits it.
		require.NoError(t, unix.SetsockoptInt(cfd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf))
	}
	if err := unix.Connect(cfd, sa); !errors.Is(err, unix.EINPROGRESS) {
		require.NoError(t, err)
	}
	p := &pair{k: k, cliFD: cfd, cli: osClient{fd: cfd, closed: cliClosed}}
	p.wait(t, unix.PollFd{Fd: int32(lfd), Events: unix.POLLIN})
	p.fd, _, err = k.Accept(lfd)
	require.NoError(t, err)
	t.Cleanup(func() {
		if !p.closed {
			assert.NoError(t, k.Close(p.fd))
		}
	})
	p.wait(t, unix.PollFd{Fd: int32(cfd), Events: unix.POLLOUT})
	soErr, err := unix.GetsockoptInt(cfd, unix.SOL_SOCKET, unix.SO_ERROR)
	require.NoError(t, err)
	require.Zero(t, soErr, "connect")
	return p
}
