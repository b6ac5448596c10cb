// This file makes poll(2) the default readiness backend in a build with
// -tags reactor_poll: for kernels or sandboxes without epoll (some seccomp
// profiles and emulation layers), or to run a whole program, tests
// included, over poll without changing its code.

//go:build reactor_poll

package reactor

// defaultDispatcher is the backend used when none is chosen: poll(2), as
// the reactor_poll build tag asks.
func defaultDispatcher() (Dispatcher, error) { return Poll() }
