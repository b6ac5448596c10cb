package extest

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Subreaper makes this process the reaper of its orphaned descendants
// (prctl PR_SET_CHILD_SUBREAPER): a server that a restarted example
// started, whose parent has exited, becomes this process's child, so that
// Reap can wait for it. undo turns that off again.
func Subreaper() (undo func(), err error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) }, nil
}

// Reap waits for the child process pid to exit, for at most d, and returns
// its status. If it has not exited by then, it is killed (SIGKILL) and
// reaped, and the error says so.
func Reap(pid int, d time.Duration) (unix.WaitStatus, error) {
	type result struct {
		ws  unix.WaitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for {
			_, r.err = unix.Wait4(pid, &r.ws, 0, nil)
			if r.err != unix.EINTR {
				break
			}
		}
		done <- r
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.ws, r.err
	case <-timer.C:
		_ = unix.Kill(pid, unix.SIGKILL)
		r := <-done
		return r.ws, errors.Join(fmt.Errorf("process %d did not exit within %v; killed", pid, d), r.err)
	}
}
