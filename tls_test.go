package reactor

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/internal/selfsigned"
)

// testCert is one self-signed certificate for 127.0.0.1 and localhost,
// shared by the TLS tests (generating one per test would cost more than
// most tests).
var testCert = func() tls.Certificate {
	c, err := selfsigned.New("127.0.0.1", "localhost")
	if err != nil {
		panic(err)
	}
	return c
}()

func serverTLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testCert}}
}

func clientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: selfsigned.Pool(testCert), ServerName: "127.0.0.1"}
}

// startTLSEcho runs an echo server with WithTLS on loopback.
func startTLSEcho(tb testing.TB, h Handler, opts ...Option) *Server {
	tb.Helper()
	if h == nil {
		h = HandlerFuncs{Message: func(c *Conn, in *Buffer) { _, _ = c.Write(in.Next(in.Len())) }}
	}
	opts = append([]Option{WithLoops(1), WithTLS(serverTLSConfig())}, opts...)
	srv, err := NewServer("127.0.0.1:0", h, opts...)
	require.NoError(tb, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	tb.Cleanup(func() {
		require.NoError(tb, srv.Shutdown(context.Background()))
		require.ErrorIs(tb, <-errc, ErrServerClosed)
	})
	return srv
}

func dialTLS(tb testing.TB, addr net.Addr, cfg *tls.Config) *tls.Conn {
	tb.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr.String(), cfg)
	require.NoError(tb, err)
	require.NoError(tb, c.SetDeadline(time.Now().Add(30*time.Second)))
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func TestTLSEchoSmoke(t *testing.T) {
	srv := startTLSEcho(t, nil)
	c := dialTLS(t, srv.Addr(), clientTLSConfig())
	_, err := c.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf))
}
