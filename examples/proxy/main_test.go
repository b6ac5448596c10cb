package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"path/filepath"
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

// The command itself, in a child process, as the README runs it: it
// relays to its upstream (over TCP and over a Unix socket), stops
// gracefully on SIGTERM, says so, and exits 0.
func TestProxyServesAndStops(t *testing.T) {
	for _, tc := range []struct {
		name     string
		upstream func(t *testing.T) string
		args     []string
	}{
		{"tcp", echoUpstream, nil},
		{"unix upstream, one loop, poll", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "up.sock")
			return "unix:" + echoUnixUpstream(t, path)
		}, []string{"-loops", "0", "-dispatcher", "poll"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			args := append([]string{"-listen", "127.0.0.1:0", "-upstream", tc.upstream(t)}, tc.args...)
			child, addr, err := extest.StartListening(ctx, "proxy listening", args...)
			require.NoError(t, err)

			c, err := net.DialTimeout("tcp", addr, testTimeout)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
			_, err = io.WriteString(c, "hello, upstream\n")
			require.NoError(t, err)
			line, err := bufio.NewReader(c).ReadString('\n')
			require.NoError(t, err)
			assert.Equal(t, "hello, upstream\n", line)

			require.NoError(t, child.Signal(syscall.SIGTERM))
			_, err = c.Read(make([]byte, 1)) // the proxy closes the connection
			assert.ErrorIs(t, err, io.EOF)
			require.NoError(t, c.Close())
			code, log, err := child.Wait()
			require.NoError(t, err, log)
			assert.Equal(t, 0, code, log)
			assert.Contains(t, log, "proxy stopped")
			assert.NotContains(t, log, "level=ERROR")
		})
	}
}
