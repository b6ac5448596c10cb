package main

import (
	"bufio"
	"context"
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
