// Package extest is support for the examples' tests: running an example's
// main in a child process (this file), sizing output that a client which
// does not read leaves pending (stuck.go), and finding the tools a test
// needs (need.go). Apart from need.go, whose functions skip or fail the
// test, every function returns an error for the test to report.
//
// The child is the package's own test binary, run again with an
// environment variable that makes its TestMain call main instead of running
// the tests, so no separate build is needed:
//
//	func TestMain(m *testing.M) {
//		extest.RunIfChild(main)
//		goleak.VerifyTestMain(m)
//	}
//
// A test then sees what the child's log says, what signals do to it, and
// its exit status.
package extest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// envChild is set in a child's environment.
const envChild = "REACTOR_EXAMPLE_CHILD_MAIN"

// RunIfChild runs main and exits 0 when main returns, if this process is a
// child started by Start; otherwise it returns at once. main exits non-zero
// itself (os.Exit) when it fails.
func RunIfChild(main func()) {
	if os.Getenv(envChild) == "1" {
		main()
		os.Exit(0)
	}
}

// Log is the log (stderr) of one or more child processes, read line by
// line as they write it. It is safe for concurrent use.
type Log struct {
	mu      sync.Mutex    // guards lines, changed, ended and readErr
	lines   []string      // lines so far
	changed chan struct{} // closed and replaced when a line is added or the log ends
	ended   bool          // read to its end
	readErr error         // why reading stopped, if not EOF

	readDone chan struct{} // closed when the reader has returned
}

// ReadLog reads r, line by line, on a goroutine of its own until EOF (or
// an error), which happens once every process holding the pipe's write
// end has closed it.
func ReadLog(r io.Reader) *Log {
	l := &Log{changed: make(chan struct{}), readDone: make(chan struct{})}
	go func() {
		defer close(l.readDone)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.add(sc.Text(), false, nil)
		}
		l.add("", true, sc.Err())
	}()
	return l
}

func (l *Log) add(line string, end bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if end {
		l.ended, l.readErr = true, err
	} else {
		l.lines = append(l.lines, line)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// WaitLine waits for a line that contains s and returns the first such
// line, or an error if the log ends first or ctx ends.
func (l *Log) WaitLine(ctx context.Context, s string) (string, error) {
	for seen := 0; ; {
		l.mu.Lock()
		lines, ended, changed := l.lines, l.ended, l.changed
		l.mu.Unlock()
		for ; seen < len(lines); seen++ {
			if strings.Contains(lines[seen], s) {
				return lines[seen], nil
			}
		}
		if ended {
			return "", fmt.Errorf("the child's log ended without %q:\n%s", s, strings.Join(lines, "\n"))
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %q in the child's log: %w\n%s", s, ctx.Err(), strings.Join(lines, "\n"))
		}
	}
}

// Lines returns the lines read so far.
func (l *Log) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// Wait waits until the log has been read to its end and returns it whole,
// with the error that stopped the reading if it was not EOF.
func (l *Log) Wait() (string, error) {
	<-l.readDone
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n"), l.readErr
}

// Child is a running child process and the lines of its log (stderr).
type Child struct {
	*Log
	cmd *exec.Cmd
}

// Command returns a command that runs the test binary as a child running
// main with args, for a test that starts it its own way (Start is the
// usual one).
func Command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envChild+"=1")
	return cmd
}

// Start starts the test binary as a child running main with args; ctx
// bounds its life (the child is killed when ctx ends).
func Start(ctx context.Context, args ...string) (*Child, error) {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), envChild+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &Child{Log: ReadLog(stderr), cmd: cmd}, nil
}

var addrField = regexp.MustCompile(`\baddr=(\S+)`)

// Addr waits for the log line that contains s (e.g. "listening") and
// returns the value of its addr= field.
func (c *Child) Addr(ctx context.Context, s string) (string, error) {
	line, err := c.WaitLine(ctx, s)
	if err != nil {
		return "", err
	}
	m := addrField.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("no addr= in %q", line)
	}
	return m[1], nil
}

// StartListening starts a child as Start does and waits for its log line
// that contains listening (e.g. "echo server listening"); it returns the
// child and the line's addr= value.
func StartListening(ctx context.Context, listening string, args ...string) (*Child, string, error) {
	c, err := Start(ctx, args...)
	if err != nil {
		return nil, "", err
	}
	addr, err := c.Addr(ctx, listening)
	if err != nil {
		_ = c.cmd.Process.Kill() // it never came up; Wait reaps it
		_, log, _ := c.Wait()
		return nil, "", fmt.Errorf("%w\n%s", err, log)
	}
	return c, addr, nil
}

// Signal sends sig to the child.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// Wait waits for the child to exit and returns its exit code and its whole
// log. err is set only if the child could not be waited for or was killed
// (by a signal, or because Start's ctx ended).
func (c *Child) Wait() (code int, log string, err error) {
	log, rerr := c.Log.Wait() // cmd.Wait closes the pipe: read it all first
	werr := c.cmd.Wait()
	var exit *exec.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &exit) && exit.Exited():
		code = exit.ExitCode()
	default:
		return -1, log, werr
	}
	return code, log, rerr
}
