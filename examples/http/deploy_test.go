//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/examples/internal/extest"
	"github.com/tcpreactor/reactor/examples/internal/restart"
	"github.com/tcpreactor/reactor/internal/haproxytest"
)

// TestDeployGuide follows docs/deploy.md with its docs/haproxy.cfg (the
// addresses replaced by free ports): two instances of this server with
// -proxy behind HAProxy with send-proxy-v2 and health checks; requests
// through HAProxy reach both, which see the client's address; an
// instance put in maintenance on HAProxy's admin socket gets no new
// connection; and a rolling restart, one instance at a time by SIGHUP,
// under a steady load, fails no request.
func TestDeployGuide(t *testing.T) {
	haproxytest.Require(t)
	undo, err := extest.Subreaper() // the successors outlive their parents
	require.NoError(t, err)
	defer undo()
	ctx, cancel := context.WithTimeout(context.Background(), 2*bound)
	defer cancel()
	dir := t.TempDir()
	ports, err := haproxytest.FreePorts(4)
	require.NoError(t, err)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }

	// Two instances, as the guide starts them.
	insts := make([]*instance, 2)
	for i := range insts {
		in := &instance{pidFile: filepath.Join(dir, fmt.Sprintf("r%d.pid", i+1))}
		in.child, _, err = extest.StartListening(ctx, "http server listening",
			"-addr", addr(1+i), "-proxy", "-loops", "1", "-pidfile", in.pidFile)
		require.NoError(t, err)
		insts[i] = in
		defer in.stop(t)
	}

	// HAProxy with the guide's configuration.
	cfgText, err := os.ReadFile("../../docs/haproxy.cfg")
	require.NoError(t, err)
	admin := filepath.Join(dir, "admin.sock")
	cfg := string(cfgText)
	for _, r := range [][2]string{
		{"127.0.0.1:8080", addr(0)}, {"127.0.0.1:8081", addr(1)}, {"127.0.0.1:8082", addr(2)},
		{"127.0.0.1:8404", addr(3)}, {"/run/haproxy-reactor.sock", admin},
	} {
		require.Contains(t, cfg, r[0], "docs/haproxy.cfg changed: update the guide's test")
		cfg = strings.ReplaceAll(cfg, r[0], r[1])
	}
	p, err := haproxytest.Start(dir, cfg, []string{addr(0), addr(3)}, bound)
	require.NoError(t, err)
	defer p.Stop()

	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: bound}
	front := "http://" + addr(0)

	// Both instances answer, through HAProxy, and count PROXY headers.
	pids := map[int]bool{}
	for range 20 {
		v := debugVars(t, cl, front)
		pids[v.PID] = true
		assert.Positive(t, v.Reactor.Proxy.Headers)
		assert.Zero(t, v.Reactor.Proxy.Failed)
	}
	assert.Len(t, pids, 2, "leastconn spreads the connections over both instances")

	// An instance in maintenance gets no new connection.
	adminCmd(t, admin, "set server reactor/r1 state maint")
	r2 := insts[1].pid(t)
	for range 10 {
		assert.Equal(t, r2, debugVars(t, cl, front).PID)
	}
	adminCmd(t, admin, "set server reactor/r1 state ready")

	// A rolling restart under load: one instance at a time.
	var load sync.WaitGroup
	stopLoad := make(chan struct{})
	var mu sync.Mutex
	var ok int
	var failures []string
	for range 4 {
		load.Go(func() {
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				resp, err := cl.Get(front + "/")
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != 200 || string(body) != "Hello, World!") {
						err = fmt.Errorf("status %d, body %q", resp.StatusCode, body)
					}
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					ok++
				}
				mu.Unlock()
			}
		})
	}
	for _, in := range insts {
		in.restart(ctx, t)
	}
	close(stopLoad)
	load.Wait()
	assert.Empty(t, failures, "requests failed during the rolling restart")
	assert.Positive(t, ok)
	t.Logf("rolling restart of 2 instances: %d requests, %d failed", ok, len(failures))
	pids = map[int]bool{}
	for range 20 {
		pids[debugVars(t, cl, front).PID] = true
	}
	assert.Equal(t, map[int]bool{insts[0].pid(t): true, insts[1].pid(t): true}, pids, "the successors serve")
}

// instance is one server process of the guide, and after a restart its
// successor.
type instance struct {
	child   *extest.Child
	pidFile string
	succ    int // the successor's PID, once restarted
}

// pid is the PID of the process serving now, from the PID file.
func (in *instance) pid(t *testing.T) int {
	pid, err := restart.ReadPIDFile(in.pidFile)
	require.NoError(t, err)
	return pid
}

// restart sends SIGHUP and waits until the successor serves and the old
// process has drained and stopped.
func (in *instance) restart(ctx context.Context, t *testing.T) {
	in.succ = hup(ctx, t, in.child)
	_, err := in.child.WaitLine(ctx, "http server stopped")
	require.NoError(t, err)
}

// stop ends the instance: its successor by PID (reaped, as its parent is
// gone), or the process itself.
func (in *instance) stop(t *testing.T) {
	if in.succ != 0 {
		_ = unix.Kill(in.succ, unix.SIGTERM)
		_, _, _ = in.child.Wait()
		_, err := extest.Reap(in.succ, bound)
		assert.NoError(t, err)
		return
	}
	_ = in.child.Signal(syscall.SIGTERM)
	code, log, err := in.child.Wait()
	assert.NoError(t, err, log)
	assert.Equal(t, 0, code, log)
}

// vars is what GET /debug/vars answers.
type vars struct {
	PID     int `json:"pid"`
	Reactor struct {
		Proxy struct {
			Headers, Local, Failed int64
		}
	} `json:"reactor"`
}

func debugVars(t *testing.T, cl *http.Client, base string) vars {
	t.Helper()
	resp, err := cl.Get(base + "/debug/vars")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	var v vars
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	return v
}

// adminCmd sends one command to HAProxy's admin socket; a command it
// accepts answers with an empty line.
func adminCmd(t *testing.T, sock, cmd string) {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, bound)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(bound)))
	_, err = io.WriteString(c, cmd+"\n")
	require.NoError(t, err)
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != io.EOF {
		require.NoError(t, err)
	}
	assert.Empty(t, strings.TrimSpace(reply), "%s: %s", cmd, reply)
}
