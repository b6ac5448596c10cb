package reactor_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// listen opens a listener for the inherited-listener tests: TCP on
// loopback, or a Unix socket whose file the caller's closing leaves in
// place (as a process handing its listener over would).
func listen(t *testing.T, network string) net.Listener {
	t.Helper()
	if network == "unix" {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketPath(t), Net: "unix"})
		require.NoError(t, err)
		ln.SetUnlinkOnClose(false)
		return ln
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}

// TestWithListener: a server serves a listener it was given, after the
// caller has closed its own; it reports the listener's address, and does
// not remove a Unix socket file it did not create.
func TestWithListener(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		for _, be := range backends {
			t.Run(network+"/"+be.name, func(t *testing.T) {
				ln := listen(t, network)
				addr := ln.Addr()
				srv, err := reactor.NewServer("", echo(), reactor.WithListener(ln), reactor.WithDispatcher(be.f), reactor.WithLoops(2))
				require.NoError(t, err)
				require.NoError(t, ln.Close(), "the caller's descriptor is its own")
				assert.Equal(t, addr, srv.Addr())
				errc := make(chan error, 1)
				go func() { errc <- srv.Serve() }()
				for range 3 {
					echoOne(t, addr)
				}
				require.NoError(t, srv.Shutdown(context.Background()))
				assert.ErrorIs(t, <-errc, reactor.ErrServerClosed)
				if network == "unix" {
					assert.FileExists(t, addr.String(), "not this server's file")
				}
				_, err = net.DialTimeout(addr.Network(), addr.String(), testTimeout)
				assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the socket is closed: no copy is left open")
			})
		}
	}
}

// fakeListener is a net.Listener with no descriptor.
type fakeListener struct{ net.Listener }

// connListener is a net.Listener whose descriptor is a connection's, not a
// listening socket's.
type connListener struct {
	net.Listener
	syscall.Conn
}

func TestWithListenerErrors(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer tcp.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, closed.Close())
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer udp.Close()
	conn, err := net.Dial("tcp", tcp.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	sim := reactor.NewSim(1)

	tests := []struct {
		name string
		addr string
		opts []reactor.Option
		want string
	}{
		{"an address too", "127.0.0.1:0", []reactor.Option{reactor.WithListener(tcp)}, `pass ""`},
		{"nil", "", []reactor.Option{reactor.WithListener(nil)}, "WithListener(nil)"},
		{"nil *net.TCPListener", "", []reactor.Option{reactor.WithListener((*net.TCPListener)(nil))}, "WithListener(nil)"},
		{"nil *net.UnixListener", "", []reactor.Option{reactor.WithListener((*net.UnixListener)(nil))}, "WithListener(nil)"},
		{"none", "", []reactor.Option{reactor.WithListeners()}, "no listener"},
		{"a nil one of several", "", []reactor.Option{reactor.WithListeners(tcp, nil), reactor.WithReusePort(true)}, "a nil listener"},
		{"several without WithReusePort", "", []reactor.Option{reactor.WithListeners(tcp, tcp)}, "needs WithReusePort"},
		{"no descriptor", "", []reactor.Option{reactor.WithListener(fakeListener{tcp})}, "has no descriptor"},
		{"closed", "", []reactor.Option{reactor.WithListener(closed)}, "use of closed network connection"},
		{"datagram socket", "", []reactor.Option{reactor.WithListener(connListener{tcp, udp.(syscall.Conn)})}, "not a stream socket"},
		{"connected socket", "", []reactor.Option{reactor.WithListener(connListener{tcp, conn.(syscall.Conn)})}, "not a listening socket"},
		{"over the simulation", "", []reactor.Option{reactor.WithListener(tcp), reactor.WithDispatcher(sim.Dispatcher)}, "outside the simulation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := reactor.NewServer(tt.addr, echo(), tt.opts...)
			require.Error(t, err)
			assert.Nil(t, srv)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	// The failures left the listener as it was. (Its queue holds conn
	// first, which sends nothing: each connection gets its own copier.)
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}()
		}
	}()
	echoOne(t, tcp.Addr())
}

// childEnv tells a re-executed test binary to be the child of
// TestInheritedListenerChild: its value is how the child finds its
// listener.
const childEnv = "REACTOR_TEST_INHERIT_CHILD"

// TestInheritedListenerChild: a listener passes to a new process, which
// serves it, as in a restart that hands the socket over or under systemd's
// socket activation. The parent opens the listener, starts a child (this
// test binary again) with the socket as descriptor 3, closes its own copy,
// echoes through the child, and stops it with SIGTERM to its PID; the
// child shuts down gracefully and exits 0.
func TestInheritedListenerChild(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("running as the child")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh for the systemd case")
	}
	tests := []struct {
		network, how string
	}{
		{"tcp", "fd"},
		{"unix", "fd"},
		{"tcp", "systemd"},
		{"unix", "systemd"},
	}
	for _, tt := range tests {
		t.Run(tt.network+"/"+tt.how, func(t *testing.T) {
			ln := listen(t, tt.network)
			addr := ln.Addr()
			f, err := ln.(interface{ File() (*os.File, error) }).File()
			require.NoError(t, err)
			args := []string{"-test.run=^TestInheritChild$", "-test.count=1"}
			var cmd *exec.Cmd
			if tt.how == "systemd" {
				// As systemd does: LISTEN_PID is the service's own PID,
				// known only after the fork; exec keeps it.
				cmd = exec.Command(sh, append([]string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"`, "sh", os.Args[0]}, args...)...)
			} else {
				cmd = exec.Command(os.Args[0], args...)
			}
			cmd.Env = append(os.Environ(), childEnv+"="+tt.how)
			cmd.ExtraFiles = []*os.File{f}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			stopped := false
			defer func() {
				if !stopped {
					_ = cmd.Process.Kill() // the test failed: do not leave it running
					<-waited
				}
			}()
			// The child has its copy; the parent's can go. Connections
			// made before the child serves wait in the listen queue.
			require.NoError(t, f.Close())
			require.NoError(t, ln.Close())

			// Fewer and smaller than echoMany: the child is a second
			// race-instrumented process on the same cores.
			echoClients(t, addr, 20, 256<<10)

			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			select {
			case err := <-waited:
				stopped = true
				require.NoError(t, err, "child output:\n%s", &out)
			case <-time.After(testTimeout):
				t.Fatalf("the child did not stop; its output:\n%s", &out)
			}
			assert.Contains(t, out.String(), "child: served "+addr.String())
			if tt.network == "unix" {
				assert.FileExists(t, addr.String(), "the child did not create the file, so it leaves it")
			}
		})
	}
}

// TestInheritChild is the child of TestInheritedListenerChild; it does
// nothing in a normal run. It serves the listener it inherited as
// descriptor 3 until SIGTERM, then shuts down and exits: 0 if all went
// well.
func TestInheritChild(t *testing.T) {
	how := os.Getenv(childEnv)
	if how == "" {
		t.Skip("only run as the child of TestInheritedListenerChild")
	}
	if err := inheritChild(how); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func inheritChild(how string) error {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	var ln net.Listener
	switch how {
	case "systemd":
		lns, err := reactor.SystemdListeners()
		if err != nil {
			return err
		}
		if len(lns) != 1 {
			return fmt.Errorf("%d listeners from LISTEN_FDS, want 1", len(lns))
		}
		ln = lns[0]
	case "fd":
		var err error
		ln, err = net.FileListener(os.NewFile(3, "inherited"))
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown %s=%q", childEnv, how)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the file is the parent's
	}
	srv, err := reactor.NewServer("", echo(), reactor.WithListener(ln), reactor.WithLoops(2))
	if err != nil {
		return err
	}
	if err := ln.Close(); err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	<-term
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return err
	}
	if err := <-served; err != reactor.ErrServerClosed {
		return fmt.Errorf("Serve returned %v", err)
	}
	fmt.Println("child: served " + srv.Addr().String())
	return nil
}

// TestInheritedUnixPathIsNotRemoved: the socket file of an inherited Unix
// listener stays after Close too (Shutdown is in TestWithListener).
func TestInheritedUnixPathIsNotRemoved(t *testing.T) {
	ln := listen(t, "unix")
	defer ln.Close()
	srv, err := reactor.NewServer("", echo(), reactor.WithListener(ln))
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	assert.FileExists(t, ln.Addr().String())
}
