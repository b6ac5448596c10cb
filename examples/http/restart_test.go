//go:build linux

package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/examples/internal/extest"
	"github.com/tcpreactor/reactor/examples/internal/restart"
)

// On SIGHUP the HTTP server hands its socket to a new process, which
// answers from then on, and exits 0 once its own connections are done;
// the PID file follows. (examples/echo's TestRestartUnderLoad restarts
// under load.)
func TestHTTPRestartsOnSIGHUP(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"handover", nil},
		// Without tcp_migrate_req=1 the old server warns at its drain; with
		// no load there is nothing queued to lose.
		{"reuseport", []string{"-reuseport"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			undo, err := extest.Subreaper() // the successor outlives its parent
			require.NoError(t, err)
			defer undo()
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			pidFile := filepath.Join(t.TempDir(), "http.pid")
			args := append([]string{"-addr", "127.0.0.1:0", "-loops", "1", "-pidfile", pidFile}, tc.args...)
			child, addr, err := extest.StartListening(ctx, "http server listening", args...)
			require.NoError(t, err)

			cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: bound}
			get := func() {
				t.Helper()
				resp, err := cl.Get("http://" + addr + "/")
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				assert.Equal(t, 200, resp.StatusCode)
				assert.Equal(t, "Hello, World!", string(body))
			}
			get()
			old, err := restart.ReadPIDFile(pidFile)
			require.NoError(t, err)

			succ := hup(ctx, t, child)
			stopped := false
			defer func() {
				if !stopped { // the test failed: leave nothing behind
					_ = unix.Kill(succ, unix.SIGKILL)
					_ = child.Signal(syscall.SIGKILL)
					_, _, _ = child.Wait()
					_, _ = extest.Reap(succ, bound) // ours once its parent is gone
				}
			}()
			pid, err := restart.ReadPIDFile(pidFile)
			require.NoError(t, err)
			assert.Equal(t, succ, pid)
			assert.NotEqual(t, old, pid)
			get() // answered by the successor

			require.NoError(t, unix.Kill(succ, unix.SIGTERM))
			code, log, err := child.Wait() // its log (stderr) ends when the successor's does
			require.NoError(t, err, log)
			assert.Equal(t, 0, code, log)
			// The old process has exited: its child, the successor, is ours.
			ws, err := extest.Reap(succ, bound)
			stopped = true
			require.NoError(t, err)
			assert.True(t, ws.Exited() && ws.ExitStatus() == 0, "successor: %v", ws)
			assert.Equal(t, 2, strings.Count(log, "http server stopped"), log)
			assert.NotContains(t, log, "level=ERROR")
			assert.NoFileExists(t, pidFile)
		})
	}
}

// hup sends SIGHUP to child and waits until it has handed over to its
// successor; it returns the successor's PID, from that log line.
func hup(ctx context.Context, t *testing.T, child *extest.Child) int {
	t.Helper()
	require.NoError(t, child.Signal(syscall.SIGHUP))
	line, err := child.WaitLine(ctx, `msg="restart: handed over"`)
	require.NoError(t, err)
	_, rest, _ := strings.Cut(line, "successor_pid=")
	succ, err := strconv.Atoi(strings.Fields(rest)[0])
	require.NoError(t, err, line)
	return succ
}
