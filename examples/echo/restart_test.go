//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/examples/internal/extest"
	"github.com/tcpreactor/reactor/examples/internal/restart"
	"github.com/tcpreactor/reactor/internal/kernel"
	"github.com/tcpreactor/reactor/internal/nstest"
)

// restarts is how many times each variant restarts under load.
const restarts = 3

// TestRestartUnderLoad restarts the echo server three times by SIGHUP
// while a load generator runs against it, once handing the listening
// socket over and once with -reuseport, and checks that no connection
// failed (none refused, none reset) and that every byte sent was echoed
// exactly once, in order.
//
// Each variant runs in private user, network and PID namespaces when it
// can (package nstest): the SO_REUSEPORT one needs net.ipv4.tcp_migrate_req
// set to 1, which must not be done to the host, and the PID namespace
// kills every server process left when the test ends, however it ends.
// Without namespaces, the hand-over runs on the host (cleaning up by PID),
// and so does the SO_REUSEPORT variant if the host has tcp_migrate_req=1;
// otherwise it fails in CI and is skipped elsewhere.
func TestRestartUnderLoad(t *testing.T) {
	for _, v := range []struct {
		name      string
		reusePort bool
	}{
		{"handover", false},
		{"reuseport", true},
	} {
		t.Run(v.name, func(t *testing.T) {
			sysctls := map[string]string{}
			if v.reusePort {
				if _, err := kernel.ReusePortMigrates(); errors.Is(err, os.ErrNotExist) {
					t.Skip("Linux before 5.14: closing a SO_REUSEPORT listener resets its queue")
				}
				sysctls["net/ipv4/tcp_migrate_req"] = "1"
			}
			if nstest.Inside() {
				if err := nstest.Setup(sysctls); err != nil {
					t.Skip(err)
				}
				restartUnderLoad(t, v.reusePort)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			out, err := nstest.Run(ctx, "^TestRestartUnderLoad$/^"+v.name+"$")
			if errors.Is(err, nstest.ErrUnavailable) {
				if on, _ := kernel.ReusePortMigrates(); v.reusePort && !on {
					if os.Getenv("CI") == "true" {
						t.Fatalf("%v, and the host has net.ipv4.tcp_migrate_req=0: CI must allow user namespaces or set it to 1", err)
					}
					t.Skipf("%v, and the host has net.ipv4.tcp_migrate_req=0", err)
				}
				t.Logf("%v: running on the host", err)
				restartUnderLoad(t, v.reusePort)
				return
			}
			t.Log(out)
			require.NoError(t, err)
			assert.Contains(t, out, "--- PASS: TestRestartUnderLoad/"+v.name, "the test ran in the namespaces")
		})
	}
}

// restartUnderLoad is one variant of TestRestartUnderLoad.
func restartUnderLoad(t *testing.T, reusePort bool) {
	pidFile := filepath.Join(t.TempDir(), "echo.pid")
	args := []string{"-addr", "127.0.0.1:0", "-loops", "2", "-quiet", "-pidfile", pidFile}
	if reusePort {
		args = append(args, "-reuseport")
	}
	f := startFleet(t, args...)
	addr := field(f.waitLine(t, "echo server listening"), "addr")
	require.NotEmpty(t, addr)

	l := startLoad(addr, 16, 8)
	defer l.end()
	l.exchanges.waitFor(t, 200) // served: the PID file is written
	pid := readPID(t, pidFile)

	for round := 1; round <= restarts; round++ {
		sent := time.Now()
		require.NoError(t, unix.Kill(pid, unix.SIGHUP))
		serving := f.waitLine(t, fmt.Sprintf(`msg="restart: the successor serves; shutting down" pid=%d `, pid))
		handed := f.waitLine(t, fmt.Sprintf(`msg="restart: handed over" pid=%d `, pid))
		succ, err := strconv.Atoi(field(handed, "successor_pid"))
		require.NoError(t, err, handed)
		f.add(succ)
		ws := f.waitExit(t, pid)
		exited := time.Since(sent)
		require.True(t, ws.Exited() && ws.ExitStatus() == 0, "process %d: %v\n%s", pid, ws, f.log())
		assert.Equal(t, succ, readPID(t, pidFile), "the PID file names the successor")
		t.Logf("restart %d: successor %d serving %s after SIGHUP; process %d drained in %s and exited 0 %v after SIGHUP",
			round, succ, field(serving, "ready_after"), pid, field(handed, "drained_after"), exited.Round(time.Millisecond))
		pid = succ
		l.exchanges.waitFor(t, l.exchanges.get()+200) // the successor serves the load
	}
	l.end()

	require.NoError(t, unix.Kill(pid, unix.SIGTERM))
	ws := f.waitExit(t, pid)
	assert.True(t, ws.Exited() && ws.ExitStatus() == 0, "process %d: %v", pid, ws)
	assert.NoFileExists(t, pidFile, "the last process removes it")
	log := f.log()
	assert.NotContains(t, log, "level=ERROR")
	if reusePort {
		assert.NotContains(t, log, "SO_REUSEPORT listeners resets", "tcp_migrate_req=1: the drain is lossless")
	}

	t.Logf("load: %d connections, %d messages (%d bytes) echoed; %d connections closed by a draining server with %d bytes not yet echoed, sent again on a new connection; %d failed",
		l.conns.Load(), l.exchanges.get(), l.echoed.Load(), l.early.Load(), l.resent.Load(), l.failed.Load())
	assert.Zero(t, l.failed.Load(), "failures: %v", l.failures())
	assert.Equal(t, l.generated.Load(), l.echoed.Load(), "every byte sent was echoed once")
}

// fleet is the echo processes of one test: the first, started by the
// test, and each successor, started by its predecessor. They share one
// stderr pipe, read as one log. This process reaps them (it is their
// subreaper, or the init of their PID namespace) and kills what is left
// when the test ends.
type fleet struct {
	*extest.Log
	rp *os.File

	mu   sync.Mutex
	pids map[int]bool // every server process seen; true once reaped
}

func startFleet(t *testing.T, args ...string) *fleet {
	t.Helper()
	if !nstest.Inside() {
		// Successors outlive their parents: make them this process's
		// children then, so that it can reap (and, at worst, kill) them.
		undo, err := extest.Subreaper()
		require.NoError(t, err)
		t.Cleanup(undo)
	}
	rp, wp, err := os.Pipe()
	require.NoError(t, err)
	cmd := extest.Command(args...)
	// A race-enabled process sleeps a second at exit (atexit_sleep_ms),
	// which only makes each restart slower to watch.
	cmd.Env = append(cmd.Env, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.Stderr = wp
	err = cmd.Start()
	require.NoError(t, wp.Close())
	if err != nil {
		_ = rp.Close()
		require.NoError(t, err)
	}
	f := &fleet{Log: extest.ReadLog(rp), rp: rp, pids: map[int]bool{cmd.Process.Pid: false}}
	_ = cmd.Process.Release() // reaped by PID, with wait4, like its successors
	t.Cleanup(f.cleanup)
	return f
}

var successorPID = regexp.MustCompile(`\bsuccessor_pid=(\d+)`)

// add records a server process to reap.
func (f *fleet) add(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, seen := f.pids[pid]; !seen {
		f.pids[pid] = false
	}
}

func (f *fleet) log() string { return strings.Join(f.Lines(), "\n") }

// waitLine waits for a line of the processes' log that contains s.
func (f *fleet) waitLine(t *testing.T, s string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	line, err := f.WaitLine(ctx, s)
	require.NoError(t, err)
	return line
}

// waitExit reaps pid, a child of this process, and returns its status; if
// it has not exited within the bound, it is killed and the test fails.
func (f *fleet) waitExit(t *testing.T, pid int) unix.WaitStatus {
	t.Helper()
	ws, err := f.reap(pid, bound)
	require.NoError(t, err, f.log())
	return ws
}

// reap is extest.Reap, noting pid as reaped.
func (f *fleet) reap(pid int, d time.Duration) (unix.WaitStatus, error) {
	ws, err := extest.Reap(pid, d)
	if !errors.Is(err, unix.ECHILD) {
		f.mu.Lock()
		f.pids[pid] = true
		f.mu.Unlock()
	}
	return ws, err
}

// cleanup kills and reaps every server process not reaped yet, and any
// other child this process adopted, then waits for the log to end.
func (f *fleet) cleanup() {
	for _, line := range f.Lines() { // successors the test did not get to
		if m := successorPID.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[1]) // digits
			f.add(pid)
		}
	}
	f.mu.Lock()
	var left []int
	for pid, reaped := range f.pids {
		if !reaped {
			left = append(left, pid)
		}
	}
	f.mu.Unlock()
	if !nstest.Inside() {
		left = append(left, adopted(left)...)
	}
	for _, pid := range left {
		_ = unix.Kill(pid, unix.SIGKILL) // a test that failed: stop it now
	}
	for _, pid := range left {
		_, _ = f.reap(pid, bound)
	}
	_ = f.rp.Close() // ends the reader if a process we do not know holds the pipe
	_, _ = f.Wait()
}

// adopted lists this process's children other than known: successors that
// never got into the log, adopted as their parent died.
func adopted(known []int) []int {
	var pids []int
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(s); err == nil && !slices.Contains(known, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

var fieldRE = regexp.MustCompile(`^[^ ]+`)

// field returns the value of key= in a text log line.
func field(line, key string) string {
	_, rest, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return ""
	}
	return fieldRE.FindString(rest)
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	pid, err := restart.ReadPIDFile(path)
	require.NoError(t, err)
	return pid
}

// counter counts, and lets a test wait until the count reaches a number.
type counter struct {
	mu      sync.Mutex
	n       int64
	waiters map[chan struct{}]int64
}

func (c *counter) add(d int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	for ch, target := range c.waiters {
		if c.n >= target {
			close(ch)
			delete(c.waiters, ch)
		}
	}
}

func (c *counter) get() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// waitFor waits until the count is at least target.
func (c *counter) waitFor(t *testing.T, target int64) {
	t.Helper()
	c.mu.Lock()
	if c.n >= target {
		c.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	if c.waiters == nil {
		c.waiters = map[chan struct{}]int64{}
	}
	c.waiters[ch] = target
	c.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(bound):
		require.FailNow(t, fmt.Sprintf("the load made %d exchanges, not %d", c.get(), target))
	}
}

// load is the load generator: long workers keep one connection and send
// message after message on it, reading each echo back; short workers make
// a connection per message, half-close it and read the echo to EOF. Every
// message is random bytes from the worker's own seed, and every byte that
// comes back is checked against what was sent. A server that is draining
// closes its connections (the client reads EOF, possibly in the middle of
// an echo): the worker then sends what was not echoed again, on a new
// connection, so that across connections each byte is echoed exactly once.
// Anything else is a failure: a refused connection, a reset, a wrong,
// missing or extra byte, a timeout.
type load struct {
	addr string
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	exchanges counter      // messages echoed whole
	conns     atomic.Int64 // connections made
	early     atomic.Int64 // connections that ended (EOF) with part of a message unechoed
	resent    atomic.Int64 // bytes sent again after such an EOF
	generated atomic.Int64 // bytes of the messages made
	echoed    atomic.Int64 // bytes echoed and checked
	failed    atomic.Int64

	mu   sync.Mutex
	errs []string // the first failures
}

func startLoad(addr string, long, short int) *load {
	l := &load{addr: addr, stop: make(chan struct{})}
	for i := range long + short {
		l.wg.Go(func() { l.worker(i, i < long) })
	}
	return l
}

// end stops the workers at their next message boundary (with nothing
// unechoed) and waits for them. Repeated calls wait for the same end.
func (l *load) end() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *load) fail(format string, args ...any) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

func (l *load) failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// errEOF is an exchange cut short by the server's orderly close.
var errEOF = errors.New("closed by the server")

func (l *load) worker(id int, long bool) {
	rng := rand.New(rand.NewPCG(uint64(id), 0x5eed))
	var c net.Conn
	defer func() {
		if c != nil {
			_ = c.Close()
		}
	}()
	var pending []byte // the part of the current message not yet echoed
	for {
		if len(pending) == 0 {
			select {
			case <-l.stop:
				return
			default:
			}
			pending = make([]byte, 1+rng.IntN(16<<10))
			for i := range pending {
				pending[i] = byte(rng.Uint32())
			}
			l.generated.Add(int64(len(pending)))
		}
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp", l.addr, bound); err != nil {
				l.fail("worker %d: dial: %v", id, err)
				return
			}
			l.conns.Add(1)
		}
		n, err := exchange(c, pending, !long)
		l.echoed.Add(int64(n))
		pending = pending[n:]
		switch {
		case err == nil:
			l.exchanges.add(1)
			if !long {
				_ = c.Close()
				c = nil
			}
		case errors.Is(err, errEOF):
			l.early.Add(1)
			l.resent.Add(int64(len(pending)))
			_ = c.Close()
			c = nil
		default:
			l.fail("worker %d: %v", id, err)
			return
		}
	}
}

// exchange sends msg on c (then half-closes, for a short connection) and
// reads its echo back. It returns how many bytes of the echo arrived, all
// checked; errEOF if the server closed before the rest.
func exchange(c net.Conn, msg []byte, short bool) (int, error) {
	if err := c.SetDeadline(time.Now().Add(bound)); err != nil {
		return 0, err
	}
	if _, err := c.Write(msg); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if short {
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return 0, fmt.Errorf("shutdown: %w", err)
		}
	}
	back := make([]byte, len(msg))
	n, err := io.ReadFull(c, back)
	if i := mismatch(back[:n], msg); i >= 0 {
		return i, fmt.Errorf("byte %d of %d echoed wrong", i, len(msg))
	}
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return n, errEOF
	case err != nil:
		return n, fmt.Errorf("read after %d of %d bytes: %w", n, len(msg), err)
	}
	if short {
		// The whole echo came back; the server's FIN must follow, alone.
		var extra [1]byte
		if m, err := c.Read(extra[:]); m > 0 || err != io.EOF {
			return n, fmt.Errorf("after the echo: %d more bytes, %v", m, err)
		}
	}
	return n, nil
}

// mismatch returns the index of the first byte where got differs from
// want, or -1.
func mismatch(got, want []byte) int {
	for i := range got {
		if got[i] != want[i] {
			return i
		}
	}
	return -1
}
