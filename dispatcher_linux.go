// This file selects the platform's default readiness backend.

package reactor

// defaultDispatcher is the backend used when none is chosen: epoll, the
// scalable one, on Linux.
func defaultDispatcher() (Dispatcher, error) { return Epoll() }
