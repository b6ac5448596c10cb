// This file selects the platform's default readiness backend. A build with
// -tags reactor_poll selects Poll instead (dispatcher_default_poll_linux.go).

//go:build !reactor_poll

package reactor

// defaultDispatcher is the backend used when none is chosen: epoll, the
// scalable one, on Linux.
func defaultDispatcher() (Dispatcher, error) { return Epoll() }
