package restart

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor"
)

// The test binary is its own successor: started by a restart (EnvReady is
// set), it runs successorMain instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv(EnvReady) != "" {
		os.Exit(successorMain())
	}
	goleak.VerifyTestMain(m)
}

// Knobs the tests set in their environment, which successors inherit.
const (
	envBehave    = "RESTART_TEST_SUCCESSOR" // "fail", "hang", or empty: serve
	envReusePort = "RESTART_TEST_REUSEPORT" // "1": the SO_REUSEPORT way
	envPIDFile   = "RESTART_TEST_PIDFILE"
)

// bound is how long a test waits for anything that must happen.
const bound = 30 * time.Second

// successorMain is an echo server run as the examples run: it serves what
// it inherited until SIGTERM (or hands over on SIGHUP).
func successorMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	switch os.Getenv(envBehave) {
	case "fail":
		log.Error("successor: failing on purpose")
		return 3
	case "hang":
		<-stop // never reports; killed by its predecessor
		return 4
	}
	in, err := Inherit()
	if err != nil {
		log.Error("successor", "err", err)
		return 1
	}
	addr, opts := in.Listen("")
	reusePort := os.Getenv(envReusePort) == "1"
	srv, err := reactor.NewServer(addr, echo(), append(opts, reactor.WithLoops(1), reactor.WithReusePort(reusePort), reactor.WithLogger(log))...)
	in.CloseListeners()
	if err != nil {
		log.Error("successor", "err", err)
		return 1
	}
	cfg := Config{ReusePort: reusePort, PIDFile: os.Getenv(envPIDFile), ShutdownTimeout: bound, Log: log}
	if err := Serve(srv, in, cfg, stop, hup); err != nil {
		log.Error("successor", "err", err)
		return 1
	}
	return 0
}

func echo() reactor.HandlerFuncs {
	return reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
		_, _ = c.Write(in.Next(in.Len()))
	}}
}

func TestInheritErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"listeners without a pipe", map[string]string{EnvFDs: "1"}, "without " + EnvReady},
		{"an address without a pipe", map[string]string{EnvAddr: "127.0.0.1:1"}, "without " + EnvReady},
		{"not a number", map[string]string{EnvFDs: "one", EnvReady: "4"}, "not a number"},
		{"no listener", map[string]string{EnvFDs: "0", EnvReady: "3"}, "not a number"},
		{"pipe not after the listeners", map[string]string{EnvFDs: "2", EnvReady: "4"}, "want 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := inherit(func(k string) string { return tc.env[k] })
			assert.Nil(t, in)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	t.Run("started by hand", func(t *testing.T) {
		in, err := inherit(func(string) string { return "" })
		require.NoError(t, err)
		addr, opts := in.Listen("127.0.0.1:9000")
		assert.Equal(t, "127.0.0.1:9000", addr)
		assert.Empty(t, opts)
	})
}

func TestWaitReady(t *testing.T) {
	expired := func() context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		t.Cleanup(cancel)
		return ctx
	}
	cancelled := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	for _, tc := range []struct {
		name  string
		write string // then the write end closes, unless keep
		keep  bool
		ctx   func() context.Context
		pid   int
		want  string
	}{
		{"reported", "1234\n", false, context.Background, 1234, ""},
		{"exited", "", false, context.Background, 0, "without serving"},
		{"exited mid-line", "12", false, context.Background, 0, "without serving"},
		{"garbage", "ready\n", false, context.Background, 0, `reported "ready\n"`},
		{"too slow", "", true, expired, 0, "did not serve in time"},
		{"abandoned", "", true, cancelled, 0, "context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp, wp, err := os.Pipe()
			require.NoError(t, err)
			defer rp.Close()
			_, err = io.WriteString(wp, tc.write)
			require.NoError(t, err)
			if tc.keep {
				defer wp.Close()
			} else {
				require.NoError(t, wp.Close())
			}
			pid, err := waitReady(tc.ctx(), rp)
			assert.Equal(t, tc.pid, pid)
			if tc.want == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.want)
			}
		})
	}
}

func TestPIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "echo.pid")
	require.NoError(t, writePIDFile(path, 42))
	require.NoError(t, writePIDFile(path, 43)) // replaced whole
	pid, err := ReadPIDFile(path)
	require.NoError(t, err)
	assert.Equal(t, 43, pid)
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left")

	r := &restarter{cfg: Config{PIDFile: path}, log: slog.New(slog.DiscardHandler)}
	r.removePIDFile()
	assert.FileExists(t, path, "names another process: left alone")
	require.NoError(t, writePIDFile(path, os.Getpid()))
	r.removePIDFile()
	assert.NoFileExists(t, path)

	require.NoError(t, os.WriteFile(path, []byte("x\n"), 0o644))
	_, err = ReadPIDFile(path)
	assert.ErrorContains(t, err, "not a process ID")
}

// logWatch is where a test's logger writes: it keeps the text and lets the
// test wait for a line.
type logWatch struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogWatch() *logWatch { return &logWatch{changed: make(chan struct{})} }

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.changed)
	w.changed = make(chan struct{})
	return w.buf.Write(p)
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// wait waits for a record containing s and returns that line.
func (w *logWatch) wait(t *testing.T, s string) string {
	t.Helper()
	timeout := time.After(bound)
	for {
		w.mu.Lock()
		text, changed := w.buf.String(), w.changed
		w.mu.Unlock()
		for line := range strings.Lines(text) {
			if strings.Contains(line, s) {
				return line
			}
		}
		select {
		case <-changed:
		case <-timeout:
			require.FailNow(t, "no log line with "+s, text)
		}
	}
}

// field returns the value of key= in a text log line.
func field(line, key string) string {
	_, rest, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	return v
}

// oldServer runs Serve for an echo server on 127.0.0.1:0, as the first
// process of a program would.
type oldServer struct {
	srv    *reactor.Server
	logs   *logWatch
	stop   chan os.Signal
	hup    chan os.Signal
	served chan error
}

func startOld(t *testing.T, reusePort bool, pidFile string, readyTimeout time.Duration) *oldServer {
	t.Helper()
	o := &oldServer{logs: newLogWatch(), stop: make(chan os.Signal, 2), hup: make(chan os.Signal, 1), served: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(o.logs, nil))
	srv, err := reactor.NewServer("127.0.0.1:0", echo(), reactor.WithLoops(1), reactor.WithReusePort(reusePort), reactor.WithLogger(log))
	require.NoError(t, err)
	o.srv = srv
	cfg := Config{ReusePort: reusePort, PIDFile: pidFile, ShutdownTimeout: bound, ReadyTimeout: readyTimeout, Log: log}
	go func() { o.served <- Serve(srv, &Inheritance{}, cfg, o.stop, o.hup) }()
	return o
}

// served waits for Serve to return.
func (o *oldServer) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-o.served:
		return err
	case <-time.After(bound):
		require.FailNow(t, "Serve did not return", o.logs.String())
	}
	return nil
}

func echoOne(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, bound)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(bound)))
	_, err = io.WriteString(c, "ping")
	require.NoError(t, err)
	b := make([]byte, 4)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(b))
}

// stopSuccessor stops a successor by SIGTERM and reaps it: after Serve
// released it, this process is still its parent.
func stopSuccessor(t *testing.T, pid int) {
	t.Helper()
	require.NoError(t, unix.Kill(pid, unix.SIGTERM))
	var ws unix.WaitStatus
	waited := make(chan error, 1)
	go func() {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		waited <- err
	}()
	select {
	case err := <-waited:
		require.NoError(t, err)
	case <-time.After(bound):
		_ = unix.Kill(pid, unix.SIGKILL) // do not leave it behind
		<-waited
		require.FailNow(t, "the successor did not stop")
	}
	assert.True(t, ws.Exited(), "status %v", ws)
	assert.Equal(t, 0, ws.ExitStatus())
}

// TestServeRestarts: on SIGHUP, Serve starts a successor (this test binary,
// see successorMain), waits until it serves, shuts the old server down and
// returns nil; the successor then serves the same address, and the PID file
// names it.
func TestServeRestarts(t *testing.T) {
	for _, reusePort := range []bool{false, true} {
		t.Run(map[bool]string{false: "handover", true: "reuseport"}[reusePort], func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			t.Setenv(envPIDFile, pidFile)
			t.Setenv(envReusePort, map[bool]string{false: "", true: "1"}[reusePort])
			o := startOld(t, reusePort, pidFile, 0)
			addr := o.srv.Addr().String()
			echoOne(t, addr) // served: Serve has written the PID file
			pid, err := ReadPIDFile(pidFile)
			require.NoError(t, err)
			assert.Equal(t, os.Getpid(), pid)

			o.hup <- syscall.SIGHUP
			require.NoError(t, o.result(t))
			line := o.logs.wait(t, "restart: handed over")
			succ, err := strconv.Atoi(field(line, "successor_pid"))
			require.NoError(t, err, line)
			defer stopSuccessor(t, succ)
			assert.Contains(t, o.logs.String(), `msg="shutting down" signal=hangup`)

			pid, err = ReadPIDFile(pidFile)
			require.NoError(t, err)
			assert.Equal(t, succ, pid, "the successor wrote its PID")
			echoOne(t, addr) // the successor serves, on the same port
		})
	}
}

// TestServeRestartFails: a successor that exits, or never reports, is
// killed and reaped, and the old server goes on serving (and can restart
// again later); a stop signal during a restart abandons it.
func TestServeRestartFails(t *testing.T) {
	for _, tc := range []struct {
		behave string
		wait   time.Duration // Config.ReadyTimeout
		want   string        // in the error logged
	}{
		{"fail", bound, "exited, or closed its pipe, without serving"},
		// The successor never reports: the outcome does not depend on how
		// short the wait is.
		{"hang", 100 * time.Millisecond, "did not serve in time"},
	} {
		t.Run(tc.behave, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			t.Setenv(envBehave, tc.behave)
			o := startOld(t, false, pidFile, tc.wait)
			addr := o.srv.Addr().String()
			echoOne(t, addr)

			o.hup <- syscall.SIGHUP
			line := o.logs.wait(t, "restart: the successor failed")
			assert.Contains(t, line, tc.want)
			echoOne(t, addr) // still served, by the old server
			pid, err := ReadPIDFile(pidFile)
			require.NoError(t, err)
			assert.Equal(t, os.Getpid(), pid)

			o.stop <- syscall.SIGTERM
			require.NoError(t, o.result(t))
			assert.NoFileExists(t, pidFile, "the last process removes it")
			assert.NotContains(t, o.logs.String(), "handed over")
		})
	}
	t.Run("stop during a restart", func(t *testing.T) {
		t.Setenv(envBehave, "hang")
		o := startOld(t, false, "", bound)
		echoOne(t, o.srv.Addr().String())
		o.hup <- syscall.SIGHUP
		o.logs.wait(t, "restart: starting a successor")
		o.stop <- syscall.SIGTERM
		require.NoError(t, o.result(t))
		logs := o.logs.String()
		assert.Contains(t, logs, "abandoning it")
		assert.Contains(t, logs, "context canceled")
		assert.Contains(t, logs, `msg="shutting down" signal=terminated`)
	})
}

// A successor whose predecessor is gone (its pipe's read end closed) says
// so and serves all the same: nobody else may be serving.
func TestServePredecessorGone(t *testing.T) {
	rp, wp, err := os.Pipe()
	require.NoError(t, err)
	require.NoError(t, rp.Close())
	logs := newLogWatch()
	log := slog.New(slog.NewTextHandler(logs, nil))
	srv, err := reactor.NewServer("127.0.0.1:0", echo(), reactor.WithLoops(1), reactor.WithLogger(log))
	require.NoError(t, err)
	stop := make(chan os.Signal, 2)
	served := make(chan error, 1)
	go func() {
		served <- Serve(srv, &Inheritance{ready: wp}, Config{ShutdownTimeout: bound, Log: log}, stop, nil)
	}()
	echoOne(t, srv.Addr().String())
	assert.Contains(t, logs.String(), "could not tell the predecessor")
	stop <- syscall.SIGTERM
	select {
	case err := <-served:
		assert.NoError(t, err)
	case <-time.After(bound):
		require.FailNow(t, "Serve did not return")
	}
}
