// Package haproxytest runs a real HAProxy (Debian's haproxy package) for
// the tests that check reactor against it: the PROXY protocol it sends,
// and load balancing across instances. It starts haproxy in the
// foreground from a generated configuration on loopback ports, waits until
// every frontend accepts connections, and stops it by its PID.
package haproxytest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proxy is a running haproxy.
type Proxy struct {
	cmd  *exec.Cmd
	done chan error // receives Wait's result once
	stop sync.Once
}

// ErrNotInstalled is returned by Start when haproxy is not on PATH (or in
// /usr/sbin, where Debian installs it).
var ErrNotInstalled = errors.New("haproxytest: haproxy is not installed (apt-get install haproxy)")

// Path returns the haproxy binary's path, or ErrNotInstalled.
func Path() (string, error) {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy", nil
	}
	return "", ErrNotInstalled
}

// Require skips the test when haproxy is not installed, or fails it under
// CI (CI=true), which installs haproxy: a skip there would prove nothing.
func Require(tb testing.TB) {
	tb.Helper()
	if _, err := Path(); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
}

// SendProxyConfig is a configuration with two frontends on loopback that
// relay to backend, one with send-proxy (version 1) and one with
// send-proxy-v2 followed by v2Extra (such as "check inter 200ms").
func SendProxyConfig(v1, v2, backend, v2Extra string) string {
	return fmt.Sprintf(`global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout check 5s
frontend v1
    bind %s
    default_backend v1
backend v1
    server s %s send-proxy
frontend v2
    bind %s
    default_backend v2
backend v2
    server s %s send-proxy-v2 %s
`, v1, backend, v2, backend, v2Extra)
}

// Start writes config to a file in dir and runs haproxy on it in the
// foreground, then waits, for at most wait, until a TCP connection to every
// address in frontends succeeds (each attempt is a full connect; nothing
// sleeps). The caller must Stop it.
func Start(dir, config string, frontends []string, wait time.Duration) (*Proxy, error) {
	bin, err := Path()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return nil, err
	}
	// -db: stay in the foreground; -W is not used, so the PID is haproxy's.
	cmd := exec.Command(bin, "-db", "-f", cfg)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("haproxytest: starting haproxy: %w", err)
	}
	p := &Proxy{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(wait)
	for _, addr := range frontends {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			select {
			case werr := <-p.done:
				p.done <- werr // for Stop
				return nil, fmt.Errorf("haproxytest: haproxy exited (%v) before %s listened:\n%s", werr, addr, out.String())
			default:
			}
			if time.Now().After(deadline) {
				p.Stop()
				return nil, fmt.Errorf("haproxytest: %s not listening after %v:\n%s", addr, wait, out.String())
			}
		}
	}
	return p, nil
}

// Stop terminates haproxy (SIGTERM, then SIGKILL after five seconds) and
// waits for it to exit. It may be called more than once.
func (p *Proxy) Stop() {
	p.stop.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM) // fails only if it has exited already
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// FreePorts returns n distinct loopback ports that were free a moment ago:
// each is bound on 127.0.0.1 and released.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
