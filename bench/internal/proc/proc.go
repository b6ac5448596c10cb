// Package proc holds what the bench harnesses do with processes: start a
// server pinned to CPUs and wait until it listens, stop it by its pid, run
// a client to completion, read a process's and the machine's CPU time, and
// wait for a lull in the machine's other load. Everything binds loopback
// only and is bounded in time.
package proc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Pinned prefixes argv with taskset when cpus is set.
func Pinned(cpus string, argv []string) []string {
	if cpus == "" {
		return argv
	}
	return append([]string{"taskset", "-c", cpus}, argv...)
}

// Tail is an io.Writer that keeps the last Max bytes written, for the end
// of a server's log in an error message. Safe for the one writer exec gives
// it and a reader after the process is gone.
type Tail struct {
	mu  sync.Mutex // guards buf
	buf []byte
	Max int
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.Max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.Max:]...)
	}
	return len(p), nil
}

func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

// Process is a started server process, owned by the harness goroutine that
// started it.
type Process struct {
	Name   string
	Cmd    *exec.Cmd
	Log    *Tail
	exited chan struct{} // closed when the process has been reaped
	Err    error         // Wait's result; read only after it has exited
}

// Start starts argv (with env added to the environment) in a process group
// of its own, so a Ctrl-C to the harness reaches the harness first and the
// harness stops the server by its pid. Under taskset, which execs the
// server, the pid is the server's own.
func Start(name string, argv, env []string) (*Process, error) {
	p := &Process{Name: name, Log: &Tail{Max: 4096}, exited: make(chan struct{})}
	p.Cmd = exec.Command(argv[0], argv[1:]...)
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.Err = p.Cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// WaitListening returns once addr accepts connections, or an error (having
// stopped the process) if the process exits or addr does not listen within
// timeout. It polls: a server says it listens only by listening.
func (p *Process) WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = c.Close() // only a probe
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before listening (%v): %s", p.Name, p.Err, p.Log.String())
		case <-time.After(10 * time.Millisecond): // poll interval
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("%s did not listen on %s within %v: %s", p.Name, addr, timeout, p.Log.String())
		}
	}
}

// Alive reports whether the process is still running.
func (p *Process) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Pid returns the process's id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Stop sends SIGTERM to the process, then SIGKILL if it has not exited
// within three seconds, and waits for it to be reaped.
func (p *Process) Stop() {
	if !p.Alive() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM) // it may exit on its own meanwhile
	select {
	case <-p.exited:
		return
	case <-time.After(3 * time.Second):
	}
	_ = p.Cmd.Process.Kill() // as above
	<-p.exited
}

// PortFree fails when something already listens on addr: its answers would
// be taken for the server's.
func PortFree(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		_ = c.Close() // only a probe
		return fmt.Errorf("something already listens on %s", addr)
	}
	return nil // refused (or unreachable): nobody answers there
}

// RunClient runs a client pinned to cpus, bounded by limit, and returns its
// standard output and the CPU seconds it used (user+system, from its
// rusage).
func RunClient(cpus string, argv, env []string, limit time.Duration) ([]byte, float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	name := filepath.Base(argv[0])
	argv = Pinned(cpus, argv)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var cpu float64
	if cmd.ProcessState != nil {
		cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 600 {
			msg = msg[len(msg)-600:]
		}
		err = fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return stdout.Bytes(), cpu, err
}

// LastJSONLine returns the last line of out that starts with '{'. The load
// generator exits 1 when it found errors but still prints its line.
func LastJSONLine(out []byte) []byte {
	var last []byte
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 && l[0] == '{' && json.Valid(l) {
			last = append(last[:0], l...)
		}
	}
	return last
}

// CPU returns utime+stime of pid in seconds, from /proc/<pid>/stat.
func CPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted from after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64) // field 14
	st, err2 := strconv.ParseFloat(f[12], 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (ut + st) / ClockTicks, nil
}

// ClockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports (sysconf(_SC_CLK_TCK) has reported 100 there since
// the value was frozen for user-space compatibility).
const ClockTicks = 100

// MachineBusy returns the machine's busy CPU seconds so far, from the first
// line of /proc/stat: all but idle and iowait (user, nice, system, irq,
// softirq and steal — time the hypervisor ran someone else: noise as much
// as a neighbour process is).
func MachineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat")
	}
	busy := 0.0
	for i, s := range f[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, err
		}
		switch i {
		case 3, 4: // idle, iowait
		case 8, 9: // guest, guest_nice: already counted in user and nice
		default:
			busy += v / ClockTicks
		}
	}
	return busy, nil
}

// WaitQuiet samples the machine's busy CPU (nothing of ours runs between
// runs) over 500 ms windows until it is below pct percent of one core or
// limit has passed, and returns the last sample. On a shared machine other
// work comes in bursts; starting a run in a lull makes rounds comparable.
// The wait is bounded so a run keeps its length. It returns -1 when it did
// not sample.
func WaitQuiet(pct float64, limit time.Duration) float64 {
	if limit <= 0 {
		return -1
	}
	deadline := time.Now().Add(limit)
	for {
		a, err1 := MachineBusy()
		t := time.Now()
		time.Sleep(500 * time.Millisecond) // a sampling window, not a wait for an event
		b, err2 := MachineBusy()
		if err1 != nil || err2 != nil {
			return -1
		}
		bg := 100 * (b - a) / time.Since(t).Seconds()
		if bg < pct || time.Now().After(deadline) {
			return bg
		}
	}
}
