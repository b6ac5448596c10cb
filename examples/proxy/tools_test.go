package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/examples/internal/extest"
)

// These tests put the proxy in front of software nobody here wrote:
// redis-server, driven by redis-benchmark, and iperf3. They need the Debian
// packages redis-server, redis-tools and iperf3. Without them a test skips,
// saying so, except in CI (the CI environment variable is "true"), where a
// missing tool is a failure: CI installs them.

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader on two
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startServer runs an external server and returns once a line of its
// output contains ready (or fails the test after testTimeout, or if it
// exits first). The server is stopped by its PID when the test ends:
// SIGTERM, then SIGKILL if it has not exited within 10 s.
func startServer(t *testing.T, ready, prog string, args ...string) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(t, cmd.Start(), "starting %s", prog)
	var out lockedBuffer
	seen := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			fmt.Fprintln(&out, sc.Text())
			if strings.Contains(sc.Text(), ready) {
				once.Do(func() { close(seen) })
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	exited := make(chan error, 1)
	go func() {
		exited <- cmd.Wait()
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		<-scanned
	})
	select {
	case <-seen:
	case err := <-exited:
		exited <- err // for the cleanup
		t.Fatalf("%s exited before it was ready (%v):\n%s", prog, err, out.String())
	case <-time.After(testTimeout):
		t.Fatalf("%s not ready within %v:\n%s", prog, testTimeout, out.String())
	}
}

// runTool runs a client program to completion, bounded by two minutes, and
// returns its output; it fails the test if the program fails.
func runTool(t *testing.T, prog string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", prog, strings.Join(args, " "), out)
	return out
}

func TestProxyRedis(t *testing.T) {
	server := extest.Need(t, "redis-server", "redis-server")
	bench := extest.Need(t, "redis-benchmark", "redis-tools")
	port := freePort(t)
	startServer(t, "Ready to accept connections", server,
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--daemonize", "no", "--loglevel", "notice")
	proxy := startProxy(t, "127.0.0.1:"+port, reactor.WithLoops(2), reactor.WithHighWaterMark(64<<10))
	host, proxyPort, err := net.SplitHostPort(proxy)
	require.NoError(t, err)

	t.Run("values and pipelines arrive intact", func(t *testing.T) { respThroughProxy(t, proxy) })

	n, nPipe := "10000", "100000"
	if testing.Short() {
		n, nPipe = "2000", "20000"
	}
	for _, run := range []struct {
		name string
		args []string
	}{
		{"one request in flight", []string{"-n", n, "-c", "20", "-t", "ping,set,get,incr,lpush,lpop,mset"}},
		{"pipelined 16", []string{"-n", nPipe, "-c", "20", "-P", "16", "-t", "set,get,lpush,lpop"}},
		{"a connection per request", []string{"-n", "2000", "-c", "10", "-k", "0", "-t", "ping,set"}},
		{"100 KB values", []string{"-n", "1000", "-c", "5", "-d", "100000", "-t", "set,get"}},
	} {
		t.Run(run.name, func(t *testing.T) {
			args := append([]string{"-h", host, "-p", proxyPort, "--csv"}, run.args...)
			out := string(runTool(t, bench, args...))
			assert.NotContains(t, strings.ToLower(out), "error", "redis-benchmark reported errors:\n%s", out)
			tests := run.args[slicesIndex(run.args, "-t")+1]
			for _, test := range strings.Split(tests, ",") {
				assert.Contains(t, out, `"`+strings.ToUpper(test), "a result for %s:\n%s", test, out)
			}
			t.Logf("redis-benchmark %s:\n%s", strings.Join(run.args, " "), out)
		})
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// respThroughProxy talks RESP to redis through the proxy: a 1 MiB value
// set and read back, a pipeline of 1000 INCRs answered in order, then QUIT,
// after which redis closes and the proxy must pass the close on.
func respThroughProxy(t *testing.T, proxy string) {
	c, err := net.DialTimeout("tcp", proxy, testTimeout)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	r := bufio.NewReader(c)
	value := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	cmd := func(args ...[]byte) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		return b.Bytes()
	}
	_, err = c.Write(append(cmd([]byte("SET"), []byte("proxy:big"), value), cmd([]byte("GET"), []byte("proxy:big"))...))
	require.NoError(t, err)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "+OK\r\n", line)
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("$%d\r\n", len(value)), line)
	got := make([]byte, len(value)+2)
	_, err = io.ReadFull(r, got)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(value, got[:len(value)]), "the 1 MiB value came back intact")

	var batch []byte
	batch = append(batch, cmd([]byte("DEL"), []byte("proxy:ctr"))...)
	for range 1000 {
		batch = append(batch, cmd([]byte("INCR"), []byte("proxy:ctr"))...)
	}
	_, err = c.Write(batch)
	require.NoError(t, err)
	_, err = r.ReadString('\n') // DEL's count
	require.NoError(t, err)
	for i := 1; i <= 1000; i++ {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf(":%d\r\n", i), line)
	}
	_, err = c.Write(cmd([]byte("QUIT")))
	require.NoError(t, err)
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "+OK\r\n", line)
	_, err = r.ReadByte()
	assert.Equal(t, io.EOF, err, "redis closed after QUIT, and the proxy passed the close on")
}

func TestProxyIperf3(t *testing.T) {
	iperf := extest.Need(t, "iperf3", "iperf3")
	port := freePort(t)
	startServer(t, "Server listening", iperf, "-s", "-p", port, "-B", "127.0.0.1", "--forceflush")
	proxy := startProxy(t, "127.0.0.1:"+port, reactor.WithLoops(2))
	host, proxyPort, err := net.SplitHostPort(proxy)
	require.NoError(t, err)
	for _, dir := range []struct {
		name string
		args []string
	}{
		{"client sends", nil},
		{"server sends", []string{"-R"}},
	} {
		t.Run(dir.name, func(t *testing.T) {
			args := append([]string{"-c", host, "-p", proxyPort, "-t", "2", "-J"}, dir.args...)
			out := runTool(t, iperf, args...)
			var res struct {
				End struct {
					SumSent     struct{ Bytes int64 } `json:"sum_sent"`
					SumReceived struct {
						Bytes         int64
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
				Error string `json:"error"`
			}
			require.NoError(t, json.Unmarshal(out, &res), "%s", out)
			assert.Empty(t, res.Error)
			sent, received := res.End.SumSent.Bytes, res.End.SumReceived.Bytes
			assert.Positive(t, received)
			assert.LessOrEqual(t, received, sent)
			// The receiver stops counting when the test ends; what is then
			// still in the socket buffers and the proxy is not counted.
			assert.Less(t, sent-received, int64(64<<20), "sent %d, received %d", sent, received)
			t.Logf("iperf3 %s through the proxy: %.2f Gbit/s, %d bytes", dir.name, res.End.SumReceived.BitsPerSecond/1e9, received)
		})
	}
}
