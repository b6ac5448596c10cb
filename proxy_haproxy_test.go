package reactor_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
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
	if _, err := haproxytest.Path(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err) // CI installs haproxy: a skip there would prove nothing
		}
		t.Skip(err)
	}
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
	cfg := fmt.Sprintf(`global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout check 5s
frontend v1
    bind %s
    default_backend v1
backend v1
    server s %s send-proxy
frontend v2
    bind %s
    default_backend v2
backend v2
    server s %s send-proxy-v2 check inter 200ms
`, v1, srv.Addr(), v2, srv.Addr())
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
	// haproxytest.Start's own probes connect to the frontends only; a
	// frontend connection HAProxy could not relay would show here.
	assert.Zero(t, st.Proxy.Failed, "every connection HAProxy made began with a valid header")
}
