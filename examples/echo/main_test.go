package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tcpreactor/reactor/examples/internal/extest"
)

func TestMain(m *testing.M) {
	extest.RunIfChild(main)
	goleak.VerifyTestMain(m)
}

const bound = 30 * time.Second

// The README's quick start, in a child process: the server echoes, stops
// gracefully on SIGTERM, says so, and exits 0.
func TestEchoServesAndStops(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", []string{"-addr", "127.0.0.1:0"}},
		{"quiet, one loop, poll", []string{"-addr", "127.0.0.1:0", "-quiet", "-loops", "0", "-dispatcher", "poll"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			child, addr, err := extest.StartListening(ctx, "echo server listening", tc.args...)
			require.NoError(t, err)

			c, err := net.DialTimeout("tcp", addr, bound)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(bound)))
			_, err = io.WriteString(c, "hello, echo\n")
			require.NoError(t, err)
			line, err := bufio.NewReader(c).ReadString('\n')
			require.NoError(t, err)
			assert.Equal(t, "hello, echo\n", line)

			require.NoError(t, child.Signal(syscall.SIGTERM))
			_, err = c.Read(make([]byte, 1)) // the server closes the connection
			assert.ErrorIs(t, err, io.EOF)
			require.NoError(t, c.Close())
			code, log, err := child.Wait()
			require.NoError(t, err, log)
			assert.Equal(t, 0, code, log)
			assert.Contains(t, log, `msg="shutting down" signal=terminated`)
			assert.Contains(t, log, "echo server stopped")
			assert.NotContains(t, log, "level=ERROR")
		})
	}
}

// A server that cannot start exits 1 and says why.
func TestEchoFailsToStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	child, err := extest.Start(ctx, "-addr", "127.0.0.1:0", "-dispatcher", "kqueue")
	require.NoError(t, err)
	code, log, err := child.Wait()
	require.NoError(t, err, log)
	assert.Equal(t, 1, code, log)
	assert.Contains(t, log, `unknown -dispatcher \"kqueue\"`)
}

// With -tls and no certificate, the server makes a self-signed one at
// start and echoes over TLS; SIGTERM ends the connection with close_notify
// (io.EOF for Go's client, not an unexpected EOF).
func TestEchoTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	child, addr, err := extest.StartListening(ctx, "echo server listening", "-addr", "127.0.0.1:0", "-loops", "1", "-tls")
	require.NoError(t, err)

	d := &net.Dialer{Timeout: bound}
	// The certificate was made in the child: nothing here can verify it.
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(bound)))
	assert.Equal(t, "127.0.0.1", c.ConnectionState().PeerCertificates[0].IPAddresses[0].String())
	_, err = io.WriteString(c, "hello, tls\n")
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "hello, tls\n", line)

	require.NoError(t, child.Signal(syscall.SIGTERM))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "close_notify")
	require.NoError(t, c.Close())
	code, log, err := child.Wait()
	require.NoError(t, err, log)
	assert.Equal(t, 0, code, log)
	assert.Contains(t, log, "tls=true self-signed=true")
	assert.NotContains(t, log, "level=ERROR")
}

// -cert without -tls is a mistake, refused at start.
func TestEchoCertWithoutTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	child, err := extest.Start(ctx, "-addr", "127.0.0.1:0", "-cert", "x.pem", "-key", "y.pem")
	require.NoError(t, err)
	code, log, err := child.Wait()
	require.NoError(t, err, log)
	assert.Equal(t, 1, code, log)
	assert.Contains(t, log, "-cert and -key need -tls")
}

// -proxy: a connection must begin with a PROXY header, whose address the
// server logs as the peer's; the bytes after it are echoed; a connection
// without one is closed unanswered.
func TestEchoProxyProtocol(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	child, addr, err := extest.StartListening(ctx, "echo server listening", "-addr", "127.0.0.1:0", "-loops", "1", "-proxy")
	require.NoError(t, err)

	c, err := net.DialTimeout("tcp", addr, bound)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(bound)))
	_, err = io.WriteString(c, "PROXY TCP4 192.0.2.9 198.51.100.1 5555 9000\r\nhello, proxied\n")
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "hello, proxied\n", line)

	bare, err := net.DialTimeout("tcp", addr, bound)
	require.NoError(t, err)
	defer bare.Close()
	require.NoError(t, bare.SetDeadline(time.Now().Add(bound)))
	_, err = io.WriteString(bare, "hello, directly\n")
	require.NoError(t, err)
	n, err := bare.Read(make([]byte, 64))
	assert.Zero(t, n, "no echo without a header")
	assert.Error(t, err, "closed: EOF or reset")

	require.NoError(t, child.Signal(syscall.SIGTERM))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the graceful shutdown's FIN")
	require.NoError(t, c.Close()) // the server's linger ends with our FIN
	code, log, err := child.Wait()
	require.NoError(t, err, log)
	assert.Equal(t, 0, code, log)
	assert.Contains(t, log, "proxy=true")
	assert.Contains(t, log, "msg=open peer=192.0.2.9:5555")
	assert.NotContains(t, log, "peer=127.0.0.1")
}
