// Package restart gives the example servers (echo, http) a restart without
// downtime on SIGHUP: the running process starts its successor, a new
// process of the same program with the same arguments, waits until the
// successor serves, and only then shuts down gracefully (see
// graceful.Run). No connection is refused or reset on the way, and the old
// process exits 0 once its own connections are done.
//
// Two ways, chosen by Config.ReusePort:
//
//   - Hand-over (the default): the old process passes its listening
//     socket(s) to the successor (reactor.Server.ListenerFiles, as
//     descriptors 3, 4, ...), which serves them (reactor.WithListener). The
//     socket never closes, so its queue of pending connections passes to
//     the successor whole. It works everywhere.
//   - SO_REUSEPORT: the successor binds its own sockets on the same address
//     beside the old ones (both servers use reactor.WithReusePort), and the
//     old process's sockets close when it shuts down. Lossless only where
//     the kernel moves the connections still queued in a closing socket to
//     another one of the port: net.ipv4.tcp_migrate_req=1, Linux 5.14 or
//     later (the old server logs a warning otherwise). This is the way for
//     processes that do not start one another, such as two deployments.
//
// Either way the successor reports that it serves over a pipe (its
// descriptor is named in the environment): it writes its process ID and
// closes it. The old process waits for that at most Config.ReadyTimeout;
// a successor that fails or does not report in time is killed, and the
// old process goes on serving.
//
// In main:
//
//	in, err := restart.Inherit() // what a predecessor handed over, if any
//	addr, opts := in.Listen(*addr)
//	srv, err := reactor.NewServer(addr, h, append(opts, ...)...)
//	in.CloseListeners() // the server has its own descriptors
//	err = restart.Serve(srv, in, cfg, stop, hup) // hup: SIGHUP
package restart

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/examples/internal/graceful"
)

// The environment a successor is started with.
const (
	// EnvFDs is the number of listening sockets handed over, from
	// descriptor 3 on (hand-over); absent in the SO_REUSEPORT way.
	EnvFDs = "REACTOR_RESTART_FDS"
	// EnvReady is the descriptor of the pipe to report readiness on.
	EnvReady = "REACTOR_RESTART_READY"
	// EnvAddr is the address the predecessor listens on (SO_REUSEPORT
	// way), so that a server started with port 0 is joined on its port.
	EnvAddr = "REACTOR_RESTART_ADDR"
)

// firstFD is the first descriptor exec.Cmd's ExtraFiles become in the
// child: 0, 1 and 2 are stdin, stdout and stderr.
const firstFD = 3

// DefaultReadyTimeout is how long a successor may take to serve when
// Config.ReadyTimeout is 0.
const DefaultReadyTimeout = 30 * time.Second

// Inheritance is what a process received from the predecessor that started
// it. A process started by hand has an empty one, which changes nothing.
type Inheritance struct {
	listeners []net.Listener // hand-over: the predecessor's sockets
	addr      string         // SO_REUSEPORT way: the predecessor's address
	ready     *os.File       // the pipe to report readiness on; nil if no predecessor
}

// Inherit reads what the predecessor passed to this process (see the
// package comment) and removes it from the environment. Call it once, at
// start-up, before opening any file: the inherited descriptors are
// numbered from 3.
func Inherit() (*Inheritance, error) {
	return inherit(os.Getenv)
}

func inherit(getenv func(string) string) (*Inheritance, error) {
	in := &Inheritance{addr: getenv(EnvAddr)}
	fds, ready := getenv(EnvFDs), getenv(EnvReady)
	for _, k := range []string{EnvFDs, EnvReady, EnvAddr} {
		_ = os.Unsetenv(k) // cannot fail for these names
	}
	if ready == "" {
		if fds != "" || in.addr != "" {
			return nil, fmt.Errorf("restart: %s or %s without %s", EnvFDs, EnvAddr, EnvReady)
		}
		return in, nil
	}
	n := 0
	if fds != "" {
		var err error
		if n, err = strconv.Atoi(fds); err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("restart: %s=%q is not a number of descriptors", EnvFDs, fds)
		}
	}
	rfd, err := strconv.Atoi(ready)
	if err != nil || rfd != firstFD+n {
		return nil, fmt.Errorf("restart: %s=%q: want %d, after the %d listeners", EnvReady, ready, firstFD+n, n)
	}
	unix.CloseOnExec(rfd) // no later child inherits it
	in.ready = os.NewFile(uintptr(rfd), "restart-ready")
	for fd := firstFD; fd < firstFD+n; fd++ {
		unix.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "restart-listener")
		ln, err := net.FileListener(f) // a duplicate of its own
		_ = f.Close()                  // the listener holds the socket
		if err != nil {
			in.CloseListeners()
			_ = in.ready.Close() // the predecessor reads EOF: we failed
			return nil, fmt.Errorf("restart: inherited descriptor %d: %w", fd, err)
		}
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false) // the path is served on, by us
		}
		in.listeners = append(in.listeners, ln)
	}
	return in, nil
}

// Listen returns the address and the options to pass to reactor.NewServer:
// the inherited listeners (reactor.WithListeners, address "") after a
// hand-over; the predecessor's address after a SO_REUSEPORT start, which
// is addr but for a port 0 the predecessor got from the kernel; addr
// otherwise. The caller adds reactor.WithReusePort itself: the successor
// runs with the same flags as its predecessor.
func (in *Inheritance) Listen(addr string) (string, []reactor.Option) {
	switch {
	case len(in.listeners) > 0:
		return "", []reactor.Option{reactor.WithListeners(in.listeners...)}
	case in.addr != "":
		return in.addr, nil
	}
	return addr, nil
}

// CloseListeners closes the inherited listeners: once NewServer has
// returned, the server holds descriptors of its own (or failed).
func (in *Inheritance) CloseListeners() {
	for _, ln := range in.listeners {
		_ = ln.Close() // the socket lives on in the server
	}
	in.listeners = nil
}

// Config says how Serve restarts.
type Config struct {
	// ReusePort selects the SO_REUSEPORT way instead of the hand-over; the
	// server must have been made with reactor.WithReusePort.
	ReusePort bool
	// PIDFile, if set, is where the process ID of the process serving is
	// kept: written (atomically, by rename) when Serve starts, overwritten by
	// a successor, removed when the last process stops.
	PIDFile string
	// ShutdownTimeout bounds the graceful shutdown (see graceful.Run).
	ShutdownTimeout time.Duration
	// ReadyTimeout bounds the wait for a successor to serve; 0 means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	Log          *slog.Logger
}

// Serve reports to the predecessor, if any, that this process serves (and
// writes the PID file), then runs srv as graceful.Run does, with stop as
// its stop signals. On a signal from hup it restarts: it starts a
// successor (see the package comment), and once the successor serves, it
// shuts srv down gracefully as if stopped, and Serve returns nil if that
// went well: the caller exits 0. A successor that fails is logged and
// killed; srv serves on, and a later signal tries again. A stop signal
// during a restart abandons it (the successor, which has not reported, is
// killed). Serve returns graceful.Run's error, or why it could not start
// (the PID file). A predecessor that cannot be told (it is gone) is logged;
// Serve serves all the same.
func Serve(srv *reactor.Server, in *Inheritance, cfg Config, stop, hup <-chan os.Signal) error {
	r, err := newRestarter(srv, cfg)
	if err != nil {
		return err
	}
	if err := r.ready(); err != nil {
		return err
	}
	if err := r.notify(in); err != nil {
		// The predecessor is gone (it gave up on us, and is killing us, or
		// it died): serve all the same, since nobody else may be.
		r.log.Warn("restart: could not tell the predecessor that this process serves", "err", err)
	}
	merged := make(chan os.Signal, 2) // as graceful.Run wants: it reads two at most
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { r.watch(stop, hup, merged, done) })
	err = graceful.Run(srv, merged, cfg.ShutdownTimeout, cfg.Log)
	close(done)
	wg.Wait()
	if r.successor == 0 {
		r.removePIDFile()
		return err
	}
	if err == nil {
		r.log.Info("restart: handed over", "successor_pid", r.successor, "drained_after", time.Since(r.readyAt))
	}
	return err
}

// restarter runs the restarts of one Serve.
type restarter struct {
	srv *reactor.Server
	cfg Config
	log *slog.Logger
	exe string // this program, to start again

	// Written by watch's goroutine, read by Serve once that goroutine has
	// ended (its WaitGroup orders the two).
	successor int       // the successor's PID, once it serves
	readyAt   time.Time // when it said so
}

func newRestarter(srv *reactor.Server, cfg Config) (*restarter, error) {
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	// Resolved now, before anything could change the working directory.
	// os.Args[0] rather than os.Executable: after an upgrade replaced the
	// program's file, /proc/self/exe names the old, deleted one, and the
	// point of a restart is to run the new one.
	exe, err := exec.LookPath(os.Args[0])
	if err == nil {
		exe, err = filepath.Abs(exe)
	}
	if err != nil {
		return nil, fmt.Errorf("restart: finding this program: %w", err)
	}
	return &restarter{srv: srv, cfg: cfg, log: cfg.Log.With("pid", os.Getpid()), exe: exe}, nil
}

// ready writes the PID file, once this process serves: its listening
// sockets are open, and connections wait in their queues until the loops
// accept them.
func (r *restarter) ready() error {
	if r.cfg.PIDFile == "" {
		return nil
	}
	if err := writePIDFile(r.cfg.PIDFile, os.Getpid()); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// notify tells the predecessor, if any, that this process serves: it writes
// its PID to the pipe and closes it.
func (r *restarter) notify(in *Inheritance) error {
	if in.ready == nil {
		return nil
	}
	_, err := fmt.Fprintf(in.ready, "%d\n", os.Getpid())
	if cerr := in.ready.Close(); err == nil {
		err = cerr
	}
	return err
}

// watch passes stop signals on to out, and restarts on a signal from hup,
// until done is closed. After a successful restart it sends SIGHUP to out,
// which makes graceful.Run shut srv down.
func (r *restarter) watch(stop, hup <-chan os.Signal, out chan<- os.Signal, done <-chan struct{}) {
	forward := func(sig os.Signal) {
		select {
		case out <- sig:
		default: // graceful.Run reads two at most; it has them
		}
	}
	var (
		cur      *attempt // the restart under way, or nil
		stopping bool     // a stop signal came, or a restart succeeded: no more restarts
	)
	defer func() {
		if cur != nil {
			cur.abandon()
		}
	}()
	for {
		var result <-chan int // nil (never ready) unless a restart is under way
		if cur != nil {
			result = cur.result
		}
		select {
		case <-done:
			return
		case sig := <-stop:
			stopping = true
			if cur != nil {
				r.log.Warn("restart: stop signal during a restart; abandoning it", "signal", sig)
				cur.abandon()
				cur = nil
			}
			forward(sig)
		case sig := <-hup:
			switch {
			case stopping:
				r.log.Info("restart: stopping; signal ignored", "signal", sig)
			case cur != nil:
				r.log.Info("restart: already restarting; signal ignored", "signal", sig)
			default:
				cur = r.begin(sig)
			}
		case pid := <-result:
			cur.cancel()
			started := cur.started
			cur = nil
			if pid == 0 {
				continue
			}
			r.successor, r.readyAt = pid, time.Now()
			r.log.Info("restart: the successor serves; shutting down", "successor_pid", pid, "ready_after", r.readyAt.Sub(started))
			stopping = true
			forward(syscall.SIGHUP)
		}
	}
}

// attempt is a restart under way: start runs on its own goroutine, so that
// watch can still take a stop signal.
type attempt struct {
	result  chan int // receives the successor's PID, or 0 if it failed
	cancel  context.CancelFunc
	started time.Time
}

// begin starts a restart on the signal sig.
func (r *restarter) begin(sig os.Signal) *attempt {
	mode := "handover"
	if r.cfg.ReusePort {
		mode = "reuseport"
	}
	r.log.Info("restart: starting a successor", "signal", sig, "mode", mode)
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ReadyTimeout)
	a := &attempt{result: make(chan int, 1), cancel: cancel, started: time.Now()}
	go func() {
		pid, err := r.start(ctx)
		if err != nil {
			r.log.Error("restart: the successor failed; serving on", "err", err)
		}
		a.result <- pid
	}()
	return a
}

// abandon cancels the attempt and waits for it to end: a successor that
// has not reported yet is killed.
func (a *attempt) abandon() {
	a.cancel()
	<-a.result
}

// start starts a successor and waits until it reports that it serves, or
// ctx ends. It returns the successor's PID; on failure the successor has
// been killed and reaped.
func (r *restarter) start(ctx context.Context) (int, error) {
	var files []*os.File
	if !r.cfg.ReusePort {
		var err error
		if files, err = r.srv.ListenerFiles(); err != nil {
			return 0, err
		}
	}
	defer func() {
		for _, f := range files {
			_ = f.Close() // the successor has its own, or failed
		}
	}()
	rp, wp, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer rp.Close()

	cmd := exec.Command(r.exe, os.Args[1:]...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == EnvFDs || k == EnvReady || k == EnvAddr
	})
	if len(files) > 0 {
		cmd.Env = append(cmd.Env, EnvFDs+"="+strconv.Itoa(len(files)))
	} else {
		cmd.Env = append(cmd.Env, EnvAddr+"="+r.srv.Addr().String())
	}
	cmd.Env = append(cmd.Env, EnvReady+"="+strconv.Itoa(firstFD+len(files)))
	cmd.ExtraFiles = append(files, wp)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Start()
	_ = wp.Close() // the successor holds the write end: its exit means EOF
	if err != nil {
		return 0, err
	}
	pid, err := waitReady(ctx, rp)
	if err == nil && pid != cmd.Process.Pid {
		err = fmt.Errorf("it reported PID %d", pid)
	}
	if err != nil {
		_ = cmd.Process.Kill() // it does not serve yet, so it holds no connection
		werr := cmd.Wait()
		return 0, fmt.Errorf("successor %d: %w (%v)", cmd.Process.Pid, err, werr)
	}
	// It runs on after this process exits; nobody here waits for it.
	_ = cmd.Process.Release()
	return pid, nil
}

// waitReady reads the successor's report from the pipe: its PID and a
// newline. EOF first means it exited (or closed the pipe) without serving.
func waitReady(ctx context.Context, rp *os.File) (int, error) {
	if dl, ok := ctx.Deadline(); ok {
		if err := rp.SetReadDeadline(dl); err != nil {
			return 0, err
		}
	}
	stop := context.AfterFunc(ctx, func() {
		_ = rp.SetReadDeadline(time.Now()) // cancelled: end the read now
	})
	defer stop()
	line, err := bufio.NewReader(io.LimitReader(rp, 32)).ReadString('\n')
	switch {
	case err == io.EOF:
		return 0, errors.New("it exited, or closed its pipe, without serving")
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The read deadline is ctx's, and may pass a moment before ctx
		// itself says so: only a cancelled ctx is something else.
		if errors.Is(ctx.Err(), context.Canceled) {
			return 0, context.Cause(ctx)
		}
		return 0, errors.New("it did not serve in time")
	case err != nil:
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSuffix(line, "\n"))
	if err != nil {
		return 0, fmt.Errorf("it reported %q", line)
	}
	return pid, nil
}

// writePIDFile writes pid to path atomically: a reader sees the old
// content or the new, never a part.
func writePIDFile(path string, pid int) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d\n", pid)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name()) // already failing
	}
	return err
}

// ReadPIDFile returns the process ID in a PID file written by Serve.
func ReadPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("restart: %s holds %q, not a process ID", path, b)
	}
	return pid, nil
}

// removePIDFile removes the PID file when this process stops for good, if
// it still names this process.
func (r *restarter) removePIDFile() {
	if r.cfg.PIDFile == "" {
		return
	}
	if pid, err := ReadPIDFile(r.cfg.PIDFile); err != nil || pid != os.Getpid() {
		return
	}
	if err := os.Remove(r.cfg.PIDFile); err != nil {
		r.log.Warn("restart: removing the PID file", "err", err)
	}
}
