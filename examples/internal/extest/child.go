// Package extest is support for the examples' tests: running an example's
// main in a child process (this file), and sizing output that a client
// which does not read leaves pending (stuck.go). Nothing here imports
// testing; every function returns an error for the test to report.
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
	"os"
	"os/exec"
	"regexp"
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

// Child is a running child process and the lines of its log (stderr).
type Child struct {
	cmd *exec.Cmd

	mu      sync.Mutex    // guards lines, changed and ended
	lines   []string      // stderr lines so far
	changed chan struct{} // closed and replaced when a line is added or stderr ends
	ended   bool          // stderr has been read to its end
	readErr error         // why reading stderr stopped, if not EOF

	readDone chan struct{} // closed when the stderr reader has returned
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
	c := &Child{cmd: cmd, changed: make(chan struct{}), readDone: make(chan struct{})}
	go func() {
		defer close(c.readDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			c.add(sc.Text(), false, nil)
		}
		c.add("", true, sc.Err())
	}()
	return c, nil
}

func (c *Child) add(line string, end bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if end {
		c.ended, c.readErr = true, err
	} else {
		c.lines = append(c.lines, line)
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// WaitLine waits for a line of the log that contains s and returns the
// first such line, or an error if the log ends first or ctx ends.
func (c *Child) WaitLine(ctx context.Context, s string) (string, error) {
	for seen := 0; ; {
		c.mu.Lock()
		lines, ended, changed := c.lines, c.ended, c.changed
		c.mu.Unlock()
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
			return "", fmt.Errorf("waiting for %q in the child's log: %w", s, ctx.Err())
		}
	}
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
	<-c.readDone
	werr := c.cmd.Wait()
	c.mu.Lock()
	log = strings.Join(c.lines, "\n")
	rerr := c.readErr
	c.mu.Unlock()
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
