// Command idle measures what idle connections cost a server in memory.
//
// It reads the server's resident set size (VmRSS in /proc/<pid>/status, the
// pid given by -pid) once it has settled, opens -n connections to -addr,
// sends one byte on each and waits for its echo (so the server has accepted
// and set up every connection), lets the server settle again, reads VmRSS
// and VmHWM once more, and prints one JSON line: RSS before, after, and
// (after-before)/connections in KiB. Then it resets every connection and
// exits.
//
// Source addresses: one client address has about 28 000 ephemeral ports
// (net.ipv4.ip_local_port_range), too few for tens of thousands of
// connections, so the connections bind before connecting to 127.0.0.2,
// 127.0.0.3, ... in turn, -per-src connections each. They are closed with
// SO_LINGER 0 (a reset) so that no TIME_WAIT is left holding those ports for
// the next run.
//
// With -tls each connection first runs a TLS handshake (crypto/tls, the
// certificate not verified: the servers make theirs at start), and the byte
// goes through TLS: what is measured is an idle TLS connection after its
// handshake.
//
// Descriptors: the Go runtime raises this process's soft RLIMIT_NOFILE to the
// hard limit by itself; the server must do the same (the C server calls
// setrlimit). With a hard limit of 20 000, 19 000 connections fit on both
// sides.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type result struct {
	Tool         string  `json:"tool"`
	Addr         string  `json:"addr"`
	Conns        int     `json:"conns"`
	Opened       int     `json:"opened"`
	Errors       int     `json:"errors"`
	Error        string  `json:"error"`
	ConnectS     float64 `json:"connect_s"`
	RSSBeforeKiB int64   `json:"rss_before_kib"`
	RSSAfterKiB  int64   `json:"rss_after_kib"`
	HWMKiB       int64   `json:"hwm_kib"`
	PerConnKiB   float64 `json:"per_conn_kib"`
}

// procStatus reads the named fields (in kB) from /proc/<pid>/status.
func procStatus(pid int, fields ...string) (map[string]int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make(map[string]int64, len(fields))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for _, want := range fields {
			if name == want {
				v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %q: %w", name, rest, err)
				}
				out[name] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, want := range fields {
		if _, ok := out[want]; !ok {
			return nil, fmt.Errorf("no %s in /proc/%d/status", want, pid)
		}
	}
	return out, nil
}

// settledRSS samples VmRSS every interval until two samples in a row differ
// by less than 1 % (the server has finished reacting), or until limit has
// passed, and returns the last sample.
func settledRSS(pid int, interval, limit time.Duration) (int64, error) {
	deadline := time.Now().Add(limit)
	prev := int64(-1)
	for {
		m, err := procStatus(pid, "VmRSS")
		if err != nil {
			return 0, err
		}
		cur := m["VmRSS"]
		if prev >= 0 && abs(cur-prev)*100 < max64(cur, 1) {
			return cur, nil
		}
		if time.Now().After(deadline) {
			return cur, nil
		}
		prev = cur
		time.Sleep(interval) // sampling period: there is no event to wait for
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// srcIP returns the source address of connection i: 127.0.0.2 for the first
// perSrc connections, 127.0.0.3 for the next, and so on.
func srcIP(i, perSrc int) net.IP {
	k := 2 + i/perSrc
	return net.IPv4(127, byte(k>>16), byte(k>>8), byte(k))
}

// noPortAtBind sets IP_BIND_ADDRESS_NO_PORT before the dialer binds the
// source address: without it bind(2) picks the port by scanning the range for
// one no other socket holds, which grows slow as thousands are taken, and the
// port must be unique per address alone; with it connect(2) picks the port
// and only the whole 4-tuple must be unique (ip(7)).
func noPortAtBind(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// open dials one connection from src (over TLS with useTLS), sends one
// byte and reads its echo. It returns the TCP connection underneath.
func open(addr string, src net.IP, timeout time.Duration, useTLS bool) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: timeout, Control: noPortAtBind}
	c, err := d.Dial("tcp4", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	var conn net.Conn = tc
	if useTLS {
		conn = tls.Client(tc, &tls.Config{InsecureSkipVerify: true})
	}
	if err := echoOne(conn, timeout); err != nil {
		_ = tc.SetLinger(0)
		_ = tc.Close() // already failing
		return nil, err
	}
	return tc, nil
}

func echoOne(c net.Conn, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if b[0] != 'x' {
		return fmt.Errorf("echo returned %q, want %q", b[0], 'x')
	}
	return c.SetDeadline(time.Time{})
}

// stillOpen peeks at c without blocking (recv with MSG_PEEK|MSG_DONTWAIT):
// EAGAIN is the only answer of an open, quiet connection.
func stillOpen(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var (
		n    int
		perr error
		b    [1]byte
	)
	if err := rc.Control(func(fd uintptr) {
		n, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}); err != nil {
		return err
	}
	switch {
	case errors.Is(perr, syscall.EAGAIN):
		return nil
	case perr != nil:
		return perr
	case n == 0:
		return io.EOF
	default:
		return errors.New("unexpected bytes from the server")
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "server address")
	n := flag.Int("n", 10000, "connections to open")
	pid := flag.Int("pid", 0, "server pid whose RSS is read (required)")
	perSrc := flag.Int("per-src", 20000, "connections per source address (127.0.0.2, .3, ...)")
	workers := flag.Int("workers", 64, "connections being opened at once")
	timeout := flag.Duration("timeout", 5*time.Second, "limit for one connect and its echo")
	settleMax := flag.Duration("settle", 3*time.Second, "longest wait for the server's RSS to settle")
	useTLS := flag.Bool("tls", false, "connect over TLS (handshake, then the byte through TLS)")
	flag.Parse()
	if *pid <= 0 || *n < 1 || *perSrc < 1 || *workers < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*addr, *n, *pid, *perSrc, *workers, *timeout, *settleMax, *useTLS); err != nil {
		fmt.Fprintln(os.Stderr, "idle:", err)
		os.Exit(1)
	}
}

func run(addr string, n, pid, perSrc, workers int, timeout, settleMax time.Duration, useTLS bool) error {
	const sample = 200 * time.Millisecond
	res := result{Tool: "idle", Addr: addr, Conns: n}
	before, err := settledRSS(pid, sample, settleMax)
	if err != nil {
		return err
	}
	res.RSSBeforeKiB = before

	conns := make([]*net.TCPConn, n)
	var (
		mu       sync.Mutex // guards errCount and firstErr
		errCount int
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan int)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range next {
				c, err := open(addr, srcIP(i, perSrc), timeout, useTLS)
				if err != nil {
					mu.Lock()
					errCount++
					if firstErr == nil {
						firstErr = fmt.Errorf("conn %d: %w", i, err)
					}
					mu.Unlock()
					continue
				}
				conns[i] = c // each index is written by one worker only
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	res.ConnectS = time.Since(start).Seconds()
	res.Errors = errCount
	if firstErr != nil {
		res.Error = firstErr.Error()
	}
	for _, c := range conns {
		if c != nil {
			res.Opened++
		}
	}

	after, err := settledRSS(pid, sample, settleMax)
	if err != nil {
		return err
	}
	hwm, err := procStatus(pid, "VmHWM")
	if err != nil {
		return err
	}
	res.RSSAfterKiB, res.HWMKiB = after, hwm["VmHWM"]
	if res.Opened > 0 {
		res.PerConnKiB = float64(after-before) / float64(res.Opened)
	}

	// Every connection must still be open: a server that dropped idle
	// connections would look cheap. A peek that would block means open and
	// quiet; end of stream, a reset or unexpected bytes count as errors.
	for i, c := range conns {
		if c == nil {
			continue
		}
		if err := stillOpen(c); err != nil {
			res.Errors++
			if res.Error == "" {
				res.Error = fmt.Sprintf("conn %d after the idle wait: %v", i, err)
			}
		}
		_ = c.SetLinger(0)
		_ = c.Close() // a reset; nothing to report on failure
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
