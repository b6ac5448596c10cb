package reactor

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeLookup answers name lookups from a table, or, for names it does not
// know, blocks until the lookup's context ends. started receives each name
// looked up.
type fakeLookup struct {
	hosts   map[string][]netip.Addr
	started chan string
}

func (f *fakeLookup) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.started <- host
	if ips, ok := f.hosts[host]; ok {
		return ips, nil
	}
	if host == "nxdomain.example" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// localListener accepts one connection at a time and closes it at once.
func localListener(t *testing.T) (port uint16) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestDialResolvesNamesOffTheLoop(t *testing.T) {
	port := localListener(t)
	f := &fakeLookup{
		hosts: map[string][]netip.Addr{
			"db.example": {netip.MustParseAddr("127.0.0.1")},
			// The first address refuses (nothing listens on [::1] at the
			// port, or there is no IPv6): the dial goes on to the next.
			"two.example": {netip.IPv6Loopback(), netip.MustParseAddr("127.0.0.1")},
		},
		started: make(chan string, 16),
	}
	opened := make(chan *Conn, 4)
	cl, err := NewClient(HandlerFuncs{Open: func(c *Conn) { opened <- c }}, WithLoops(1), WithDialTimeout(time.Minute))
	require.NoError(t, err)
	cl.lookup = f.lookup
	defer func() { assert.NoError(t, cl.Close()) }()
	ctx := context.Background()
	addr := func(host string) string { return net.JoinHostPort(host, strconv.Itoa(int(port))) }

	t.Run("one address", func(t *testing.T) {
		c, err := cl.Dial(ctx, "tcp", addr("db.example"))
		require.NoError(t, err)
		assert.Equal(t, "db.example", <-f.started)
		assert.Same(t, c, <-opened)
		assert.Equal(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), c.RemoteAddr().(*net.TCPAddr).AddrPort())
	})
	t.Run("the next address after a failure", func(t *testing.T) {
		c, err := cl.Dial(ctx, "tcp", addr("two.example"))
		require.NoError(t, err)
		<-f.started
		<-opened
		assert.Equal(t, "127.0.0.1", c.RemoteAddr().(*net.TCPAddr).IP.String())
	})
	t.Run("a family filter leaves none", func(t *testing.T) {
		_, err := cl.Dial(ctx, "tcp6", addr("db.example"))
		<-f.started
		var ae *net.AddrError
		assert.ErrorAs(t, err, &ae)
	})
	t.Run("literals need no lookup", func(t *testing.T) {
		for _, host := range []string{"127.0.0.1", "localhost", "LocalHost", ""} {
			_, err := cl.Dial(ctx, "tcp4", addr(host))
			require.NoError(t, err, host)
			<-opened
		}
		assert.Empty(t, f.started, "no lookup for a literal or localhost")
	})
	t.Run("lookup failure", func(t *testing.T) {
		_, err := cl.Dial(ctx, "tcp", addr("nxdomain.example"))
		<-f.started
		var dnsErr *net.DNSError
		require.ErrorAs(t, err, &dnsErr)
		assert.True(t, dnsErr.IsNotFound)
		var op *net.OpError
		require.ErrorAs(t, err, &op)
		assert.Nil(t, op.Addr, "no address was resolved")
	})
	t.Run("the dial timeout covers the lookup", func(t *testing.T) {
		cl2, err := NewClient(HandlerFuncs{}, WithLoops(1), WithDialTimeout(50*time.Millisecond))
		require.NoError(t, err)
		cl2.lookup = f.lookup
		_, err = cl2.Dial(ctx, "tcp", addr("slow.example"))
		assert.ErrorIs(t, err, ErrDialTimeout)
		<-f.started
		require.NoError(t, cl2.Close()) // waits for the cancelled lookup to return
	})
	t.Run("the context covers the lookup", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		go func() {
			<-f.started
			cancel()
		}()
		_, err := cl.Dial(ctx, "tcp", addr("slow.example"))
		assert.Equal(t, context.Canceled, err)
	})
}

func TestShutdownEndsLookupsInProgress(t *testing.T) {
	f := &fakeLookup{started: make(chan string, 1)}
	failed := make(chan error, 1)
	srv, err := NewServer("127.0.0.1:0", HandlerFuncs{Open: func(c *Conn) {
		_ = c.Loop().Dial("tcp", "slow.example:80", dialFailed(func(err error) { failed <- err }))
	}}, WithLoops(1))
	require.NoError(t, err)
	srv.lookup = f.lookup
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	c, err := net.DialTimeout("tcp", srv.Addr().String(), 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	<-f.started
	go func() {
		buf := make([]byte, 1)
		_, _ = c.Read(buf) // the server's FIN, so its linger ends
		_ = c.Close()
	}()
	require.NoError(t, srv.Shutdown(context.Background()))
	err = <-failed
	assert.ErrorIs(t, err, ErrServerClosed)
	assert.ErrorIs(t, <-served, ErrServerClosed)
}

// dialFailed is a handler that only hears of dial failures.
type dialFailed func(error)

func (dialFailed) OnOpen(*Conn)             {}
func (dialFailed) OnMessage(*Conn, *Buffer) {}
func (dialFailed) OnWriteComplete(*Conn)    {}
func (dialFailed) OnClose(*Conn, error)     {}
func (f dialFailed) OnDialError(err error)  { f(err) }
