package reactor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// socketPath returns a path for a Unix socket in a fresh directory that is
// removed when the test ends. The directory is made under os.TempDir, not
// t.TempDir: the latter's names grow with the test's, and sun_path holds
// only 107 bytes.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "reactor")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, os.RemoveAll(dir)) })
	return filepath.Join(dir, "s.sock")
}

var abstractSeq atomic.Int64

// abstractName returns an abstract socket name ("@...") no other process or
// test uses: the namespace is shared by the whole network namespace.
func abstractName() string {
	return fmt.Sprintf("@reactor-test-%d-%d", os.Getpid(), abstractSeq.Add(1))
}

func TestUnixEchoIntegrity(t *testing.T) {
	type mode struct {
		abstract bool
		loops    int
	}
	// Each backend over a path and an abstract name, one loop and several:
	// half of the product, which would add over a minute to the suite for
	// little, since past accept a Unix connection runs the same code as a
	// TCP one (TestEchoIntegrity).
	modes := map[string][]mode{
		"epoll": {{false, 0}, {true, 4}},
		"poll":  {{false, 4}, {true, 0}},
	}
	for _, be := range backends {
		for _, m := range modes[be.name] {
			t.Run(fmt.Sprintf("%s/abstract=%v/loops=%d", be.name, m.abstract, m.loops), func(t *testing.T) {
				name := abstractName()
				if !m.abstract {
					name = socketPath(t)
				}
				srv := serveAt(t, "unix:"+name, echo(), reactor.WithDispatcher(be.f), reactor.WithLoops(m.loops))
				require.Equal(t, &net.UnixAddr{Name: name, Net: "unix"}, srv.Addr())
				echoMany(t, srv.Addr())
			})
		}
	}
}

// addrRecorder records, per connection, the addresses Conn reports in
// OnOpen and again in OnClose.
type addrRecorder struct {
	mu     sync.Mutex
	opened []string // "remote local" in OnOpen
	closed []string // the same in OnClose
	done   chan struct{}
}

func (r *addrRecorder) handler() reactor.HandlerFuncs {
	text := func(c *reactor.Conn) string {
		ra, la := c.RemoteAddr(), c.LocalAddr()
		return fmt.Sprintf("%s:%q %s:%q", ra.Network(), ra.String(), la.Network(), la.String())
	}
	return reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			r.mu.Lock()
			r.opened = append(r.opened, text(c))
			r.mu.Unlock()
		},
		Close: func(c *reactor.Conn, _ error) {
			r.mu.Lock()
			r.closed = append(r.closed, text(c))
			r.mu.Unlock()
			r.done <- struct{}{}
		},
	}
}

// TestUnixAddresses: the addresses a Unix connection and its server report.
// A client that binds no address of its own (the usual case) is unnamed;
// one that binds a path or an abstract name is reported by it.
func TestUnixAddresses(t *testing.T) {
	dir := filepath.Dir(socketPath(t))
	tests := []struct {
		name   string
		server string
		client string // the client's own address, "" for none
	}{
		{"path, unnamed client", filepath.Join(dir, "a.sock"), ""},
		{"path, client bound to a path", filepath.Join(dir, "b.sock"), filepath.Join(dir, "client.sock")},
		{"abstract, unnamed client", abstractName(), ""},
		{"abstract, client with an abstract name", abstractName(), abstractName()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &addrRecorder{done: make(chan struct{}, 1)}
			srv := serveAt(t, "unix:"+tt.server, r.handler(), reactor.WithLoops(1))

			a := srv.Addr().(*net.UnixAddr)
			assert.Equal(t, &net.UnixAddr{Name: tt.server, Net: "unix"}, a)
			a.Name = "changed"
			assert.Equal(t, tt.server, srv.Addr().String(), "Addr returns a copy")

			var laddr *net.UnixAddr
			if tt.client != "" {
				laddr = &net.UnixAddr{Name: tt.client, Net: "unix"}
			}
			c, err := net.DialUnix("unix", laddr, &net.UnixAddr{Name: tt.server, Net: "unix"})
			require.NoError(t, err)
			require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
			require.NoError(t, c.Close())
			select {
			case <-r.done:
			case <-time.After(testTimeout):
				t.Fatal("the connection did not close")
			}
			want := fmt.Sprintf("unix:%q unix:%q", tt.client, tt.server)
			r.mu.Lock()
			defer r.mu.Unlock()
			assert.Equal(t, []string{want}, r.opened)
			// OnClose runs before the descriptor is closed, so the kernel
			// still answers.
			assert.Equal(t, []string{want}, r.closed)
		})
	}
}

// TestUnixStaleAndLiveSocketFiles: a socket file that nothing listens on is
// a leftover, replaced by a new server; a path where a server listens, or a
// file that is not a socket, stays as it is and NewServer fails with
// EADDRINUSE.
func TestUnixStaleAndLiveSocketFiles(t *testing.T) {
	t.Run("stale socket file", func(t *testing.T) {
		path := socketPath(t)
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		require.NoError(t, err)
		old.SetUnlinkOnClose(false) // as if its process had died
		require.NoError(t, old.Close())
		require.FileExists(t, path)

		srv := serveAt(t, "unix:"+path, echo(), reactor.WithLoops(1))
		echoOne(t, srv.Addr())
	})
	t.Run("live socket file", func(t *testing.T) {
		path := socketPath(t)
		live, err := net.Listen("unix", path)
		require.NoError(t, err)
		defer live.Close()

		_, err = reactor.NewServer("unix:"+path, echo())
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, "unix", oe.Net)
		assert.Equal(t, path, oe.Addr.String())

		// The live server keeps its file and its clients. It saw the
		// probe as a connection that opened and closed.
		probe, err := live.Accept()
		require.NoError(t, err)
		require.NoError(t, probe.SetDeadline(time.Now().Add(testTimeout)))
		n, err := probe.Read(make([]byte, 1))
		assert.Equal(t, 0, n)
		assert.ErrorIs(t, err, io.EOF)
		require.NoError(t, probe.Close())
		go func() {
			if c, err := live.Accept(); err == nil {
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}
		}()
		echoOne(t, live.Addr())
	})
	t.Run("live abstract name", func(t *testing.T) {
		name := abstractName()
		live, err := net.Listen("unix", name)
		require.NoError(t, err)
		defer live.Close()
		_, err = reactor.NewServer("unix:"+name, echo())
		require.ErrorIs(t, err, syscall.EADDRINUSE)
	})
	t.Run("a file that is not a socket", func(t *testing.T) {
		path := socketPath(t)
		require.NoError(t, os.WriteFile(path, []byte("data"), 0o600))
		_, err := reactor.NewServer("unix:"+path, echo())
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, "data", string(b), "the file is somebody's data")
	})
}

// echoOne echoes one short message through the server at addr.
func echoOne(t *testing.T, addr net.Addr) {
	t.Helper()
	c, err := net.DialTimeout(addr.Network(), addr.String(), testTimeout)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	b := make([]byte, 4)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(b))
}

// TestUnixSocketFileRemoved: however a server ends, the socket file it
// created is removed; a file another server has put at the same path since
// is not.
func TestUnixSocketFileRemoved(t *testing.T) {
	ends := []struct {
		name string
		stop func(*reactor.Server) error
	}{
		{"Shutdown", func(s *reactor.Server) error { return s.Shutdown(context.Background()) }},
		{"Close", (*reactor.Server).Close},
	}
	for _, end := range ends {
		t.Run(end.name, func(t *testing.T) {
			path := socketPath(t)
			srv, err := reactor.NewServer("unix:"+path, echo(), reactor.WithLoops(2))
			require.NoError(t, err)
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve() }()
			echoOne(t, srv.Addr())
			require.FileExists(t, path)
			require.NoError(t, end.stop(srv))
			assert.ErrorIs(t, <-errc, reactor.ErrServerClosed)
			assert.NoFileExists(t, path)
		})
		t.Run(end.name+" before Serve", func(t *testing.T) {
			path := socketPath(t)
			srv, err := reactor.NewServer("unix:"+path, echo())
			require.NoError(t, err)
			require.FileExists(t, path)
			require.NoError(t, end.stop(srv))
			assert.NoFileExists(t, path)
		})
		t.Run(end.name+" after the file was replaced", func(t *testing.T) {
			path := socketPath(t)
			first, err := reactor.NewServer("unix:"+path, echo())
			require.NoError(t, err)
			require.NoError(t, os.Remove(path)) // someone removes it ...
			second := serveAt(t, "unix:"+path, echo(), reactor.WithLoops(1))
			require.NoError(t, end.stop(first)) // ... and the first server ends
			require.FileExists(t, path, "the second server's file stays")
			echoOne(t, second.Addr())
		})
	}
}

// TestUnixNoTCPOptions: TCP_NODELAY and keep-alive are TCP options; a Unix
// connection gets neither, so nothing fails and nothing is logged for every
// connection.
func TestUnixNoTCPOptions(t *testing.T) {
	var logged bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := serveAt(t, "unix:"+socketPath(t), echo(), reactor.WithLoops(1), reactor.WithLogger(log),
		reactor.WithTCPNoDelay(true), reactor.WithKeepAlive(time.Minute))
	for range 3 {
		echoOne(t, srv.Addr())
	}
	mu.Lock()
	defer mu.Unlock()
	assert.NotContains(t, logged.String(), "TCP_NODELAY")
	assert.NotContains(t, logged.String(), "keep-alive")
}

// lockedWriter serialises writes to w: the loops log from their own
// goroutines.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestUnixSourceHash: Unix clients have no address to hash, so SourceHash
// spreads them round-robin instead of putting them all on one loop.
func TestUnixSourceHash(t *testing.T) {
	var mu sync.Mutex
	loops := map[*reactor.EventLoop]int{}
	opened := make(chan struct{}, 4)
	h := reactor.HandlerFuncs{Open: func(c *reactor.Conn) {
		mu.Lock()
		loops[c.Loop()]++
		mu.Unlock()
		opened <- struct{}{}
	}}
	srv := serveAt(t, "unix:"+socketPath(t), h, reactor.WithLoops(2), reactor.WithLoadBalancer(reactor.SourceHash))
	for range 4 {
		c, err := net.DialTimeout("unix", srv.Addr().String(), testTimeout)
		require.NoError(t, err)
		defer c.Close()
		select {
		case <-opened:
		case <-time.After(testTimeout):
			t.Fatal("no OnOpen")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, loops, 2)
	for _, n := range loops {
		assert.Equal(t, 2, n)
	}
}

// TestUnixAddressErrors: what NewServer refuses for a Unix address.
func TestUnixAddressErrors(t *testing.T) {
	sim := reactor.NewSim(1)
	tests := []struct {
		name string
		addr string
		opts []reactor.Option
		want string // in the error
		is   error  // if set, errors.Is holds
	}{
		{"empty path", "unix:", nil, "empty Unix socket path", nil},
		{"empty abstract name", "unix:@", nil, "empty abstract", nil},
		{"path too long", "unix:/" + strings.Repeat("x", 107), nil, "at most 107", nil},
		{"abstract name too long", "unix:@" + strings.Repeat("x", 108), nil, "at most 107", nil},
		{"NUL in the path", "unix:/tmp/a\x00b", nil, "NUL", nil},
		{"no such directory", "unix:/nonexistent-reactor-dir/s.sock", nil, "bind", syscall.ENOENT},
		{"with WithReusePort", "unix:" + socketPath(t), []reactor.Option{reactor.WithReusePort(true)}, "one listener", nil},
		{"over the simulation", "unix:/s.sock", []reactor.Option{reactor.WithDispatcher(sim.Dispatcher)}, "no Unix domain sockets", syscall.EAFNOSUPPORT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := reactor.NewServer(tt.addr, echo(), tt.opts...)
			require.Error(t, err)
			assert.Nil(t, srv)
			assert.Contains(t, err.Error(), tt.want)
			if tt.is != nil {
				assert.True(t, errors.Is(err, tt.is), "%v is not %v", err, tt.is)
			}
		})
	}
}
