package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
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

// member is a connected chat client.
type member struct {
	net.Conn
	r    *bufio.Reader
	name string // "userN", from the welcome line
}

// join connects to the chat and reads the welcome line, which the server
// writes after adding the client to the room: once join returns, the
// client gets every later line. smallBuffer shrinks the client's receive
// buffer first, for a client that will not read.
func join(t *testing.T, addr string, smallBuffer bool) *member {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, bound)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(bound)))
	if smallBuffer {
		require.NoError(t, c.(*net.TCPConn).SetReadBuffer(4096))
	}
	m := &member{Conn: c, r: bufio.NewReaderSize(c, 16)}
	line, err := m.r.ReadString('\n')
	require.NoError(t, err)
	_, err = fmt.Sscanf(line, "welcome, you are %s\n", &m.name)
	require.NoError(t, err, "%q", line)
	return m
}

// startChat runs the chat's main in a child process and returns its address.
func startChat(t *testing.T, ctx context.Context, args ...string) (*extest.Child, string) {
	t.Helper()
	child, addr, err := extest.StartListening(ctx, "chat server listening", append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	require.NoError(t, err)
	return child, addr
}

// The chat broadcasts, and stops gracefully on SIGTERM: it says so and
// exits 0.
func TestChatServesAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	child, addr := startChat(t, ctx)
	a, b := join(t, addr, false), join(t, addr, false)
	_, err := io.WriteString(a, "hello, room\n")
	require.NoError(t, err)
	line, err := b.r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, a.name+": hello, room\n", line)

	require.NoError(t, child.Signal(syscall.SIGTERM))
	for _, m := range []*member{a, b} {
		_, err := m.r.ReadByte() // the server closes every connection
		assert.ErrorIs(t, err, io.EOF)
		require.NoError(t, m.Close())
	}
	code, log, err := child.Wait()
	require.NoError(t, err, log)
	assert.Equal(t, 0, code, log)
	assert.Contains(t, log, "chat server stopped")
	assert.NotContains(t, log, "level=ERROR")
}

// With output it cannot flush (a member that does not read), the graceful
// shutdown cannot finish: when its time runs out, or when a second signal
// cuts it short, the chat closes hard, logs why, does not claim it stopped
// cleanly, and exits 1.
func TestChatShutdownCutShort(t *testing.T) {
	size, err := extest.StuckOutputSize()
	require.NoError(t, err)
	for _, tc := range []struct {
		name       string
		timeout    string
		secondSig  bool
		wantInLog  string
		wantInLog2 string
	}{
		{"time runs out", "100ms", false, "graceful shutdown did not finish within 100ms; closed hard", "context deadline exceeded"},
		{"second signal", "1h", true, `msg="second signal: closing at once"`, "shutdown interrupted by a second signal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			child, addr := startChat(t, ctx, "-shutdown-timeout", tc.timeout)
			sender := join(t, addr, false)
			stuck := join(t, addr, true) // reads nothing from here on
			reader := join(t, addr, false)

			// sender says size bytes in long lines; reader reads them all,
			// so by then the server has handed every line to stuck as well.
			line := strings.Repeat("x", maxLine-100) + "\n"
			n := size/len(line) + 1
			wrote := make(chan error, 1)
			go func() {
				_, err := io.WriteString(sender, strings.Repeat(line, n))
				wrote <- err
			}()
			want := sender.name + ": " + line
			for i := range n {
				got, err := reader.r.ReadString('\n')
				require.NoError(t, err, "line %d", i)
				require.Equal(t, want, got, "line %d", i)
			}
			require.NoError(t, <-wrote)

			require.NoError(t, child.Signal(syscall.SIGTERM))
			if tc.secondSig {
				_, err := child.WaitLine(ctx, "shutting down")
				require.NoError(t, err)
				require.NoError(t, child.Signal(syscall.SIGTERM))
			}
			code, log, err := child.Wait()
			require.NoError(t, err, log)
			assert.Equal(t, 1, code, log)
			assert.Contains(t, log, tc.wantInLog)
			assert.Contains(t, log, tc.wantInLog2)
			assert.NotContains(t, log, "chat server stopped")
			_ = stuck // kept open, unread, until the test ends
		})
	}
}
