package reactor_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/internal/haproxytest"
)

// TestProxyProtocolHAProxy puts a real HAProxy in front of a reactor
// Server with WithProxyProtocol: clients bound to distinct loopback
// addresses (127.0.0.2, 127.0.0.3) connect through HAProxy with send-proxy
// and send-proxy-v2, and the handler sees exactly their addresses, and the
// client's bytes after the header. HAProxy's health checks come with a
// version 2 LOCAL header, which keeps the socket's addresses.
func TestProxyProtocolHAProxy(t *testing.T) {
	haproxytest.Require(t)
	checked := make(chan *reactor.ProxyHeader, 1)
	h := reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			if ph := c.ProxyHeader(); ph != nil && ph.Local {
				select {
				case checked <- ph:
				default:
				}
			}
		},
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			i := in.IndexByte('\n')
			if i < 0 {
				return
			}
			line := in.Next(i + 1)
			ph := c.ProxyHeader()
			fmt.Fprintf(c, "v%d %s > %s: %s", ph.Version, c.RemoteAddr(), c.LocalAddr(), line)
		},
	}
	srv, err := reactor.NewServer("127.0.0.1:0", h, reactor.WithLoops(1), reactor.WithProxyProtocol(true),
		reactor.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	defer func() {
		require.NoError(t, srv.Shutdown(context.Background()))
		require.ErrorIs(t, <-errc, reactor.ErrServerClosed)
	}()

	ports, err := haproxytest.FreePorts(2)
	require.NoError(t, err)
	v1 := fmt.Sprintf("127.0.0.1:%d", ports[0])
	v2 := fmt.Sprintf("127.0.0.1:%d", ports[1])
	cfg := haproxytest.SendProxyConfig(v1, v2, srv.Addr().String(), "check inter 200ms")
	p, err := haproxytest.Start(t.TempDir(), cfg, []string{v1, v2}, 30*time.Second)
	require.NoError(t, err)
	defer p.Stop()

	for _, tt := range []struct {
		frontend string
		version  int
		from     string
	}{
		{v1, 1, "127.0.0.2"},
		{v1, 1, "127.0.0.3"},
		{v2, 2, "127.0.0.2"},
		{v2, 2, "127.0.0.3"},
	} {
		t.Run(fmt.Sprintf("v%d from %s", tt.version, tt.from), func(t *testing.T) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.from)}, Timeout: 10 * time.Second}
			c, err := d.Dial("tcp", tt.frontend)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
			_, err = c.Write([]byte("hello\n"))
			require.NoError(t, err)
			line, err := bufio.NewReader(c).ReadString('\n')
			require.NoError(t, err)
			want := fmt.Sprintf("v%d %s > %s: hello\n", tt.version, c.LocalAddr(), tt.frontend)
			assert.Equal(t, want, line, "the handler sees the client's address and the one it connected to")
		})
	}

	select {
	case ph := <-checked:
		assert.Equal(t, 2, ph.Version)
		assert.Nil(t, ph.Source)
	case <-time.After(30 * time.Second):
		t.Fatal("no health check with a LOCAL header")
	}
	st := srv.Stats()
	assert.GreaterOrEqual(t, st.Proxy.Headers, int64(5))
	assert.GreaterOrEqual(t, st.Proxy.Local, int64(1))
	// haproxytest.Start's probes connect to the frontends and close at
	// once; HAProxy relays such a connection with its header sent on
	// connect, or not at all, so they count among Headers, not Failed.
	assert.Zero(t, st.Proxy.Failed, "every connection HAProxy made began with a valid header")
}

// TestProxyProtocolOverUnixSocket: a balancer may reach the server over a
// Unix socket (HAProxy's "server s unix@/path send-proxy"): the addresses
// are still the header's, TCP ones, and the header's LOCAL form keeps the
// socket's own Unix addresses.
func TestProxyProtocolOverUnixSocket(t *testing.T) {
	addrs := make(chan string, 2)
	h := reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
		in.Discard(in.Len())
		addrs <- fmt.Sprintf("%T %s > %T %s", c.RemoteAddr(), c.RemoteAddr(), c.LocalAddr(), c.LocalAddr())
	}}
	path := t.TempDir() + "/s.sock"
	srv := serveAt(t, "unix:"+path, h, reactor.WithProxyProtocol(true))
	require.Equal(t, path, srv.Addr().String())
	for _, tc := range []struct{ header, want string }{
		{"PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\r\n", "*net.TCPAddr 192.0.2.1:1234 > *net.TCPAddr 192.0.2.2:443"},
		{"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00", "*net.UnixAddr  > *net.UnixAddr " + path},
	} {
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		_, err = c.Write([]byte(tc.header + "x"))
		require.NoError(t, err)
		select {
		case got := <-addrs:
			assert.Equal(t, tc.want, got)
		case <-time.After(testTimeout):
			t.Fatal("no message")
		}
		require.NoError(t, c.Close())
	}
}
